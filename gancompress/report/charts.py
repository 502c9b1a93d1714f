"""The report's charts as PNG bytes: matplotlib when it is installed (the `plots` extra), else
drawn with PIL, so a report never needs more than the core dependencies.

A chart is a list of `Series` (points, drawn as markers or a line) on linear axes, optional
vertical lines (a budget) and a shaded horizontal band; or horizontal bars (channels kept per
layer). Both backends take the same description, so they show the same data.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

PALETTE = ["#1f5fbf", "#d0402b", "#2b8a3e", "#7a3fbf", "#b07a00", "#00838f", "#6d4c41", "#c2185b"]


@dataclass
class Series:
    label: str
    points: list  # [(x, y)]
    line: bool = False  # connect the points (a curve) instead of markers
    color: str | None = None
    size: float = 6.0  # marker radius (px) for scatter
    annotate: bool = False  # write the label beside the (single) point


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    series: list = field(default_factory=list)
    vlines: list = field(default_factory=list)  # [(x, label)]
    hband: tuple | None = None  # (lo, hi) shaded across the plot
    log_y: bool = False


def have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def render(chart: Chart, size=(640, 380)) -> bytes:
    """The chart as PNG bytes (matplotlib if available, else PIL)."""
    _colour(chart.series)
    if have_matplotlib():
        return _render_mpl(chart, size)
    return _render_pil(chart, size)


def render_bars(title: str, labels: list[str], kept: list[float], total: list[float], x_label: str,
                size=(640, None)) -> bytes:
    """Horizontal bars: `kept` of `total` per label (e.g. channels kept of the widest, per layer)."""
    if have_matplotlib():
        return _bars_mpl(title, labels, kept, total, x_label, size)
    return _bars_pil(title, labels, kept, total, x_label, size)


def _colour(series):
    for i, s in enumerate(series):
        if s.color is None:
            s.color = PALETTE[i % len(PALETTE)]


def _finite(series):
    return [(x, y) for s in series for x, y in s.points
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]


# ---- matplotlib -----------------------------------------------------------------------------------
def _mpl_axes(w: float, h: float):
    """A figure and its axes without pyplot: no global backend or figure state in the user's process."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w / 100, h / 100), dpi=100)
    return fig, fig.add_subplot()


def _mpl_png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _render_mpl(chart: Chart, size) -> bytes:
    fig, ax = _mpl_axes(*size)
    if chart.hband:
        ax.axhspan(*chart.hband, color="#2b8a3e", alpha=0.12, lw=0)
    for x, label in chart.vlines:
        ax.axvline(x, color="#555555", ls="--", lw=1)
        ax.annotate(label, (x, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8, color="#555555")
    for s in chart.series:
        xs, ys = [p[0] for p in s.points], [p[1] for p in s.points]
        if s.line:
            ax.plot(xs, ys, color=s.color, lw=1.6, label=s.label)
        else:
            ax.scatter(xs, ys, s=(s.size * 1.6) ** 2, color=s.color, label=s.label, zorder=3,
                       edgecolors="white", linewidths=0.5)
            if s.annotate:
                for x, y in s.points:
                    ax.annotate(s.label, (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8,
                                color=s.color)
    if chart.log_y:
        ax.set_yscale("log")
    ax.set_title(chart.title, fontsize=10)
    ax.set_xlabel(chart.x_label, fontsize=9)
    ax.set_ylabel(chart.y_label, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(chart.series) > 1 or chart.series and not chart.series[0].annotate:
        ax.legend(fontsize=8, loc="best")
    return _mpl_png(fig)


def _bars_mpl(title, labels, kept, total, x_label, size) -> bytes:
    fig, ax = _mpl_axes(size[0], size[1] or max(170, 80 + 20 * len(labels)))
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, total, color="#d9d9d9", label="widest")
    ax.barh(ys, kept, color=PALETTE[0], label="kept")
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_label, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _mpl_png(fig)


# ---- PIL fallback ---------------------------------------------------------------------------------
def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * k / (n - 1) for k in range(n)]


def _fmt(v: float) -> str:
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"


def _render_pil(chart: Chart, size) -> bytes:
    from PIL import Image, ImageDraw

    from .images import label_font

    w, h = size
    left, right, top, bottom = 64, 16, 44, 64
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = label_font(12)
    pts = _finite(chart.series) + [(x, None) for x, _ in chart.vlines]
    xs = [p[0] for p in pts] or [0.0, 1.0]
    ys = [p[1] for p in pts if p[1] is not None] or [0.0, 1.0]
    if chart.hband:
        ys += list(chart.hband)
    fy = (lambda v: math.log10(max(v, 1e-12))) if chart.log_y else (lambda v: v)  # noqa: E731
    ys = [fy(y) for y in ys]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    px_, py_ = (x1 - x0) * 0.06 or 1.0, (y1 - y0) * 0.08 or 1.0
    x0, x1, y0, y1 = x0 - px_, x1 + px_, y0 - py_, y1 + py_

    def to_px(x, y):
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                top + (1 - (fy(y) - y0) / (y1 - y0)) * (h - top - bottom))

    if chart.hband:
        _, ya = to_px(x0, chart.hband[1])
        _, yb = to_px(x0, chart.hband[0])
        d.rectangle([left, ya, w - right, yb], fill="#e3f1e6")
    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for xv in _ticks(x0 + px_, x1 - px_):
        px, _ = to_px(xv, 10 ** y0 if chart.log_y else y0)
        d.line([(px, h - bottom), (px, h - bottom + 4)], fill="black")
        d.text((px - 12, h - bottom + 6), _fmt(xv), fill="black", font=font)
    for yv in _ticks(y0 + py_, y1 - py_):
        yy = 10 ** yv if chart.log_y else yv
        _, py = to_px(x0, yy)
        d.line([(left - 4, py), (left, py)], fill="black")
        d.text((4, py - 7), _fmt(yy), fill="black", font=font)
    d.text((left, 6), chart.title, fill="black", font=font)
    d.text(((w + left) // 2 - 40, h - bottom + 22), chart.x_label, fill="black", font=font)
    d.text((4, 24), chart.y_label[:60], fill="#444444", font=font)
    for x, label in chart.vlines:
        px, _ = to_px(x, 10 ** y0 if chart.log_y else y0)
        for yy in range(top, h - bottom, 8):
            d.line([(px, yy), (px, min(yy + 4, h - bottom))], fill="#555555")
        d.text((px + 3, top + 2), label, fill="#555555", font=font)
    legend_x = left
    for s in chart.series:
        p = [to_px(x, y) for x, y in s.points if x is not None and y is not None and math.isfinite(x)
             and math.isfinite(y) and (y > 0 or not chart.log_y)]
        if s.line and len(p) > 1:
            d.line(p, fill=s.color, width=2)
        else:
            r = s.size
            for px, py in p:
                d.ellipse([px - r, py - r, px + r, py + r], fill=s.color)
            if s.annotate:
                for px, py in p:
                    d.text((px + r + 3, py - r - 3), s.label, fill=s.color, font=font)
        d.rectangle([legend_x, h - 18, legend_x + 10, h - 8], fill=s.color)
        d.text((legend_x + 14, h - 20), s.label, fill="black", font=font)
        legend_x += 24 + int(d.textlength(s.label, font=font))
    return _png(img)


def _bars_pil(title, labels, kept, total, x_label, size) -> bytes:
    from PIL import Image, ImageDraw

    from .images import label_font

    w = size[0]
    row, top, left = 18, 28, 150
    h = size[1] or top + row * len(labels) + 36
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = label_font(11)
    d.text((left, 6), title, fill="black", font=font)
    hi = max(max(total, default=1), 1)
    span = w - left - 50
    for i, (lab, k, t) in enumerate(zip(labels, kept, total)):
        y = top + i * row
        d.text((4, y + 2), lab[:22], fill="black", font=font)
        d.rectangle([left, y + 2, left + span * t / hi, y + row - 3], fill="#d9d9d9")
        d.rectangle([left, y + 2, left + span * k / hi, y + row - 3], fill=PALETTE[0])
        d.text((left + span * t / hi + 4, y + 2), f"{k:g}/{t:g}", fill="black", font=font)
    d.text((left, h - 20), x_label, fill="black", font=font)
    return _png(img)

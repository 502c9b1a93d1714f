"""Honest evaluation of a student against its teacher, on images it never trained on.

Translation (bottom of the file): fidelity to the teacher (PSNR/SSIM/FID/KID of student outputs
vs teacher outputs) and, with real target-domain images, FID/KID of both to them.

Quality: PSNR/SSIM on the MATLAB Y channel with border = scale (the SR literature's convention),
for the student, the teacher and bicubic; fidelity: PSNR (Y, same border) of student vs teacher
output. Cost: MACs (FlopCounterMode, FLOPs/2, 256x256 LR), params, file size. Speed: latency of
student and teacher measured in the same process, batch 1, same input, median of N, so the
ratio is meaningful on a noisy machine; for PyTorch eager and ONNX Runtime.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .arch.cost import latency_ms, measure_macs, module_device
from .data.degrade import bicubic_upscale
from .errors import UserError
from .metrics.sr import psnr_y, ssim_y


@torch.no_grad()
def predict_tiled(fn, lr: torch.Tensor, scale: int, tile: int = 256, overlap: int = 16) -> torch.Tensor:
    """Run an SR network on a (3, h, w) CPU image in overlapping tiles so the network's activations
    stay bounded on big inputs; the output is clamped to [0, 1] and returned on the CPU (the network
    may live on a GPU) as one float tensor (`streaming.sr_to_png` writes the same pixels to a PNG
    without holding the output). Small images run in one piece."""
    x = lr.unsqueeze(0) if lr.dim() == 3 else lr
    dev = module_device(fn)
    run = (lambda t: fn(t.to(dev)).cpu()) if dev.type != "cpu" else fn
    _, c, h, w = x.shape
    if h <= tile and w <= tile:
        return run(x).clamp_(0, 1)[0]
    from .streaming import tile_grid

    out = torch.zeros(1, 3, h * scale, w * scale)
    for y0, y1, row in tile_grid(h, w, tile, overlap):
        for x0, x1, ya, yb, xa, xb in row:
            piece = run(x[:, :, ya:yb, xa:xb]).clamp_(0, 1)
            oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                piece[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return out[0]


def keep_worst(kept: list, k: int, score: float, item) -> None:
    """Keep the k items of lowest score in `kept` (as (score, item), lowest first): the images where
    the student is furthest from its teacher are the ones worth looking at, and only k outputs are
    held, not every image's."""
    kept.append((score, item))
    kept.sort(key=lambda e: e[0])
    del kept[k:]


def quality(student, teacher, eval_set, scale: int, quiet: bool = False, keep_outputs: int = 3):
    """Per-image and mean quality. `student`/`teacher`: callables on (1,3,h,w) in [0,1].

    Returns (summary dict, per-image list, outputs of the `keep_outputs` images furthest from the
    teacher (lowest PSNR to it, worst first) for crops).
    """
    rows, kept = [], []
    for name, lr, hr in tqdm(eval_set, desc="evaluate", disable=quiet, mininterval=2.0):
        s_out = predict_tiled(student, lr, scale)
        t_out = predict_tiled(teacher, lr, scale)
        bic = bicubic_upscale(lr, scale)
        rows.append({
            "image": name,
            "student_psnr_y": psnr_y(s_out, hr, scale), "student_ssim_y": ssim_y(s_out, hr, scale),
            "teacher_psnr_y": psnr_y(t_out, hr, scale), "teacher_ssim_y": ssim_y(t_out, hr, scale),
            "bicubic_psnr_y": psnr_y(bic, hr, scale),
            "psnr_to_teacher": psnr_y(s_out, t_out, scale),
        })
        keep_worst(kept, keep_outputs, rows[-1]["psnr_to_teacher"], (name, lr, hr, bic, t_out, s_out))
    keys = [k for k in rows[0] if k != "image"]
    summary = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    summary["images"] = len(rows)
    return summary, rows, [item for _, item in kept]


def file_size(path) -> int | None:
    return os.path.getsize(path) if path and Path(path).is_file() else None


def speed(student: torch.nn.Module, teacher, size: int, repeats: int, student_onnx=None,
          teacher_onnx=None, threads: int | None = None) -> dict:
    """Latency (ms, median) of teacher and student at a size x size LR input, same process."""
    from .export.student import example_input, onnx_runner

    x = example_input(student, (size, size))
    threads = threads or torch.get_num_threads()  # both runtimes get the same thread count
    res = {"latency_input": "x".join(map(str, x.shape)), "threads": threads}
    res["student_ms_torch"] = latency_ms(student, x, repeats=repeats)
    res["teacher_ms_torch"] = latency_ms(teacher, x, repeats=repeats)
    res["latency_ratio_torch"] = res["student_ms_torch"] / res["teacher_ms_torch"]
    if student_onnx is not None:
        res["student_ms_onnx"] = latency_ms(onnx_runner(student_onnx, threads), x, repeats=repeats)
        if teacher_onnx is not None:
            res["teacher_ms_onnx"] = latency_ms(onnx_runner(teacher_onnx, threads), x, repeats=repeats)
            res["latency_ratio_onnx"] = res["student_ms_onnx"] / res["teacher_ms_onnx"]
    return res


def teacher_onnx_bytes(teacher, x: torch.Tensor) -> bytes:
    """The teacher as ONNX (dynamic H, W) for timing it in ONNX Runtime. A TorchScript teacher
    cannot be traced inside its [0, 1] wrapper (the tracer refuses a script module it did not
    enter), so its own module is exported; the range mapping left out is a few elementwise ops."""
    import io

    def export(module):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, input_names=["lr"], output_names=["sr"],
                              dynamic_axes={"lr": {2: "h", 3: "w"}, "sr": {2: "H", 3: "W"}},
                              opset_version=17, dynamo=False)
        return buf.getvalue()

    try:
        return export(teacher)
    except OSError:
        raise
    except Exception:  # noqa: BLE001 - retried on the model itself below
        if not isinstance(teacher.model, torch.jit.ScriptModule):
            raise
        return export(teacher.model)


def teacher_onnx_path(teacher, workdir: Path) -> Path | None:
    """An ONNX file of the teacher for the ONNX Runtime latency comparison (None if impossible)."""
    if teacher.kind_name == "onnx":
        return Path(teacher.source)
    if not isinstance(teacher.model, torch.nn.Module):
        return None
    path = Path(workdir) / "teacher.onnx"
    if path.is_file():
        return path
    from .fileio import atomic_write_bytes

    try:
        data = teacher_onnx_bytes(teacher, torch.rand(1, int(getattr(teacher, "in_channels", 3)), 64, 64))
    except OSError:  # the machine, not the teacher: a full disk must stop the run (it resumes later)
        raise
    except Exception as e:  # a teacher the exporter cannot trace: report PyTorch latency only
        from .errors import warn

        warn(f"teacher could not be exported to ONNX for the latency comparison ({type(e).__name__}); "
             "reporting PyTorch latency only")
        return None
    atomic_write_bytes(path, data)  # an OSError (full disk, read-only) stops the run
    return path


def teacher_macs(teacher) -> int | None:
    """Teacher MACs at 256x256 LR by FlopCounterMode; None for black boxes it cannot see into."""
    if teacher.kind_name == "onnx":
        return None
    try:
        m = measure_macs(teacher)
    except Exception:  # noqa: BLE001 - a black box FlopCounterMode cannot trace
        return None
    return m or None


# ---- translation ------------------------------------------------------------------------------
def fid_cache_dir() -> Path:
    """Where real-image Inception features are cached across runs (fileio.cache_root)."""
    from .fileio import cache_root

    return cache_root() / "fid"


def check_fid_request(eval_count: int, real_target: str | None, inception: str | None) -> None:
    """Fail early (before any training) when FID against real images cannot be computed."""
    if not real_target:
        return
    from .data.images import list_images
    from .metrics.fid import MIN_FID_IMAGES, inception_path

    inception_path(inception)  # raises with the extra to install
    n_real = len(list_images(real_target, hint="point --real-target at a folder of target-domain images"))
    for what, n in (("--real-target", n_real), ("the evaluation set", eval_count)):
        if n < MIN_FID_IMAGES:
            raise UserError(f"FID needs at least {MIN_FID_IMAGES} images for a stable estimate; {what} has "
                            f"{n}: add images, or leave out --real-target to report fidelity to the teacher only")


def translate_quality(student, teacher, eval_set, real_target: str | None = None, inception: str | None = None,
                      size: int = 256, quiet: bool = False, keep_outputs: int = 3):
    """Fidelity of the student to the teacher on held-out images: PSNR (RGB) and SSIM (Y) of the
    student's output vs the teacher's, FID/KID of student outputs vs teacher outputs, and, with
    `real_target`, FID/KID of both to real target-domain images."""
    from .metrics.fid import MIN_KID_IMAGES, fid_kid, inception_features, inception_path, real_features
    from .metrics.sr import psnr_rgb

    rows, kept, s_outs, t_outs = [], [], [], []
    dev = module_device(student)
    for name, x in tqdm(eval_set, desc="evaluate", disable=quiet, mininterval=2.0):
        with torch.no_grad():
            s_out = student(x[None].to(dev)).clamp(0, 1).cpu()[0]
        t_out = teacher.predict(x[None].to(module_device(teacher))).cpu()[0]
        rows.append({"image": name, "psnr_to_teacher": psnr_rgb(s_out, t_out),
                     "ssim_to_teacher": ssim_y(s_out, t_out)})
        s_outs.append(s_out)
        t_outs.append(t_out)
        keep_worst(kept, keep_outputs, rows[-1]["psnr_to_teacher"], (name, x, t_out, s_out))
    kept = [item for _, item in kept]
    summary = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr_to_teacher", "ssim_to_teacher")}
    summary["images"] = len(rows)
    summary["fid_note"] = None
    if len(rows) < MIN_KID_IMAGES:
        summary["fid_note"] = (f"FID/KID not computed: {len(rows)} evaluation images, at least "
                               f"{MIN_KID_IMAGES} needed for KID and 50 for FID")
        return summary, rows, kept
    try:
        inception_path(inception)
    except UserError as e:
        summary["fid_note"] = f"FID/KID not computed: {e}"
        return summary, rows, kept
    fs = inception_features(s_outs)
    ft = inception_features(t_outs)
    r = fid_kid(fs, ft, "student vs teacher outputs")
    summary.update(fid_to_teacher=r["fid"], kid_to_teacher=r["kid"], fid_images=r["fid_images"])
    if r["fid"] is None:
        summary["fid_note"] = f"FID not computed ({r['fid_images']} images, 50 needed); KID is unbiased at any size"
    if real_target:
        from .data.translate import load_square_paths

        fr = real_features(real_target, size, fid_cache_dir(), lambda paths: load_square_paths(paths, size))
        rs, rt = fid_kid(fs, fr, "student outputs vs real"), fid_kid(ft, fr, "teacher outputs vs real")
        summary.update(student_fid_real=rs["fid"], student_kid_real=rs["kid"],
                       teacher_fid_real=rt["fid"], teacher_kid_real=rt["kid"], real_target=str(real_target))
    return summary, rows, kept

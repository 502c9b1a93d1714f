"""How far the teachers are from the assumptions of patch training (BENCHMARKS.md, "What limits
fidelity to the translation teacher").

1. Crop consistency: a translation teacher with instance norm gives a 128 px crop another output
   than the same region of its whole-image output; training on crops of whole-image targets asks
   the student for outputs it cannot compute from the crop.
2. Flip/rotation equivariance: flipping (input, teacher output) pairs together assumes
   teacher(flip(x)) == flip(teacher(x)).
3. Shift equivariance: a crop at any offset assumes teacher(shift(x)) == shift(teacher(x)). Two
   stride-2 layers make it hold only for shifts by multiples of 4 (what --crop-align 4 keeps).
4. How sharp the target is: the teacher's output against itself blurred by a Gaussian of sigma
   0.5-4 px, and against its per-image mean colour. A student that gets every colour right but
   draws lines 1 px soft is held to the sigma=1 number, whatever it is trained with.

    python bench/teacher_consistency.py [--shared ../shared]
    python bench/teacher_consistency.py --teacher torchscript:../shared/teachers/style_mosaic_densenet.ts \
        --teacher-range 0,1 --trust-teacher-code --no-sr
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch


def _equivariance(predict, x, psnr):
    out = predict(x)
    flip = predict(x.flip(-1)).flip(-1)
    rot = torch.rot90(predict(torch.rot90(x, 1, (-2, -1))), -1, (-2, -1))
    return psnr(flip, out), psnr(rot, out)


def _gaussian_blur(x, sigma):
    r = max(1, int(3 * sigma + 0.5))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma * sigma))
    k = (k / k.sum()).repeat(x.shape[0], 1, 1, 1)
    y = torch.nn.functional.pad(x[None], (r, r, r, r), mode="reflect")
    y = torch.nn.functional.conv2d(y, k.view(x.shape[0], 1, 1, -1), groups=x.shape[0])
    return torch.nn.functional.conv2d(y, k.view(x.shape[0], 1, -1, 1), groups=x.shape[0])[0]


def _row(name, values):
    values = [round(v, 1) for v in values]
    return f"{name}: {min(values)}-{max(values)} dB (median {statistics.median(values):.1f}); {values}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher", default="demo", help="translation teacher reference (default: the demo teacher)")
    ap.add_argument("--teacher-range", default=None, help="a black box's value range, e.g. 0,1")
    ap.add_argument("--trust-teacher-code", action="store_true", help="needed for TorchScript teachers")
    ap.add_argument("--no-sr", action="store_true", help="skip the SR teachers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gancompress.cli_options import _parse_range
    from gancompress.config import task_config
    from gancompress.data.run_data import training_images
    from gancompress.teachers.checks import load_task_teacher
    from gancompress.data.bundled import bundled_photographs
    from gancompress.data.degrade import bicubic_downscale
    from gancompress.metrics.sr import psnr_rgb, psnr_y

    with torch.no_grad():
        rng = _parse_range(args.teacher_range)
        t = load_task_teacher("translate", args.teacher, None, rng, trust_code=args.trust_teacher_code)
        crop, flip, rot, mean = [], [], [], []
        blur = {s: [] for s in (0.5, 1.0, 2.0, 4.0)}
        shifts = {d: [] for d in (1, 2, 3, 4, 8)}
        for _, im in training_images(task_config("translate"))[:8]:
            whole = t.predict(im[None])[0]
            crop.append(psnr_rgb(t.predict(im[None, :, 64:192, 32:160])[0], whole[:, 64:192, 32:160]))
            for d, vals in shifts.items():  # drop d columns: output column j should be whole's j + d
                moved = t.predict(im[None, :, :, d:])[0]
                vals.append(psnr_rgb(moved[:, 32:-32, 64:192], whole[:, 32:-32, 64 + d:192 + d]))
            f, r = _equivariance(lambda x: t.predict(x[None])[0], im, psnr_rgb)
            flip.append(f)
            rot.append(r)
            for s, vals in blur.items():
                vals.append(psnr_rgb(_gaussian_blur(whole, s), whole))
            mean.append(psnr_rgb(whole.mean((-2, -1), keepdim=True).expand_as(whole), whole))
        print(f"translation teacher {args.teacher}, 8 training photos (256 px squares)")
        print("  " + _row("128 px crop vs the region of the whole-image output", crop))
        print("  " + _row("flip", flip))
        print("  " + _row("rot90", rot))
        for d, vals in shifts.items():
            print("  " + _row(f"input moved {d} px (interior)", vals))
        for s, vals in blur.items():
            print("  " + _row(f"output vs itself blurred (Gaussian sigma {s} px)", vals))
        print("  " + _row("output vs its per-image mean colour", mean))
        if args.no_sr:
            return

        srgan = Path(args.shared) / "teachers" / "srgan_x4.pth"
        refs = [("SR demo", "demo")] + ([("SRGAN x4", f"srgan:{srgan}")] if srgan.is_file() else [])
        if not srgan.is_file():
            print(f"(SRGAN row skipped: {srgan} not found; pass --shared)")
        for label, ref in refs:
            t = load_task_teacher("sr", ref, None, None, scale=4)
            flip, rot = [], []
            for name, hr in bundled_photographs("train")[:4]:
                lr = bicubic_downscale(hr, 4, name=name)[1][:, :96, :96]
                f, r = _equivariance(lambda x: t.predict(x[None])[0], lr, lambda a, b: psnr_y(a, b, 4))
                flip.append(f)
                rot.append(r)
            print(f"{label} teacher, 4 training photos (96 px LR crops), PSNR-Y")
            print("  " + _row("flip", flip))
            print("  " + _row("rot90", rot))


if __name__ == "__main__":
    main()

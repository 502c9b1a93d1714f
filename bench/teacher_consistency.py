"""How far the teachers are from the assumptions of patch training (BENCHMARKS.md, "What limits
fidelity to the translation teacher").

1. Crop consistency: a translation teacher with instance norm gives a 128 px crop another output
   than the same region of its whole-image output; training on crops of whole-image targets asks
   the student for outputs it cannot compute from the crop.
2. Flip/rotation equivariance: flipping (input, teacher output) pairs together assumes
   teacher(flip(x)) == flip(teacher(x)).
3. Shift equivariance: a crop at any offset assumes teacher(shift(x)) == shift(teacher(x)). Two
   stride-2 layers make it hold only for shifts by multiples of 4 (what --crop-align 4 keeps).

    python bench/teacher_consistency.py [--shared ../shared]
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


def _row(name, values):
    values = [round(v, 1) for v in values]
    return f"{name}: {min(values)}-{max(values)} dB (median {statistics.median(values):.1f}); {values}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gancompress.compress import load_task_teacher, task_config, training_images
    from gancompress.data.bundled import bundled_photographs
    from gancompress.data.degrade import bicubic_downscale
    from gancompress.metrics.sr import psnr_rgb, psnr_y

    with torch.no_grad():
        t = load_task_teacher("translate", "demo", None, None)
        crop, flip, rot = [], [], []
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
        print("translation demo teacher, 8 training photos (256 px squares)")
        print("  " + _row("128 px crop vs the region of the whole-image output", crop))
        print("  " + _row("flip", flip))
        print("  " + _row("rot90", rot))
        for d, vals in shifts.items():
            print("  " + _row(f"input moved {d} px (interior)", vals))

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

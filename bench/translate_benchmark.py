"""Translation benchmark: AGD vs the uniform-width baseline on a translation teacher.

Training images: the bundled photographs (the library default). Evaluation: 256x256 crops of
photographs that are never trained on (Set5 and Set14 HR from ../shared, plus the 4 held-out
bundled photos), so FID has >= 50 images; the "real target" set for FID-to-real is the same crops
rendered by the demo task's classical toon filter (what the demo teacher was trained to imitate).

    python bench/translate_benchmark.py --teacher demo --budgets 1/10,1/20 --methods agd,uniform \
        --out bench/out/translate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gancompress.cli import build_parser, config_from_args
from gancompress.api import compress

SHARED = Path(__file__).resolve().parents[2] / "shared"


def make_eval_sets(root: Path, size: int = 256) -> tuple[Path, Path]:
    """Crops (corners and centre of every image big enough) of held-out photos, and their toon
    renderings. Written once under `root`."""
    from gancompress.data.bundled import bundled_photographs
    from gancompress.data.images import load_image, save_image
    from gancompress.teachers.train_translate import toon_filter

    a, b = root / "eval_A", root / "eval_B"
    if (a / ".done").is_file():
        return a, b
    photos = [(f"bundled_{n}", im) for n, im in bundled_photographs("eval")]
    for s in ("Set5", "Set14"):
        for p in sorted((SHARED / "data" / "sr" / s / "x4" / "HR").glob("*.png")):
            photos.append((f"{s}_{p.stem}", load_image(p)))
    n = 0
    for name, im in photos:
        h, w = im.shape[-2:]
        if min(h, w) < size:
            continue
        spots = {(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2)}
        for k, (y, x) in enumerate(sorted(spots)):
            crop = im[:, y:y + size, x:x + size]
            save_image(crop, a / f"{name}_{k}.png")
            save_image(toon_filter(crop), b / f"{name}_{k}.png")
            n += 1
    (a / ".done").write_text(str(n))
    return a, b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="demo")
    ap.add_argument("--name", default="demo", help="teacher name in run folders and the results")
    ap.add_argument("--budgets", default="1/10,1/20")
    ap.add_argument("--methods", default="agd,uniform")
    ap.add_argument("--out", default="bench/out/translate")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("compress_args", nargs=argparse.REMAINDER, help="after --: extra compress options")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    eval_a, eval_b = make_eval_sets(out)
    extra = [x for x in a.compress_args if x != "--"]
    for budget in a.budgets.split(","):
        for method in a.methods.split(","):
            name = f"{a.name}_{method}_{budget.replace('/', 'over')}{a.tag}"
            args = build_parser().parse_args([
                "compress", "--task", "translate", "--teacher", a.teacher, "--eval-data", str(eval_a),
                "--real-target", str(eval_b), "--budget", budget, "--method", method, "--out", str(out / name),
                "--quiet", *extra])
            t = time.time()
            m = compress(config_from_args(args))
            keys = ("teacher_macs", "student_macs", "student_params", "psnr_to_teacher", "ssim_to_teacher",
                    "fid_to_teacher", "kid_to_teacher", "student_fid_real", "teacher_fid_real", "student_kid_real",
                    "teacher_kid_real", "latency_ratio_torch", "latency_ratio_onnx", "images", "stage_seconds")
            row = {"run": name, "teacher": a.name, "method": method, "budget": budget, "wall_seconds": time.time() - t,
                   "threads": torch.get_num_threads(), "extra_args": extra, **{k: m.get(k) for k in keys},
                   "spec": m["spec"]}
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "spec"}), flush=True)


if __name__ == "__main__":
    main()

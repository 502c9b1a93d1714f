"""label2image benchmark: every method vs the uniform baseline on a SPADE teacher (issue 17).

Training maps: the bundled ones (k-means maps of 4 views of each bundled training photograph).
Evaluation: the 52 bundled held-out maps (13 views of each held-out photograph; never trained
on), so FID/KID to the teacher are computed. One row per run in OUT/results.jsonl.

    python bench/label2image_benchmark.py --methods agd,ofa,slim,uniform --budgets 1/10,1/20 \
        --seeds 0 --out bench/out/label2image
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gancompress.api import compress
from gancompress.cli import build_parser, config_from_args

KEYS = ("teacher_macs", "student_macs", "student_params", "teacher_params", "psnr_to_teacher", "ssim_to_teacher",
        "fid_to_teacher", "kid_to_teacher", "latency_ratio_torch", "latency_ratio_onnx", "images", "stage_seconds")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="demo")
    ap.add_argument("--name", default="demo", help="teacher name in run folders and the results")
    ap.add_argument("--budgets", default="1/10,1/20")
    ap.add_argument("--methods", default="agd,ofa,slim,uniform")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default="bench/out/label2image")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("compress_args", nargs=argparse.REMAINDER, help="after --: extra compress options")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [x for x in a.compress_args if x != "--"]
    for budget in a.budgets.split(","):
        for seed in a.seeds.split(","):
            for method in a.methods.split(","):
                name = f"{a.name}_{method}_{budget.replace('/', 'over')}_s{seed}{a.tag}"
                args = build_parser().parse_args([
                    "compress", "--task", "label2image", "--teacher", a.teacher, "--budget", budget, "--method",
                    method, "--seed", seed, "--out", str(out / name), "--quiet", *extra])
                t = time.time()
                m = compress(config_from_args(args))
                row = {"run": name, "teacher": a.name, "method": method, "budget": budget, "seed": int(seed),
                       "wall_seconds": time.time() - t, "threads": torch.get_num_threads(), "extra_args": extra,
                       **{k: m.get(k) for k in KEYS}, "spec": m["spec"]}
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: v for k, v in row.items() if k != "spec"}), flush=True)


if __name__ == "__main__":
    main()

"""Retrain one searched architecture twice: from scratch and warm-started from the supernet's
weights, with identical data, steps and seed; report Set5/Set14 PSNR-Y and PSNR to the teacher.

    python bench/init_ablation.py bench/out/srgan/agd_1over10 --out bench/out/srgan/init_ablation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from gancompress.arch.build import build_student, load_sliced
from gancompress.arch.spec import ArchSpec
from gancompress.config import CompressConfig
from gancompress.data.run_data import teacher_targets
from gancompress.data.patches import PatchSampler
from gancompress.data.sr_sets import load_sr_eval_set
from gancompress.distill.train import TrainConfig, fit_pixels
from gancompress.evaluate import quality
from gancompress.rundir import RunDir
from gancompress.teachers import load_teacher

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="a finished AGD run directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--inits", default="scratch,supernet")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    run_p = Path(a.run)
    cfg_d = json.loads((run_p / "config.json").read_text())
    cfg = CompressConfig(**{k: v for k, v in cfg_d.items() if k not in ("search", "retrain")})
    r = TrainConfig(**cfg_d["retrain"])
    teacher = load_teacher(cfg.teacher, scale=cfg.scale)
    run = RunDir(run_p, cfg_d, create=False)
    names, pairs = teacher_targets(cfg, run, teacher, images=None)  # cached by the finished run
    spec = ArchSpec.load(run_p / "search" / "spec.json")
    init = load_file(str(run_p / "search" / "init.safetensors"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {n: load_sr_eval_set(SHARED / "data" / "sr" / n, cfg.scale) for n in ("Set5", "Set14")}
    for mode in a.inits.split(","):
        torch.manual_seed(cfg.seed)
        student = build_student(spec)
        if mode == "supernet":
            load_sliced(student, init)
        sampler = PatchSampler(pairs, r.patch, cfg.scale, r.batch, cfg.seed + 11, names=names)
        fit_pixels(student, sampler, r, out / f"{mode}.ckpt", f"retrain ({mode})", quiet=True)
        row = {"init": mode, "run": str(run_p), "steps": r.steps}
        for n, data in sets.items():
            q, _, _ = quality(student.eval(), teacher, data, cfg.scale, quiet=True)
            row[f"{n}_psnr_y"], row[f"{n}_psnr_to_teacher"] = q["student_psnr_y"], q["psnr_to_teacher"]
        print(json.dumps(row), flush=True)
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

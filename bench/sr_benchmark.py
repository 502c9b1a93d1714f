"""SR benchmark: compress a teacher at several budgets with AGD and the uniform-width baseline.

Every run uses the library defaults unless flags say otherwise, trains on the bundled photographs
only, evaluates on Set5 (the run's eval set) and Set14, and records quality, MACs, latency ratios
and stage wall times. Results are appended to OUT/results.jsonl and printed as a Markdown table.

    python bench/sr_benchmark.py --teacher srgan:../shared/teachers/srgan_x4.pth \
        --budgets 1/10 --methods agd,uniform --out bench/out/srgan
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gancompress.api import evaluate_run
from gancompress.cli import build_parser, config_from_args
from gancompress.api import compress

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=f"srgan:{SHARED / 'teachers' / 'srgan_x4.pth'}")
    ap.add_argument("--budgets", default="1/10")
    ap.add_argument("--methods", default="agd,uniform")
    ap.add_argument("--out", default="bench/out/srgan")
    ap.add_argument("--eval", default=str(SHARED / "data" / "sr" / "Set5"))
    ap.add_argument("--extra-eval", default=str(SHARED / "data" / "sr" / "Set14"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="", help="suffix for run folders (e.g. an experiment name)")
    ap.add_argument("compress_args", nargs=argparse.REMAINDER,
                    help="after --: extra `gancompress compress` options (e.g. --init scratch)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    extra = [x for x in a.compress_args if x != "--"]
    out = Path(a.out)
    rows = []
    for budget in a.budgets.split(","):
        for method in a.methods.split(","):
            name = f"{method}_{budget.replace('/', 'over').replace(':', '_')}{a.tag}"
            args = build_parser().parse_args(["compress", "--teacher", a.teacher, "--eval-data", a.eval,
                                              "--budget", budget, "--method", method, "--out", str(out / name),
                                              "--quiet", *extra])
            cfg = config_from_args(args)
            t = time.time()
            m = compress(cfg)
            wall = time.time() - t
            e14 = evaluate_run(str(out / name), a.extra_eval, quiet=True)
            row = {"run": name, "method": method, "budget": budget, "budget_macs": m.get("budget_macs"),
                   "budget_detail": m.get("budget"),
                   "student_gmacs": m["student_macs"] / 1e9, "teacher_gmacs": m["teacher_macs"] / 1e9,
                   "params_m": m["student_params"] / 1e6, "set5_psnr_y": m["student_psnr_y"],
                   "set5_ssim_y": m["student_ssim_y"], "set5_teacher_psnr_y": m["teacher_psnr_y"],
                   "set5_psnr_to_teacher": m["psnr_to_teacher"], "set14_psnr_y": e14["student_psnr_y"],
                   "set14_teacher_psnr_y": e14["teacher_psnr_y"], "set14_psnr_to_teacher": e14["psnr_to_teacher"],
                   "latency_ratio_torch": m["latency_ratio_torch"], "latency_ratio_onnx": m.get("latency_ratio_onnx"),
                   "student_ms_torch": m["student_ms_torch"], "teacher_ms_torch": m["teacher_ms_torch"],
                   "stage_seconds": m.get("stage_seconds"), "wall_seconds_this_call": wall,
                   "threads": torch.get_num_threads(), "extra_args": extra,
                   "spec": m["spec"],
                   "int8": {k: v for k, v in m["int8"].items() if k != "per_image"} if m.get("int8") else None}
            rows.append(row)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "spec"}), flush=True)
    print()
    print("| run | GMACs | params (M) | Set5 PSNR-Y | Set14 PSNR-Y | Set5 PSNR to teacher | latency ratio torch | ORT | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mins = sum((r["stage_seconds"] or {}).values()) / 60
        print(f"| {r['run']} | {r['student_gmacs']:.2f} | {r['params_m']:.3f} | {r['set5_psnr_y']:.2f} | "
              f"{r['set14_psnr_y']:.2f} | {r['set5_psnr_to_teacher']:.2f} | {r['latency_ratio_torch']:.3f} | "
              f"{(r['latency_ratio_onnx'] or float('nan')):.3f} | {mins:.1f} |")


if __name__ == "__main__":
    main()

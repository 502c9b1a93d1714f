"""Search cost of GAN Compression's evolutionary search at demo scale: candidates scored per minute.

Runs `compress --method ofa` on a task's bundled demo teacher with the demo's space (SR: 3 cells x
3 layers; translate: 6 cells x 2 layers), a short supernet training (the search cost does not depend
on it) and no fine-tuning, then reads RUN/search/ofa.json.

    python bench/ofa_search_cost.py --task sr --threads 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gancompress.cli import build_parser, config_from_args
from gancompress.api import compress

SPACE = {"sr": ["--cells", "3", "--layers", "3"], "translate": ["--cells", "6", "--layers", "2"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="sr", choices=["sr", "translate"])
    ap.add_argument("--out", default="bench/out/ofa_search_cost")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("compress_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out) / a.task
    extra = [x for x in a.compress_args if x != "--"]
    args = build_parser().parse_args(["compress", "--task", a.task, "--method", "ofa", "--budget", "1/10", "--out", str(out),
                                      "--ofa-steps", "50", "--retrain-steps", "0", "--latency-repeats", "1",
                                      "--quiet", *SPACE[a.task], *extra])
    compress(config_from_args(args))
    info = json.loads((out / "search" / "ofa.json").read_text())
    row = {"task": a.task, "threads": a.threads, "candidates": info["candidates"],
           "evolution_seconds": round(info["evolution_seconds"], 1),
           "candidates_per_minute": round(info["candidates_per_minute"], 1),
           "minutes_for_300": round(300 / info["candidates_per_minute"], 2)}
    print(json.dumps(row))
    with open(Path(a.out) / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""Does the sandwich rule help once-for-all training? Train the GAN Compression supernet twice on
the same teacher, data, steps and sub-networks per step: with the sandwich rule (widest +
narrowest + random) and without (all random). Then score the same fixed sub-networks (widest,
narrowest, N random ones drawn with one seed) in both supernets on the held-out training crops
the evolutionary search uses (PSNR to the teacher), and report each run's evolution result.
No fine-tuning (--retrain-steps 0): this measures the supernet alone.

    python bench/ofa_sandwich.py --out bench/out/ofa_sandwich [-- extra compress options]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch

from gancompress.cli import build_parser, config_from_args
from gancompress.api import compress
from gancompress.methods.gan_compression import ofa_space
from gancompress.distill.loop import load_checkpoint
from gancompress.methods.space import WidthSupernet

SHARED = Path(__file__).resolve().parents[2] / "shared"


def held_out_batch(cfg, run):
    from safetensors.torch import load_file

    from gancompress.data.patches import PatchSampler
    from gancompress.methods.once_for_all import holdout_split

    d = load_file(str(run / "teacher_targets.safetensors"))
    names = json.loads((run / "teacher_targets.json").read_text())
    pairs = [(d[f"{i}.lr"], d[f"{i}.t"]) for i in range(len(names))]
    _, _, held = holdout_split(pairs, names, cfg.method_options.holdout, cfg.seed)
    return PatchSampler(held, cfg.retrain.patch, cfg.scale, 32, 123, augment=False).next_batch()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=f"srgan:{SHARED / 'teachers' / 'srgan_x4.pth'}")
    ap.add_argument("--budget", default="1/10")
    ap.add_argument("--out", default="bench/out/ofa_sandwich")
    ap.add_argument("--random", type=int, default=16, help="random sub-networks scored in both supernets")
    ap.add_argument("--only", default="sandwich,random")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("compress_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    extra = [x for x in a.compress_args if x != "--"]
    rows = {}
    for mode in a.only.split(","):
        out = Path(a.out) / mode
        args = ["compress", "--method", "ofa", "--teacher", a.teacher, "--budget", a.budget, "--out", str(out),
                "--retrain-steps", "0", "--quiet", *extra] + (["--no-sandwich"] if mode == "random" else [])
        cfg = config_from_args(build_parser().parse_args(args))
        m = compress(cfg)
        space = ofa_space(cfg)
        net = WidthSupernet(space)
        net.load_state_dict(load_checkpoint(out / "search" / "supernet.ckpt")["state"]["supernet"])
        net.eval()
        lr, tgt = held_out_batch(cfg, out)
        rng = random.Random(0)
        configs = [space.max_config(), space.min_config()] + [space.sample(rng) for _ in range(a.random)]
        scores = []
        with torch.no_grad():
            for c in configs:
                net.set_config(c)
                mse = ((net(lr).clamp(0, 1) - tgt) ** 2).flatten(1).mean(1)
                scores.append(float((10 * torch.log10(1 / mse)).mean()))
        info = json.loads((out / "search" / "ofa.json").read_text())
        rows[mode] = {"widest": scores[0], "narrowest": scores[1], "random_mean": statistics.mean(scores[2:]),
                      "evolution_best": info["history"][-1]["best_score"], "chosen": info["config"],
                      "chosen_gmacs": m["student_macs"] / 1e9, "eval_psnr_y_no_finetune": m["student_psnr_y"], "eval_psnr_to_teacher_no_finetune": m["psnr_to_teacher"],
                      "supernet_seconds": info["supernet_seconds"], "scores": scores}
        print(json.dumps({mode: rows[mode]}), flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    with open(Path(a.out) / "results.json", "a") as f:
        f.write(json.dumps(rows) + "\n")
    print(f"| sampling | widest | narrowest | {a.random} random (mean) | evolution best | chosen GMACs | eval PSNR-Y, no fine-tune |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['widest']:.2f} | {r['narrowest']:.2f} | {r['random_mean']:.2f} | "
              f"{r['evolution_best']:.2f} | {r['chosen_gmacs']:.2f} | {r['eval_psnr_y_no_finetune']:.2f} |")


if __name__ == "__main__":
    main()

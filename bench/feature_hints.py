"""Does supervising a student's intermediate layers with the teacher's own features make
distillation fit faster? (issue 12: translation fidelity; BENCHMARKS.md, "Teacher features as
targets").

The teacher is read as a graph (teachers/graph_reader.py). The student is that graph with every
position cut to `--keep` of its channels (1.0: the teacher's own architecture), initialised at
random (`--init random`) or from the teacher's kept weights (`--init teacher`). Because the
student's channels are a subset of the teacher's, each intermediate value of the student has a
target without any mapping layer: the same value of the teacher, restricted to the kept channels.
Loss: L1 to the teacher's output + `--hints` x the mean over the hinted values (outputs of the
activations and norms) of L1 to the teacher's, each divided by the teacher value's mean |x|.
Every step runs the teacher on the step's random crops (labels per crop, as the pipeline's
default). Reports PSNR to the teacher on held-out images at a few points of training.

    OMP_NUM_THREADS=1 python bench/feature_hints.py --teacher torchscript:../shared/teachers/style_mosaic_densenet.ts \
        --teacher-range 0,1 --trust-teacher-code --images bench/out/translate/eval_A --every 4 --keep 1 --hints 1
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HINTED = ("relu", "lrelu", "prelu", "inorm", "bnorm")


def main() -> None:
    from gancompress.arch.cost import measure_macs
    from gancompress.arch.graph import GraphNet
    from gancompress.arch.graph_channels import channel_graph, class_importance, keep_fraction, prune_graph
    from gancompress.data.bundled import bundled_photographs
    from gancompress.data.images import load_folder
    from gancompress.data.translate import training_views
    from gancompress.metrics.sr import psnr_rgb
    from gancompress.teachers import load_teacher
    from gancompress.teachers.graph_reader import read_teacher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--teacher-range", default=None)
    ap.add_argument("--trust-teacher-code", action="store_true")
    ap.add_argument("--images", required=True, help="held-out input images (evaluation)")
    ap.add_argument("--every", type=int, default=4, help="evaluate on every k-th image")
    ap.add_argument("--keep", type=float, default=1.0, help="kept fraction of every position (1: the teacher's size)")
    ap.add_argument("--init", choices=["random", "teacher"], default="random")
    ap.add_argument("--hints", type=float, default=0.0, help="weight of the intermediate-feature term (0: output only)")
    ap.add_argument("--map", action="store_true",
                    help="match a learned 1x1 map of each student value to the teacher's whole value (all channels), "
                         "as GAN Compression does, instead of the teacher's kept channels directly")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evals", default="750,1500,3000", help="steps at which to evaluate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/out/feature_hints.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rnd = random.Random(args.seed)

    rng = tuple(float(v) for v in args.teacher_range.split(",")) if args.teacher_range else None
    teacher = load_teacher(args.teacher, value_range=rng, trust_code=args.trust_teacher_code)
    spec, weights = read_teacher(teacher)
    t_net = GraphNet(spec)
    t_net.load_state_dict(weights)
    t_net.eval().requires_grad_(False)
    cg = channel_graph(spec)
    keep = keep_fraction(cg, class_importance(spec, weights, cg), args.keep) if args.keep < 1 else \
        {cg.root(c) for ids in cg.labels.values() for c in ids}
    small, w = prune_graph(spec, weights, cg, keep)
    student = GraphNet(small)
    if args.init == "teacher":
        student.load_state_dict(w)
    idx = {}  # hinted value -> the teacher's channels the student keeps there
    for op in spec.ops:
        if op.op in HINTED:
            idx[op.output] = torch.tensor([j for j, c in enumerate(cg.labels[op.output])
                                           if cg.root(c) in keep or cg.root(c) in cg.fixed])
    macs = measure_macs(student) / measure_macs(t_net)
    maps = torch.nn.ModuleDict()
    if args.map:
        for v, ii in idx.items():
            c_t = len(cg.labels[v])
            maps[str(v)] = torch.nn.Conv2d(len(ii), c_t, 1, bias=False)
            with torch.no_grad():  # start as the identity on the kept channels
                maps[str(v)].weight.zero_()
                maps[str(v)].weight[ii, torch.arange(len(ii))] = 1.0

    train = [im for _, im in training_views(bundled_photographs("train"), 256, 1, args.seed)]
    evalset = [im for _, im in load_folder(args.images)][::args.every]
    with torch.no_grad():
        targets = [t_net(x[None]).clamp(0, 1)[0] for x in evalset]

    def batch():
        xs = []
        for _ in range(args.batch):
            im = rnd.choice(train)
            t, le = rnd.randrange(0, 256 - args.crop + 1), rnd.randrange(0, 256 - args.crop + 1)
            c = im[:, t:t + args.crop, le:le + args.crop]
            xs.append(c.flip(-1) if rnd.random() < 0.5 else c)
        return torch.stack(xs)

    def evaluate() -> float:
        student.eval()
        with torch.no_grad():
            ps = [psnr_rgb(student(x[None]).clamp(0, 1)[0], t) for x, t in zip(evalset, targets)]
        student.train()
        return sum(ps) / len(ps)

    opt = torch.optim.Adam([*student.parameters(), *maps.parameters()], lr=args.lr)
    evals = sorted(int(v) for v in args.evals.split(","))
    points, t0, run_l = [], time.perf_counter(), 0.0
    student.train()
    for i in range(1, args.steps + 1):
        lr = 1e-6 + 0.5 * (args.lr - 1e-6) * (1 + math.cos(math.pi * i / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch()
        with torch.no_grad():
            t_env = t_net.values(x)
        if args.hints > 0:
            s_env = student.values(x)
            out = s_env[small.output]
            if args.map:
                hint = sum(F.l1_loss(maps[str(v)](s_env[v]), t_env[v]) / (t_env[v].abs().mean() + 1e-6)
                           for v in idx) / len(idx)
            else:
                hint = sum(F.l1_loss(s_env[v], t_env[v][:, ii]) / (t_env[v].abs().mean() + 1e-6)
                           for v, ii in idx.items()) / len(idx)
        else:
            out, hint = student(x), torch.zeros(())
        l_out = F.l1_loss(out, t_env[spec.output])
        loss = l_out + args.hints * hint
        opt.zero_grad()
        loss.backward()
        opt.step()
        run_l += l_out.item()
        if i in evals:
            p = evaluate()
            points.append({"step": i, "psnr_to_teacher": p, "train_l1": run_l / 50 if i >= 50 else None,
                           "minutes": (time.perf_counter() - t0) / 60})
            print(json.dumps(points[-1]), flush=True)
        if i % 50 == 0:
            run_l = 0.0
    res = {"teacher": args.teacher, "keep": args.keep, "macs_ratio": macs, "init": args.init, "hints": args.hints,
           "map": args.map,
           "hinted_values": len(idx), "steps": args.steps, "lr": args.lr, "batch": args.batch, "crop": args.crop,
           "seed": args.seed, "eval_images": len(evalset), "points": points}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()

"""How much of a teacher survives a channel cut before any fine-tuning (BENCHMARKS.md, "Starting
from the teacher"): the teacher read as a graph (teachers/graph_reader.py), every position cut to
the same kept fraction by magnitude (`--method prune`'s ranking), and each position alone cut to
half, scored by PSNR to the teacher on held-out translation images (no training anywhere).

    python bench/prune_sensitivity.py --teacher torchscript:../shared/teachers/style_mosaic_densenet.ts \
        --teacher-range 0,1 --trust-teacher-code --images bench/out/translate/eval_A --every 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    from gancompress.arch.cost import measure_macs
    from gancompress.arch.graph import GraphNet
    from gancompress.arch.graph_channels import channel_graph, class_importance, keep_fraction, prune_graph
    from gancompress.data.images import load_folder
    from gancompress.metrics.sr import psnr_rgb
    from gancompress.teachers import load_teacher
    from gancompress.teachers.graph_reader import read_teacher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--teacher-range", default=None, help="a black box's value range, e.g. 0,1")
    ap.add_argument("--trust-teacher-code", action="store_true")
    ap.add_argument("--images", required=True, help="a folder of held-out input images")
    ap.add_argument("--every", type=int, default=1, help="score every k-th image")
    ap.add_argument("--fractions", default="0.9,0.75,0.6,0.5,0.4,0.3")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = tuple(float(v) for v in args.teacher_range.split(",")) if args.teacher_range else None
    teacher = load_teacher(args.teacher, value_range=rng, trust_code=args.trust_teacher_code)
    spec, weights = read_teacher(teacher)
    images = [im for _, im in load_folder(args.images)][::args.every]
    with torch.no_grad():
        targets = [teacher.predict(x[None])[0] for x in images]
    cg = channel_graph(spec)
    scores = class_importance(spec, weights, cg)
    full = measure_macs(GraphNet(spec))

    def score(keep) -> tuple[float, float]:
        small, w = prune_graph(spec, weights, cg, keep)
        net = GraphNet(small)
        net.load_state_dict(w)
        net.eval()
        with torch.no_grad():
            ps = [psnr_rgb(net(x[None]).clamp(0, 1)[0], t) for x, t in zip(images, targets)]
        return sum(ps) / len(ps), measure_macs(net) / full

    print(f"teacher {args.teacher}: {len(cg.positions)} positions {[len(p) for p in cg.positions]}, "
          f"{full / 1e9:.2f} GMACs, {len(images)} images from {Path(args.images).name}")
    print("| kept fraction (every position) | MACs / teacher | PSNR to teacher, no fine-tune |\n|---:|---:|---:|")
    for f in (float(v) for v in args.fractions.split(",")):
        p, m = score(keep_fraction(cg, scores, f))
        print(f"| {f:.2f} | {m:.3f} | {p:.2f} |")
    print("| position (channels) | PSNR to teacher with only it cut to half |\n|---|---:|")
    for i, pos in enumerate(cg.positions):
        keep = set(cg.fixed)
        for j, other in enumerate(cg.positions):
            n = len(other) // 2 if i == j else len(other)
            keep.update(sorted(other, key=lambda r: -scores[r])[:max(1, n)])
        print(f"| {i} ({len(pos)}) | {score(keep)[0]:.2f} |")


if __name__ == "__main__":
    main()

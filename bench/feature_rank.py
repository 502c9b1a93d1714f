"""How many dimensions does a teacher use? (issue 12: why students at 1/5 stay near 19 dB)

The teacher is read as a graph (teachers/graph_reader.py). On the bundled training photographs it
measures, for each activation (ReLU / LeakyReLU / PReLU output) of the teacher:
  * the principal components needed for 90 / 95 / 99 / 99.9 % of its variance;
then, on held-out images, the teacher's output when *every* activation is replaced by its
projection onto its top `f` fraction of principal components (a fixed, data-fitted basis from the
training photographs), as PSNR to the unmodified teacher.

Why: a student at 1/k of the teacher's MACs has about 1/sqrt(k) of its widths. If the teacher's
activations need most of their dimensions, no layer-by-layer compression of it keeps its output,
whatever the training recipe; the projection is the best any linear subspace of that size can do
per layer (PCA), so its PSNR is a guide to what the widths allow.

    python bench/feature_rank.py --teacher torchscript:../shared/teachers/style_mosaic_densenet.ts \\
        --teacher-range 0,1 --trust-teacher-code --images bench/out/translate/eval_A --every 4
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    from gancompress.arch.graph import GraphNet
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
    ap.add_argument("--images", required=True, help="held-out input images")
    ap.add_argument("--every", type=int, default=4, help="use every k-th held-out image")
    ap.add_argument("--fit-images", type=int, default=8, help="training views the bases are fitted on")
    ap.add_argument("--fractions", default="0.9,0.75,0.6,0.45,0.3")
    ap.add_argument("--side", type=int, default=256, help="side of the fitting views and held-out crops "
                    "(an SR teacher's input: e.g. 96)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    rng = tuple(float(v) for v in a.teacher_range.split(",")) if a.teacher_range else None
    spec, weights = read_teacher(load_teacher(a.teacher, value_range=rng, trust_code=a.trust_teacher_code))
    net = GraphNet(spec)
    net.load_state_dict(weights)
    net.eval()
    fit = [im for _, im in training_views(bundled_photographs("train"), a.side, 1, 0)][:a.fit_images]
    relus = [op.output for op in spec.ops if op.op in ("relu", "lrelu", "prelu")]
    bases, spectrum = {}, []
    with torch.no_grad():
        envs = [net.values(im[None]) for im in fit]
        for v in relus:
            x = torch.cat([e[v][0].flatten(1) for e in envs], 1)  # channels x pixels
            mu = x.mean(1, keepdim=True)
            ev, vec = torch.linalg.eigh((x - mu) @ (x - mu).T / x.shape[1])
            ev, vec = ev.flip(0), vec.flip(1)  # descending
            bases[v] = (mu, vec)
            cum = ev.cumsum(0) / ev.sum()
            need = [int((cum < q).sum()) + 1 for q in (0.9, 0.95, 0.99, 0.999)]
            spectrum.append({"value": v, "channels": int(ev.numel()), "side": int(envs[0][v].shape[-1]),
                             "components_90_95_99_999": need})
            print(json.dumps(spectrum[-1]), flush=True)

        def projected(x, frac):
            def project(v, h):
                if v not in bases:
                    return h
                mu, vec = bases[v]
                p = vec[:, :max(1, round(frac * vec.shape[1]))]
                return (p @ (p.T @ (h[0].flatten(1) - mu)) + mu).view_as(h)

            return net.values(x, edit=project)[spec.output].clamp(0, 1)

        held = [im[:, :a.side, :a.side] for _, im in load_folder(a.images)][::a.every]
        targets = [net(x[None]).clamp(0, 1)[0] for x in held]
        for frac in (float(f) for f in a.fractions.split(",")):
            ps = [psnr_rgb(projected(x[None], frac)[0], t) for x, t in zip(held, targets)]
            print(json.dumps({"fraction_of_components": frac, "psnr_to_teacher": sum(ps) / len(ps),
                              "images": len(ps)}), flush=True)


if __name__ == "__main__":
    main()

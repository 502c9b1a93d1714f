"""The teacher's intermediate features as targets for a student cut from the teacher's own graph
(`--hints W` with `--prune-init graph` / `--slim-init graph`; issue 12).

A student cut from the teacher read as a graph (teachers/graph_reader.py, arch/graph_channels.py)
keeps a subset of the teacher's channels at every layer, in the same layers. So each of its
intermediate values has a target without any mapping layer: the teacher's same value, restricted
to the kept channels. The term is the mean over the hinted values (the outputs of activations and
norms) of L1(student value, teacher value[:, kept]) / mean |teacher value|, times W, added to the
output distillation loss. Measured on the style teacher (BENCHMARKS.md, "Teacher features as
targets"): a student of the teacher's size from scratch reaches 26.2 dB to it in 3000 steps (19.0
without); cut to half the MACs, 21.2 dB; at 1/5 no gain (below the uniform student), so it is
off by default.

The kept channels are written by the method's search (`search/teacher_channels.json`), so a
resumed run matches the same channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError

HINTED_OPS = ("relu", "lrelu", "prelu", "inorm", "bnorm")
CHANNELS_FILE = "teacher_channels.json"


def hinted_channels(graph, cg, keep) -> dict[int, list[int]]:
    """Hinted value id -> the teacher's channels the cut keeps there."""
    from ..arch.graph_channels import kept_channels

    return {op.output: kept_channels(cg, keep, op.output) for op in graph.ops if op.op in HINTED_OPS}


def write_channels(run, channels: dict[int, list[int]]) -> None:
    from ..fileio import atomic_write_text

    atomic_write_text(Path(getattr(run, "path", run)) / "search" / CHANNELS_FILE,
                      json.dumps({str(k): v for k, v in channels.items()}))


class GraphHints:
    """`(out, weighted hint loss) = hints(student, x)`: the student's output and its features'
    distance to the teacher's at the kept channels."""

    def __init__(self, graph, weights: dict, channels: dict[int, list[int]], weight: float, device="cpu"):
        from ..arch.graph import GraphNet

        self.teacher = GraphNet(graph)
        self.teacher.load_state_dict(weights)
        self.teacher.to(device).eval().requires_grad_(False)
        self.index = {int(v): torch.tensor(idx, device=device) for v, idx in channels.items()}
        self.weight = float(weight)

    def __call__(self, student, x):
        with torch.no_grad():
            t = self.teacher.values(x)
        s = student.values(x)
        terms = [F.l1_loss(s[v], t[v].index_select(1, idx)) / (t[v].abs().mean() + 1e-6)
                 for v, idx in self.index.items()]
        return s[student.spec.output], self.weight * torch.stack(terms).mean()


def hints_for_run(ctx) -> GraphHints | None:
    """The run's hints (None when --hints is 0): needs a student cut from the teacher's graph."""
    w = ctx.cfg.retrain.hints
    if not w:
        return None
    f = Path(ctx.run.path) / "search" / CHANNELS_FILE
    if "graph" not in ctx.extra or not f.is_file():
        raise UserError("--hints needs a student cut from the teacher read as a graph (--method prune "
                        "--prune-init graph or --method slim --slim-init graph, on a teacher that can be read "
                        "as one); leave --hints at 0 otherwise")
    channels = {int(k): v for k, v in json.loads(f.read_text()).items()}
    return GraphHints(*ctx.extra["graph"], channels, w, ctx.cfg.device)

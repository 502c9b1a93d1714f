"""Pruning a teacher read as a layer graph (teachers/graph_reader.py), for the methods that start
from the teacher when its layout is not one the student skeleton expresses (any traceable PyTorch
or TorchScript teacher).

* Magnitude pruning (`prune_to_budget`): the channel classes of every position ranked
  (arch/graph_channels.py: |gamma| of the norms that read them, else filter magnitude), the same
  share of every position kept, the largest share whose network fits the budget, cut exactly.
* GAN Slimming (`GatedGraph`): a gate per channel class, trained with an L1 proximal step, cut
  at the threshold that fits the budget, gates folded into the weights."""

from __future__ import annotations

import bisect

import torch
from torch import nn

from ..arch.graph import GraphNet, GraphSpec
from ..arch.graph_channels import channel_graph, class_importance, keep_fraction, position_widths, prune_graph
from ..arch.spec import ArchSpec
from ..distill.hints import hinted_channels, write_channels
from ..distributed import is_main


def _spec(ctx, graph, meta=None) -> ArchSpec:
    return ArchSpec.from_graph(ctx.cfg.task, ctx.teacher.scale, graph, meta)


def smallest_graph_spec(ctx) -> ArchSpec:
    """One channel class per position: the floor of what pruning the graph can reach."""
    graph = ctx.extra["graph"][0]
    cg = channel_graph(graph)
    return _spec(ctx, prune_graph(graph, {}, cg, keep_fraction(cg, {}, 0.0))[0])


def prune_to_budget(ctx, steps: int = 20):
    """(spec, weights, info): the teacher graph with the largest shared kept fraction that fits."""
    graph, weights = ctx.extra["graph"]
    cg = channel_graph(graph)
    scores = class_importance(graph, weights, cg)
    lo, hi = 0.0, 1.0  # lo: a fraction that fits (the floor fits: check_budget), hi: one that does not
    for _ in range(steps):
        mid = (lo + hi) / 2
        if ctx.budget.fits(_spec(ctx, prune_graph(graph, {}, cg, keep_fraction(cg, scores, mid))[0])):  # spec only
            lo = mid
        else:
            hi = mid
    keep = keep_fraction(cg, scores, lo)
    small, small_w = prune_graph(graph, weights, cg, keep)
    info = {"kept_fraction": lo, "positions": len(cg.positions), "widths": position_widths(cg, keep),
            "widest": [len(p) for p in cg.positions], "pruned_from": "teacher graph"}
    if is_main():  # which teacher channels the student kept: the targets of --hints
        write_channels(ctx.run, hinted_channels(graph, cg, keep))
    return _spec(ctx, small), small_w, info


class GatedGraph(nn.Module):
    """GAN Slimming's gates on a graph network: one gate per channel class, multiplying that
    channel wherever a convolution reads it (a norm after the writer would undo a gate on the
    writer's output, so the gate sits at the readers). A gate at zero is the channel cut: the same
    interface as channels.GatedStudent for slimming's training loop."""

    def __init__(self, task: str, scale: int, graph: GraphSpec, weights: dict):
        super().__init__()
        self.task, self.scale, self.graph = task, scale, graph
        self.net = GraphNet(graph)
        self.net.load_state_dict(weights)
        self.cg = channel_graph(graph)
        self.classes = [r for pos in self.cg.positions for r in pos]
        slot = {r: i for i, r in enumerate(self.classes)}
        self.gates = nn.Parameter(torch.ones(len(self.classes)))
        self._index = {}
        for i, op in enumerate(graph.ops):
            if op.op == "conv":
                idx = [slot.get(self.cg.root(c), len(self.classes)) for c in self.cg.labels[op.inputs[0]]]
                self._index[i] = torch.tensor(idx)
                self.net.layers[i].register_forward_pre_hook(self._gate(i))

    def _gate(self, i):
        def hook(_m, inp):
            g = torch.cat([self.gates, self.gates.new_ones(1)])[self._index[i].to(self.gates.device)]
            return (inp[0] * g.view(1, -1, 1, 1),)
        return hook

    def forward(self, x):
        return self.net(x)

    def gate_parameters(self):
        return [self.gates]

    def weight_parameters(self):
        return list(self.net.parameters())

    @torch.no_grad()
    def proximal_step(self, threshold: float) -> None:
        g = self.gates
        g.copy_(torch.sign(g) * torch.clamp(g.abs() - threshold, min=0))

    def sparsity(self) -> float:
        return float((self.gates.detach() == 0).float().mean())

    def kept(self, threshold: float) -> set[int]:
        """Classes whose |gate| exceeds `threshold`, at least the strongest one per position."""
        mags = {r: float(v) for r, v in zip(self.classes, self.gates.detach().abs().cpu())}
        keep = set(self.cg.fixed)
        for pos in self.cg.positions:
            alive = [r for r in pos if mags[r] > threshold]
            keep.update(alive or [max(pos, key=lambda r: mags[r])])
        return keep

    def spec_for(self, keep: set[int], meta=None) -> ArchSpec:
        return ArchSpec.from_graph(self.task, self.scale, prune_graph(self.graph, {}, self.cg, keep)[0], meta)

    def live_spec(self) -> ArchSpec:
        return self.spec_for(self.kept(0.0))

    def threshold_for_budget(self, budget) -> float:
        """The smallest gate threshold whose cut network fits `budget` (binary search)."""
        mags = sorted({0.0, *(float(v) for v in self.gates.detach().abs().cpu())})
        i = bisect.bisect_left(range(len(mags)), True, key=lambda j: budget.fits(self.spec_for(self.kept(mags[j]))))
        return mags[min(i, len(mags) - 1)]

    @torch.no_grad()
    def extract(self, keep: set[int]) -> tuple[GraphSpec, dict]:
        """The cut graph with the gates folded into the readers' weights (outputs equal)."""
        state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        g = torch.cat([self.gates.detach().cpu(), torch.ones(1)])
        for i, idx in self._index.items():
            w = state[f"layers.{i}.weight"]
            scale = g[idx]
            state[f"layers.{i}.weight"] = w * (scale.view(-1, 1, 1, 1) if self.graph.ops[i].attrs["transposed"]
                                               else scale.view(1, -1, 1, 1))
        return prune_graph(self.graph, state, self.cg, keep)

"""Which channels of a GraphNet can be removed together, and removing them exactly.

Every convolution writes a fresh set of channel ids; point-wise layers (norms, activations,
padding, scaling, resizes) pass ids through; a concatenation lists its inputs' ids; a residual add
ties the ids of its two inputs one to one (they must be kept or cut together: union-find). The
image input and the network's output are fixed; the r^2 input channels a pixel shuffle
folds into one output channel are one class. A *position* is
a connected set of convolution outputs (tied by adds); pruning keeps a subset of each position's
channel classes and slices every layer that reads or writes them (`prune_graph`), so the smaller
network computes exactly what the larger one computed with those channels zeroed before their
readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .graph import GraphOp, GraphSpec

_PASS = {"inorm", "bnorm", "prelu", "relu", "lrelu", "tanh", "sigmoid", "clamp", "pad", "scale", "resize"}


class _Union:
    def __init__(self):
        self.parent: list[int] = []

    def new(self, n: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclass
class ChannelGraph:
    """Channel ids of every value, which classes are fixed, and the positions."""

    labels: dict[int, list[int]]  # value id -> channel ids (one per channel)
    fixed: set[int]  # class roots that may not be cut
    union: _Union
    positions: list[list[int]]  # per position: its class roots, in a stable order

    def root(self, cid: int) -> int:
        return self.union.find(cid)


def channel_graph(spec: GraphSpec) -> ChannelGraph:
    uf = _Union()
    labels: dict[int, list[int]] = {0: uf.new(spec.in_channels)}
    fixed_ids = set(labels[0])
    for i, op in enumerate(spec.ops):
        ins = [labels[v] for v in op.inputs]
        if op.op == "conv":
            ids = uf.new(int(op.attrs["cout"]))
        elif op.op in _PASS:
            ids = list(ins[0])
        elif op.op == "cat":
            ids = [c for part in ins for c in part]
        elif op.op == "add":
            a, b = ins
            if len(a) != len(b):
                raise ValueError(f"op {i}: add of {len(a)} and {len(b)} channels")
            for x, y in zip(a, b):
                uf.join(x, y)
            ids = list(a)
        elif op.op == "pixel_shuffle":  # output channel c is input channels c*r^2 .. c*r^2 + r^2 - 1
            r2 = int(op.attrs["r"]) ** 2
            ids = [ins[0][c * r2] for c in range(len(ins[0]) // r2)]
            for c, cid in enumerate(ids):
                for j in range(1, r2):
                    uf.join(cid, ins[0][c * r2 + j])
        else:
            raise ValueError(f"op {i}: unknown graph op {op.op!r}")
        labels[op.output] = ids
    fixed_ids.update(labels[spec.output])
    fixed = {uf.find(c) for c in fixed_ids}
    # positions: conv output groups joined by shared classes
    comp = _Union()
    groups = [labels[op.output] for op in spec.ops if op.op == "conv"]
    comp.new(len(groups))
    owner: dict[int, int] = {}
    for g, ids in enumerate(groups):
        for c in ids:
            r = uf.find(c)
            if r in owner:
                comp.join(owner[r], g)
            else:
                owner[r] = g
    by_comp: dict[int, list[int]] = {}
    for r, g in owner.items():
        if r not in fixed:
            by_comp.setdefault(comp.find(g), []).append(r)
    positions = [sorted(v) for _, v in sorted(by_comp.items())]
    return ChannelGraph(labels, fixed, uf, positions)


def class_importance(spec: GraphSpec, state: dict[str, torch.Tensor], cg: ChannelGraph) -> dict[int, float]:
    """Per channel class: the mean |gamma| of the affine norms that read it (a norm removes the
    filter's scale, so its gamma is what the channel contributes), else the mean |w| of its filters."""
    norm_sum: dict[int, float] = {}
    norm_n: dict[int, int] = {}
    filt: dict[int, float] = {}
    for i, op in enumerate(spec.ops):
        if op.op in ("inorm", "bnorm") and f"layers.{i}.weight" in state:
            g = state[f"layers.{i}.weight"].detach().abs().float()
            for j, c in enumerate(cg.labels[op.inputs[0]]):
                r = cg.root(c)
                norm_sum[r] = norm_sum.get(r, 0.0) + float(g[j])
                norm_n[r] = norm_n.get(r, 0) + 1
        elif op.op == "conv":
            w = state[f"layers.{i}.weight"].detach().abs().float()
            per_out = w.mean(dim=(0, 2, 3)) if op.attrs["transposed"] else w.mean(dim=(1, 2, 3))
            for j, c in enumerate(cg.labels[op.output]):
                r = cg.root(c)
                filt[r] = filt.get(r, 0.0) + float(per_out[j])
    out = {}
    for pos in cg.positions:
        for r in pos:
            out[r] = norm_sum[r] / norm_n[r] if r in norm_n else filt.get(r, 0.0)
    return out


def keep_fraction(cg: ChannelGraph, scores: dict[int, float], fraction: float) -> set[int]:
    """The strongest ceil(fraction x n) classes of every position (at least one)."""
    keep = set(cg.fixed)
    for pos in cg.positions:
        n = max(1, min(len(pos), math.ceil(fraction * len(pos) - 1e-9)))
        keep.update(sorted(pos, key=lambda r: (-scores.get(r, 0.0), r))[:n])
    return keep


def prune_graph(spec: GraphSpec, state: dict[str, torch.Tensor], cg: ChannelGraph, keep: set[int]
                ) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """The spec and weights with only the channel classes in `keep` (fixed ones always kept)."""
    def kept_idx(value: int) -> list[int]:
        return kept_channels(cg, keep, value)

    ops, new_state = [], {}
    for i, op in enumerate(spec.ops):
        attrs = dict(op.attrs)
        p = f"layers.{i}."
        if op.op == "conv":
            ii, oi = torch.tensor(kept_idx(op.inputs[0])), torch.tensor(kept_idx(op.output))
            if p + "weight" in state:  # (an empty state: the spec alone)
                w = state[p + "weight"]
                new_state[p + "weight"] = (w[ii][:, oi] if attrs["transposed"] else w[oi][:, ii]).clone()
            if p + "bias" in state:
                new_state[p + "bias"] = state[p + "bias"][oi].clone()
            attrs["cin"], attrs["cout"] = len(ii), len(oi)
        elif op.op in ("inorm", "bnorm"):
            idx = torch.tensor(kept_idx(op.inputs[0]))
            for name in ("weight", "bias", "running_mean", "running_var"):
                if p + name in state:
                    new_state[p + name] = state[p + name][idx].clone()
            attrs["channels"] = len(idx)
        elif op.op == "prelu" and int(attrs["channels"]) > 1:  # one slope per channel
            idx = torch.tensor(kept_idx(op.inputs[0]))
            if p + "weight" in state:
                new_state[p + "weight"] = state[p + "weight"][idx].clone()
            attrs["channels"] = len(idx)
        elif op.op == "prelu" and p + "weight" in state:
            new_state[p + "weight"] = state[p + "weight"].clone()
        ops.append(GraphOp(op.op, list(op.inputs), op.output, attrs))
    return GraphSpec(ops, spec.output, spec.in_channels), new_state


def kept_channels(cg: ChannelGraph, keep: set[int], value: int) -> list[int]:
    """Which of a value's channels (indices into the uncut graph's) a cut to `keep` leaves."""
    return [j for j, c in enumerate(cg.labels[value]) if cg.root(c) in keep or cg.root(c) in cg.fixed]


def position_widths(cg: ChannelGraph, keep: set[int]) -> list[int]:
    return [sum(1 for r in pos if r in keep) for pos in cg.positions]

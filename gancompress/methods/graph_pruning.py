"""Magnitude pruning of a teacher read as a layer graph (teachers/graph_reader.py): the channel classes
of every position ranked (arch/graph_channels.py: |gamma| of the norms that read them, else filter
magnitude), the same share of every position kept, the largest share whose network fits the
budget (binary search), cut exactly. Used by `--method prune` when the teacher's layout is not one
the student skeleton expresses (any traceable PyTorch or TorchScript teacher)."""

from __future__ import annotations

from ..arch.graph_channels import channel_graph, class_importance, keep_fraction, position_widths, prune_graph
from ..arch.spec import ArchSpec


def _spec(ctx, graph, meta=None) -> ArchSpec:
    return ArchSpec.from_graph(ctx.cfg.task, ctx.teacher.scale, graph, meta)


def smallest_graph_spec(ctx) -> ArchSpec:
    """One channel class per position: the floor of what pruning the graph can reach."""
    graph, weights = ctx.extra["graph"]
    cg = channel_graph(graph)
    return _spec(ctx, prune_graph(graph, weights, cg, keep_fraction(cg, {}, 0.0))[0])


def prune_to_budget(ctx, steps: int = 20):
    """(spec, weights, info): the teacher graph with the largest shared kept fraction that fits."""
    graph, weights = ctx.extra["graph"]
    cg = channel_graph(graph)
    scores = class_importance(graph, weights, cg)
    lo, hi = 0.0, 1.0  # lo: a fraction that fits (the floor fits: check_budget), hi: one that does not
    for _ in range(steps):
        mid = (lo + hi) / 2
        if ctx.budget.fits(_spec(ctx, prune_graph(graph, weights, cg, keep_fraction(cg, scores, mid))[0])):
            lo = mid
        else:
            hi = mid
    keep = keep_fraction(cg, scores, lo)
    small, small_w = prune_graph(graph, weights, cg, keep)
    info = {"kept_fraction": lo, "positions": len(cg.positions), "widths": position_widths(cg, keep),
            "widest": [len(p) for p in cg.positions], "pruned_from": "teacher graph"}
    return _spec(ctx, small), small_w, info

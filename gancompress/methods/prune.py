"""One-shot magnitude pruning, `--method prune` (alias magnitude-pruning): the classic baseline the
GAN-compression papers compare against (filter pruning by L1 norm, Li et al., ICLR 2017).

1. The network to prune: the teacher itself when its layout is expressible as a student (an
   instance-norm cyclegan-resnet; `--prune-init teacher`, default), or, with `--prune-init graph`,
   the teacher read as a graph of standard layers (any traceable PyTorch or TorchScript teacher:
   SRGAN, ESRGAN, a black-box style network; methods/graph_pruning.py), else the widest network of
   the width space (`--prune-op` in every cell layer), first trained by distillation for
   `--prune-steps` steps so its magnitudes mean something.
2. Rank the channels of every width position by magnitude: the mean |w| of the filters that write
   the channel (positions coupled by residual adds: summed over their writers); where an affine
   instance norm follows (translation students), its |gamma| first, because the norm removes the
   filter's scale (ties, as in an untrained norm, broken by the filters).
3. Cut in one step: every position keeps the same fraction of its channels, its strongest ones,
   the largest fraction whose network fits the MACs budget (binary search; at least one channel per
   position), extracted exactly (methods/channels.py). One fraction for all layers is the classic
   uniform-ratio form of L1 filter pruning: a global threshold on raw magnitudes emptied whole
   layers whose channels were alike.
4. Fine-tune the pruned network by distillation (the retrain stage).

Run directory: search/prune_train.ckpt (step 1, resumable), search/prune.json (threshold, widths).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import torch

from ..arch.cost import fmt_macs
from ..distributed import is_main
from ..errors import UserError
from ..fileio import atomic_write_text
from .base import RunContext
from .space import budget_meta
from .channels import (PRUNABLE_OPS, GatedStudent, PruningMethod, extract, magnitude_scores, op_option,
                       start_option, threshold_for_budget, widths_of)


@dataclass
class PruneConfig:
    op: str = op_option("--prune-op")
    steps: int = field(default=500, metadata={
        "flag": "--prune-steps", "help": "distillation steps of the widest network before the cut (not used when "
                                         "the teacher itself is pruned)"})
    init: str = start_option("--prune-init", "distilled for --prune-steps first")

    def to_dict(self):
        return asdict(self)


def _train_widest(ctx: RunContext, student: GatedStudent) -> None:
    """Distil the widest network (gates stay at one) so its filter magnitudes mean something."""
    from ..distill.train import fit_pixels

    cfg, o = ctx.cfg, ctx.cfg.method_options
    if o.steps == 0:
        return
    r = replace(cfg.retrain, steps=o.steps)
    s = cfg.search
    student.to(cfg.device)  # the gates (all one) ride along with the network they multiply
    fit_pixels(student.net, ctx.sampler(s.patch, s.batch, cfg.seed), r, ctx.run / "search" / "prune_train.ckpt",
               "train widest", cfg.device, cfg.quiet, ctx.perceptual)
    student.cpu()


class MagnitudePruning(PruningMethod):
    name, aliases, title = "prune", ("magnitude-pruning",), "magnitude pruning"
    summary = "one-shot L1 filter pruning to the budget + distillation fine-tune"
    options, config_key = PruneConfig, "prune"

    def validate(self, cfg) -> None:
        o = cfg.method_options
        if o.op not in PRUNABLE_OPS:
            raise UserError(f"--prune-op {o.op!r}: choose one of {', '.join(PRUNABLE_OPS)}")
        if o.steps < 0:
            raise UserError(f"--prune-steps must be >= 0, got {o.steps}")
        if o.init not in ("teacher", "graph", "space"):
            raise UserError(f"--prune-init must be 'teacher', 'graph' or 'space', got {o.init!r}")

    init_flag = "--prune-init"

    def graph_refusal(self, cfg) -> str | None:
        return None

    def search(self, ctx: RunContext):
        cfg, budget = ctx.cfg, ctx.budget
        if "graph" in ctx.extra:
            return self._search_graph(ctx)
        torch.manual_seed(cfg.seed)
        student = GatedStudent(self.space(ctx))
        if ctx.start is not None:  # the teacher itself, weights and all
            student.net.load_state_dict(ctx.start[1])
        else:
            _train_widest(ctx, student)
        student.eval()
        widest = budget.cost(student.space.spec(student.space.max_config()))
        if widest <= budget.limit:
            ctx.log(f"note: the network to prune ({budget.fmt(widest)}) already fits the budget "
                    f"{budget}: nothing is cut (widen the space with --nf to use the budget)")
        scores = magnitude_scores(student)
        t = threshold_for_budget(student, budget, scores)
        kept = self.cut(ctx, student, t, scores)
        plain, spec = extract(student, kept)  # gates are all one: the weights are copied as they are
        spec = replace(spec, meta={"method": "prune", **budget_meta(budget, spec), "cut_fraction": t})
        macs = spec.meta["macs"]
        space = student.space
        ctx.log(f"magnitude pruning: every layer keeps its strongest {1 - t:.0%} of channels: {fmt_macs(macs)} MACs, "
                f"{budget.fmt(budget.cost(spec))} (budget {budget})")
        if is_main():
            info = {"cut_fraction": t, "widths": dict(zip(space.names, widths_of(kept))),
                    "widest": dict(zip(space.names, space.max_config())), "pruned_from": "teacher" if ctx.start
                    else "space"}
            atomic_write_text(ctx.run / "search" / "prune.json", json.dumps(info, indent=1))
        return spec, {k: v.contiguous() for k, v in plain.state_dict().items()}

    @staticmethod
    def _search_graph(ctx: RunContext):
        from .graph_pruning import prune_to_budget

        budget = ctx.budget
        spec, weights, info = prune_to_budget(ctx)
        spec = replace(spec, meta={"method": "prune", **budget_meta(budget, spec), "cut_fraction": 1 - info["kept_fraction"],
                                   "pruned_from": "teacher graph"})
        cost = "" if budget.unit == "MACs" else f", {budget.fmt(budget.cost(spec))}"
        ctx.log(f"magnitude pruning of the teacher's graph: every position keeps its strongest "
                f"{info['kept_fraction']:.0%} of channels: {fmt_macs(spec.meta['macs'])} MACs{cost} (budget {budget})")
        if is_main():
            atomic_write_text(ctx.run / "search" / "prune.json", json.dumps(info, indent=1))
        return spec, weights


METHOD = MagnitudePruning()

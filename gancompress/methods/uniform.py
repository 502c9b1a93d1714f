"""The uniform-width baseline, `--method uniform`: the frame every method uses with every cell
layer a conv 3x3 at one width, the widest that fits the budget; retrained by distillation like
every student. No search: it is what a search has to beat."""

from __future__ import annotations

from ..arch.cost import fmt_macs, spec_macs
from .base import Method, RunContext
from .space import uniform_spec_for_budget


class Uniform(Method):
    name, title = "uniform", "uniform baseline"
    summary = "the uniform-width conv3x3 baseline"
    tasks = ("sr", "translate", "label2image")

    def check_budget(self, ctx: RunContext) -> None:
        uniform_spec_for_budget(ctx.cfg, ctx.budget)  # raises with the minimum if nothing fits

    def search(self, ctx: RunContext):
        spec = uniform_spec_for_budget(ctx.cfg, ctx.budget)
        ctx.log(f"uniform baseline: width {spec.nf}, {fmt_macs(spec_macs(spec))} MACs, "
                f"{ctx.budget.fmt(ctx.budget.cost(spec))} (budget {ctx.budget})")
        return spec, None


METHOD = Uniform()

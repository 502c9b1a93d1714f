"""What every compression method is to the pipeline: a `Method` (its config, CLI options,
checks, space floor and two stages) and the `RunContext` its stages read.

The pipeline (pipeline.py) runs the same stages for every method: teacher targets, **search**
(the method's: a spec and the weights it starts retraining from), **retrain** (the method's: train
that student), evaluate, export, int8, report. Saving the spec and weights, marking stages done,
resuming and timing are the pipeline's, so a method only computes. A new method is one module
under methods/ that defines `METHOD` and one line in `methods/registry.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..distributed import is_main
from .options import add_dataclass_options, dataclass_from_args


@dataclass
class RunContext:
    """One run as the method stages see it (built by the pipeline)."""
    cfg: Any  # config.CompressConfig
    teacher: Any
    budget: Any  # budget.Budget: the limit in its unit and the cost of a spec in it
    t_macs: int | None = None
    run: Any = None  # rundir.RunDir, once it exists
    images: list = field(default_factory=list)  # (name, photograph) training images
    names: list = field(default_factory=list)  # names of the teacher-labelled training pairs
    pairs: list = field(default_factory=list)  # (input, teacher output)
    perceptual: Any = None  # the optional VGG perceptual term
    start: Any = None  # (spec, weights): the teacher written as a student, for methods that start from it
    extra: dict = field(default_factory=dict)  # a method's own per-run state

    def log(self, msg: str) -> None:
        """A message for the user (the "gancompress" logger; nothing with quiet)."""
        if not self.cfg.quiet and is_main():
            from ..log import info

            info(msg)

    def distill_loss(self):
        from ..distill.losses import make_distill_loss

        r = self.cfg.retrain
        return make_distill_loss(r.loss, self.perceptual, r.perceptual_weight)

    def sampler(self, patch: int, batch: int, seed: int, pairs=None, names=None, fixed: bool = False,
                split: bool = True):
        """Distillation batches over the run's pairs (or the given ones): data/samplers.py."""
        from ..data.samplers import make_sampler

        if pairs is None:
            pairs, names = self.pairs, self.names
        return make_sampler(self.cfg, pairs, names, patch, batch, seed, self.teacher, fixed=fixed, split=split)


class Method:
    """A compression method. Subclasses set the class attributes and implement `search` and
    `retrain`; the other hooks have defaults that fit a method without options of its own."""

    name: str = ""  # the value of --method (and of `method` in a run's config.json)
    aliases: tuple = ()  # other accepted --method spellings
    title: str = ""  # the name users know
    summary: str = ""  # one line for --help
    options: type | None = None  # its config dataclass; CLI options are generated from its fields
    config_key: str | None = None  # its section in config.json
    adapts_trunk: bool = False  # narrows the trunk (--nf) for tight budgets: it searches down from nf
    searches_int8: bool = False  # chooses int8 or fp32 per layer (--search-int8)
    tasks: tuple = ("sr", "translate")  # the tasks its space and stages handle

    # ---- configuration ----
    def default_options(self):
        return self.options() if self.options else None

    def add_cli_options(self, parser, seen: set) -> None:
        if self.options is not None:
            group = parser.add_argument_group(f"{self.title} (--method {self.name})")
            add_dataclass_options(group, self.options, seen)

    def options_from_args(self, args):
        return dataclass_from_args(self.options, args) if self.options else None

    def validate(self, cfg) -> None:
        """Checks of the method's own options, before anything is loaded."""

    # ---- the budget ----
    def smallest_network(self, cfg, nf: int):
        """The method's smallest network (an ArchSpec) at trunk width nf (None: no floor); the
        budget prices it in its own unit."""
        return None

    def capacity_in_budget(self, cfg, nf: int, budget) -> float | None:
        """The MACs of the most capacity the method's space at trunk width nf buys within a latency
        budget, or None (the trunk is then narrowed by the band rule alone: `adapt_trunk_width`)."""
        return None

    def fit_to_budget(self, ctx: RunContext):
        """The run's config fitted to the budget (narrower trunk, frame floor); may set ctx.start."""
        from .space import adapt_trunk_width

        floor = self.smallest_network if self.adapts_trunk else None
        return adapt_trunk_width(ctx.cfg, ctx.budget, floor, log=ctx.log,
                                 capacity=lambda cfg, nf: self.capacity_in_budget(cfg, nf, ctx.budget))

    def check_budget(self, ctx: RunContext) -> None:
        """Refuse a budget the method cannot meet, with the smallest that works."""

    def preflight(self, ctx: RunContext) -> None:
        """Checks that need the teacher, before anything is written."""

    # ---- the stages ----
    def search(self, ctx: RunContext):
        """(spec, weights the retrain stage starts from or None). Extra files go to ctx.run/search."""
        raise NotImplementedError

    def retrain(self, ctx: RunContext, spec, student):
        """Train `student` (built from spec, search weights loaded unless --init scratch) and return
        it. Default: distillation from the teacher's outputs (`distill_student`)."""
        return distill_student(ctx, student)


def distill_student(ctx: RunContext, student, label: str = "retrain"):
    """Pixel distillation of `student` with the run's retrain options (resumable: RUN/retrain.ckpt)."""
    from ..distill.hints import hints_for_run
    from ..distill.train import fit_pixels

    cfg, r = ctx.cfg, ctx.cfg.retrain
    fit_pixels(student, ctx.sampler(r.patch, r.batch, cfg.seed + 11), r, ctx.run / "retrain.ckpt", label,
               cfg.device, cfg.quiet, ctx.perceptual, hints_for_run(ctx))
    return student

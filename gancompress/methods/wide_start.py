"""`--init wide`: start a derived network's retraining from the strongest filters of its wide twin.

The wide twin is the derived spec with every width position at the space's widest (its operators
kept). It is distilled for `--init-steps` steps, then every position keeps as many of its channels as
the derived spec has there, the strongest by filter magnitude (methods/channels.py, the ranking of
the magnitude-pruning baseline), extracted into the derived network's layout.

Why: at SRGAN 1/10, magnitude pruning, which starts this way, beat the uniform baseline of the very
same widths by 0.3 dB to the teacher beyond the seed spread, and the uniform network trained from
scratch for as many steps in all did not (BENCHMARKS.md, "The Pareto suite at SRGAN scale"). This
gives any method's derived network that start.

Exact where a position's channels are cut cleanly; a `resblock` layer adds its input's leading
channels as its skip, so where its input position is cut the extracted network only approximates the
twin there. The start is an initialisation for the retrain, which makes up the difference.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..arch.ops import OPS
from ..arch.spec import ArchSpec
from ..errors import UserError
from .space import WidthSpace, frame_template

CUTTABLE_OPS = ("conv3x3", "conv1x1", "dil3x3", "resblock")  # no grouped conv inside
NOT_FOR = {"prune": "magnitude pruning already starts from a distilled wide network's strongest filters",
           "slim": "GAN Slimming already starts from the network it slimmed"}


def default_init(cfg) -> str:
    """The retrain start when --init is not given: "wide" for AGD on SR, where it was measured to pay
    (BENCHMARKS.md, "AGD from its wide twin"), when every operator of --ops can be cut; else the
    search's weights ("supernet"; for a method without them, such as uniform, scratch)."""
    if cfg.method == "agd" and cfg.task == "sr" and all(OPS[o].base in CUTTABLE_OPS for o in cfg.search.ops if o in OPS):
        return "wide"
    return "supernet"


def refusal(cfg) -> str | None:
    """Why `--init wide` cannot apply to this run (None: it can)."""
    if cfg.method in NOT_FOR:
        return f"--init wide does not apply to --method {cfg.method}: {NOT_FOR[cfg.method]}"
    if cfg.task == "label2image":
        return "--init wide cuts cell layers, which a SPADE student (--task label2image) has none of"
    return None


class _SpecSpace(WidthSpace):
    """The run's width space with the derived spec's own operator in every cell layer."""

    def __init__(self, template: ArchSpec, spec: ArchSpec, ratios):
        n_layers = len(spec.cells[0]) if spec.cells else 0
        super().__init__(template, len(spec.cells), n_layers, ratios=ratios)
        self.ops = [[OPS[layer.op].base for layer in cell] for cell in spec.cells]

    def spec(self, config, meta: dict | None = None) -> ArchSpec:
        s = super().spec(config, meta)
        for cell, ops in zip(s.cells, self.ops):
            for layer, op in zip(cell, ops):
                layer.op = op
        return s.validate()


def wide_space(cfg, spec: ArchSpec) -> WidthSpace:
    """The space whose widest network is the spec's wide twin (refuses a spec it cannot cut)."""
    from ..data.label_maps import label_channels

    if spec.spade is not None or not spec.cells:
        raise UserError("--init wide cuts cell layers; this network has none (use --init supernet)")
    for c, cell in enumerate(spec.cells):
        for li, layer in enumerate(cell):
            base = OPS[layer.op].base
            if base not in CUTTABLE_OPS:
                raise UserError(f"--init wide cuts channels by filter magnitude, which cell{c}.layer{li} ({layer.op}: "
                                f"grouped convs inside) does not allow; use --init supernet, or search without it "
                                f"(--ops {','.join(o for o in CUTTABLE_OPS if o != 'dil3x3')})")
    s = replace(cfg.search, nf=max(cfg.search.nf, spec.nf))
    template = frame_template(s, cfg.task, cfg.scale, label_channels(cfg))
    space = _SpecSpace(template, spec, s.width_ratios)
    for name, w, top in zip(space.names, space.widths_in(spec), space.max_config()):
        if w > top:
            raise UserError(f"--init wide: the network is wider than the space at {name} ({w} > {top}), so there is "
                            f"no wider twin to cut from; raise --nf or use --init supernet")
    return space


def strongest(scores: list[torch.Tensor], widths, prunable, widest) -> list[torch.Tensor]:
    """Per position, the indices of its `width` highest-scoring channels, in their original order (a
    position that is never cut keeps its leading channels)."""
    kept = []
    for i, (sc, w) in enumerate(zip(scores, widths)):
        if i not in prunable or sc.numel() == 0:
            kept.append(torch.arange(min(w, widest[i])))
        else:
            kept.append(torch.sort(torch.topk(sc, w).indices).values)
    return kept


def wide_start(ctx, spec: ArchSpec) -> dict:
    """The state dict the retrain of `spec` starts from (see the module doc); the twin's distillation
    resumes from RUN/search/wide_train.ckpt."""
    from ..distill.train import fit_pixels
    from .channels import GatedStudent, extract, magnitude_scores

    cfg = ctx.cfg
    space = wide_space(cfg, spec)
    torch.manual_seed(cfg.seed)
    twin = GatedStudent(space)
    widest = space.max_config()
    widths = space.widths_in(spec)
    if list(widest) == widths:
        ctx.log(f"note: the network is already the widest of the space (nf {max(widest)}), so --init wide only "
                "distils it first; raise --nf for a wider twin to cut from")
    ctx.log(f"wide start: distilling the wide twin ({'_'.join(map(str, widest))}) for {cfg.init_steps} steps, then "
            f"keeping each position's strongest filters")
    if cfg.init_steps:
        s = cfg.search
        twin.to(cfg.device)
        (ctx.run / "search").mkdir(exist_ok=True)
        fit_pixels(twin.net, ctx.sampler(s.patch, s.batch, cfg.seed), replace(cfg.retrain, steps=cfg.init_steps),
                   ctx.run / "search" / "wide_train.ckpt", "wide twin", cfg.device, cfg.quiet, ctx.perceptual)
        twin.cpu()
    twin.eval()
    kept = strongest(magnitude_scores(twin), widths, twin.map.prunable, widest)
    plain, _ = extract(twin, kept)
    return {k: v.contiguous() for k, v in plain.state_dict().items()}

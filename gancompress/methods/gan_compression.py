"""GAN Compression (Li et al., CVPR 2020), `--method ofa` (alias gan-compression): the method's
options, budget checks and stages; the training itself is in once_for_all.py. Run directory:

  search/supernet.ckpt       once-for-all training checkpoint (resumable)
  search/evolution.json      evolutionary search state and score cache (resumable)
  search/spec.json           the chosen sub-network; search/init.safetensors its supernet weights
  search/ofa_aux.safetensors the mapping convs and discriminator, carried into fine-tuning
  retrain.ckpt               fine-tuning checkpoint
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import torch

from ..arch.build import build_student
from ..arch.cost import fmt_macs, spec_macs
from ..distributed import is_main
from ..errors import UserError
from ..fileio import atomic_write_text, load_run_tensors, save_safetensors_atomic
from . import once_for_all as ofa
from .base import Method, RunContext
from .options import dataclass_from_args
from .space import WidthSpace, budget_meta, smaller_space_hint, width_space


def with_ground_truth(cfg, images, pairs):
    """SR pairs whose target carries the HR photograph as 3 more channels (the paired case's
    'real' images for the discriminator, and PSNR-Y scoring): (lr, cat(teacher(lr), hr))."""
    from ..data.degrade import bicubic_downscale

    out = []
    for (name, hr), (lr, t) in zip(images, pairs):
        hr_c, _ = bicubic_downscale(hr, cfg.scale, name=name)
        out.append((lr, torch.cat([t, hr_c], 0)))
    return out


def ofa_space(cfg) -> WidthSpace:
    """GAN Compression's width space around the same frame AGD searches in."""
    return width_space(cfg, cfg.method_options.op)


def usable_feature_layers(cfg, teacher, layers: dict) -> tuple[dict, str]:
    """The teacher layers that can be matched to the student's trunk (same resolution), checked
    with one probe pass; an explicitly requested layer that cannot is an error."""
    from ..distill.features import probe_features, same_name_layers, student_points, usable_teacher_layers
    from ..export.student import example_input

    space = ofa_space(cfg)
    widest = build_student(space.spec(space.max_config())).to(cfg.device)
    p = cfg.search.patch
    probe = example_input(widest, (p, p)).to(cfg.device)
    explicit = bool(cfg.method_options.teacher_layers)
    if cfg.task == "label2image":
        keep, _, note = same_name_layers(teacher, layers, widest, probe, explicit)
        return {k: v for k, v in layers.items() if v in keep}, note
    first = student_points(cfg.task, cfg.search.n_cells)[0]
    hw = probe_features(widest, [first], probe)[first][1:]
    keep, note = usable_teacher_layers(teacher, layers, probe, hw, explicit=explicit)
    by_path = {v: k for k, v in layers.items()}
    return {by_path[p]: p for p in keep}, note


class OFAState:
    """What both stages of one run share: the space, the objective's settings, the held-out split."""

    def __init__(self, ctx: RunContext):
        cfg = ctx.cfg
        self.space = ofa_space(cfg)
        self.o = o = ofa.resolved(cfg.method_options, cfg.task)
        self.has_gt = cfg.task == "sr" and (o.lambda_gan > 0 or o.score == "psnr-y")
        pairs = with_ground_truth(cfg, ctx.images, ctx.pairs) if self.has_gt else ctx.pairs
        strip = min(o.translate_score_px, cfg.size // 4) if cfg.task != "sr" else None  # a quarter at most
        grid = 32 if cfg.task == "label2image" else 1
        if strip:
            strip = max(grid, strip // grid * grid)
        self.score_px = min(cfg.retrain.patch, strip) if strip else cfg.retrain.patch
        self.train_pairs, self.train_names, self.held = ofa.holdout_split(pairs, ctx.names, o.holdout, cfg.seed,
                                                                          strip, grid)
        self.recon = ctx.distill_loss()

    def sampler(self, ctx, patch, batch, seed):
        return ctx.sampler(patch, batch, seed, self.train_pairs, self.train_names)

    def held_batch(self, ctx):
        """The fixed held-out crops that score candidates in the search and track the fine-tune
        (the same seed, so both stages see the same crops)."""
        return ctx.sampler(self.score_px, self.o.score_crops, ctx.cfg.seed + 3, self.held, None, fixed=True,
                           split=False).next_batch()

    def objective(self, ctx):
        """The objective with mapping convs sized for the widest sub-network (narrower ones use a
        slice), so the supernet's mapping layers carry over to fine-tuning."""
        cfg = ctx.cfg
        widest = build_student(self.space.spec(self.space.max_config())).to(cfg.device)
        p = min(cfg.search.patch, cfg.retrain.patch)  # the discriminator must fit both stages' patches
        from ..export.student import example_input

        probe = example_input(widest, (p, p)).to(cfg.device)
        obj = ofa.Objective(self.o, self.recon, ctx.teacher, ctx.extra["feature_layers"], widest, cfg.task,
                            cfg.search.n_cells, probe, p * cfg.scale, cfg.device)
        if obj.use_features:
            ctx.log("feature distillation: " + ", ".join(f"{t} -> {s}" for t, s in zip(obj.t_paths, obj.s_paths)))
        return obj


class GANCompression(Method):
    name, aliases, title = "ofa", ("gan-compression",), "GAN Compression"
    summary = "once-for-all supernet + evolution"
    options, config_key, adapts_trunk = ofa.OFAConfig, "ofa", True
    tasks = ("sr", "translate", "label2image")

    def options_from_args(self, args):
        return dataclass_from_args(ofa.OFAConfig, args, evolution_fixed={"seed": args.seed})

    def validate(self, cfg) -> None:
        ofa.validate(cfg.method_options, cfg.task)

    def smallest_network(self, cfg, nf: int):
        sp = ofa_space(replace(cfg, search=replace(cfg.search, nf=nf)))
        return sp.spec(sp.min_config())

    def capacity_in_budget(self, cfg, nf: int, budget):
        """Under a latency budget: the MACs of the space's smallest sub-network at trunk width nf
        widened for the most MACs per millisecond within the budget (the table timed for the grid
        first, cached). None for SPADE students, which are timed whole (one timing per candidate)."""
        if budget.unit != "ms" or cfg.task == "label2image":
            return None
        space = ofa_space(cfg)
        budget.table.ensure(space.pieces(budget.hw), f"latency table (width space, --nf {nf})")
        best = space.spend_on_capacity(space.min_config(), lambda c: budget.cost(space.spec(c)), budget.limit)
        return float(spec_macs(space.spec(best)))

    def check_budget(self, ctx: RunContext) -> None:
        cfg, budget = ctx.cfg, ctx.budget
        space = ofa_space(cfg)
        lo = budget.cost(space.spec(space.min_config()))
        if budget.limit < lo:
            raise UserError(f"budget {budget} is below the smallest sub-network of the OFA space "
                            f"({budget.fmt(lo)}, config {space.format(space.min_config())}, {budget.where()}); "
                            f"raise --budget to at least that, or shrink the space "
                            f"({smaller_space_hint(cfg, budget, self.smallest_network)})")
        o = cfg.method_options
        if o.config:
            chosen = budget.cost(space.spec(space.parse(o.config)))
            if chosen > budget.limit:
                raise UserError(f"--subnet {o.config} costs {budget.fmt(chosen)}, over the budget {budget}; "
                                "pick a smaller sub-network or raise --budget")

    def preflight(self, ctx: RunContext) -> None:
        """The teacher layers to distil from, checked before anything is written."""
        from ..distill.features import resolve_teacher_layers

        cfg = ctx.cfg
        layers, note = resolve_teacher_layers(ctx.teacher, list(cfg.method_options.teacher_layers))
        if layers and cfg.method_options.lambda_distill > 0:  # a wrong explicit layer fails here
            layers, note = usable_feature_layers(cfg, ctx.teacher, layers)
        if note:
            ctx.log(f"note: {note}")
        ctx.extra["feature_layers"] = layers

    def _state(self, ctx) -> OFAState:
        if "ofa" not in ctx.extra:
            ctx.extra["ofa"] = OFAState(ctx)
        return ctx.extra["ofa"]

    def search(self, ctx: RunContext):
        cfg, run, st = ctx.cfg, ctx.run, self._state(ctx)
        o, s = st.o, cfg.search
        obj = st.objective(ctx)
        t0 = time.perf_counter()
        net = ofa.train_supernet(o, st.space, obj, st.sampler(ctx, s.patch, s.batch, cfg.seed), st.has_gt,
                                 run / "search", cfg.device, cfg.quiet, cfg.seed)
        t_train = time.perf_counter() - t0
        held = st.held_batch(ctx)
        calib = [st.sampler(ctx, s.patch, s.batch, cfg.seed + 5).next_batch()[0] for _ in range(2)]
        t0 = time.perf_counter()
        if o.config:
            best, result = st.space.parse(o.config), {"history": [], "cache": {}}
            ctx.log(f"using --subnet {o.config} (no evolutionary search)")
        else:
            result = ofa.evolutionary_search(o, net, st.space, ctx.budget, held, calib, run / "search", cfg.device,
                                             cfg.quiet, spend_capacity=s.spend_capacity, band=s.band)
            best = result["best"]
            if "capacity" in result:
                m = result["capacity"]
                why = ("to spend the budget on MACs" if ctx.budget.unit == "ms" else
                       f"into the budget band (at least {s.band:.0%} of {ctx.budget})")
                ctx.log(f"the evolution's {m['from']} ({o.score} {m['score_from']:.2f}) widened to "
                        f"{m['to']} ({o.score} {m['score_to']:.2f}) {why} (--no-spend-capacity keeps the evolution's)")
        t_evo = time.perf_counter() - t0
        key = st.space.format(best)
        spec = st.space.spec(best, meta={"method": "ofa", "config": key,
                                         **budget_meta(ctx.budget, st.space.spec(best)),
                                         "score": result["cache"].get(key), "score_kind": o.score})
        init_state = {k: v.contiguous() for k, v in net.extract(best).state_dict().items()}
        probes = result.get("probes", 0)
        n = len(result["cache"]) - probes  # the evolution's candidates; the fill's probes apart
        info = {"config": key, "candidates": n, "fill_probes": probes, "supernet_seconds": t_train,
                "evolution_seconds": t_evo,
                "candidates_per_minute": 60.0 * n / max(t_evo, 1e-9) if n else None,
                "history": result["history"], "score_kind": o.score, "capacity": result.get("capacity"),
                # every config scored (the evolution's candidates and the fill's probes), with its MACs:
                # the report's Pareto front
                "scored": [{"config": c, "score": v, "macs": int(spec_macs(st.space.spec(st.space.parse(c))))}
                           for c, v in result["cache"].items()] if is_main() else []}
        ctx.log(f"OFA sub-network {key}: {fmt_macs(spec.meta['macs'])} MACs, {ctx.budget.fmt(ctx.budget.cost(spec))} "
                f"(budget {ctx.budget}); {n} candidates scored in {t_evo:.0f} s"
                + (f" (+{probes} while widening)" if probes else ""))
        if is_main():
            aux = {}
            if obj.mapper is not None:
                aux.update({f"mapper.{k}": v for k, v in obj.mapper.state_dict().items()})
            if obj.disc is not None:
                aux.update({f"disc.{k}": v for k, v in obj.disc.state_dict().items()})
            if aux:
                save_safetensors_atomic(aux, run / "search" / "ofa_aux.safetensors")
            atomic_write_text(run / "search" / "ofa.json", json.dumps(info, indent=1))
        obj.close()
        return spec, init_state

    def retrain(self, ctx: RunContext, spec, student):
        cfg, run, st = ctx.cfg, ctx.run, self._state(ctx)
        obj = st.objective(ctx)
        aux_path = run / "search" / "ofa_aux.safetensors"
        if aux_path.is_file():
            aux = load_run_tensors(aux_path)
            if obj.mapper is not None:
                obj.mapper.load_state_dict({k[7:]: v for k, v in aux.items() if k.startswith("mapper.")})
            if obj.disc is not None:
                obj.disc.load_state_dict({k[5:]: v for k, v in aux.items() if k.startswith("disc.")})
        r = cfg.retrain
        ofa.finetune(st.o, student, obj, st.sampler(ctx, r.patch, r.batch, cfg.seed + 11), st.has_gt, r.steps, r.lr,
                     run / "retrain.ckpt", cfg.device, cfg.quiet, st.held_batch(ctx), ctx.log)
        if is_main():
            atomic_write_text(run / "finetune_val.json", json.dumps(student.finetune_val))
        obj.close()
        return student


METHOD = GANCompression()

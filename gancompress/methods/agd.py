"""AGD (AutoGAN-Distiller, Fu et al., ICML 2020), `--method agd`: the search, and the method.

What it does, in order:
1. Warm-up: train the supernet's weights alone (architecture parameters frozen at uniform), with
   the sandwich rule: every step runs the widest, the narrowest and a randomly sampled width.
2. Search: alternate first-order steps on two disjoint halves of the training data:
   a weight step (sandwich rule; the sampled width now drawn from the width distribution) on one
   half, an architecture step (softmax op mixture + straight-through Gumbel widths, distillation
   loss + resource term) on the other half.
3. Derive: argmax operator and width per layer, then pick the best *in-budget* derived network seen
   during the search (validation distillation loss inside the supernet), not simply the last one.

Distillation only: the loss compares student and teacher outputs (pixel L1, optional perceptual
term); no discriminator, no ground truth.

Two things AGD's released code got wrong, fixed here: its SR configuration shipped with the
resource penalty switched off (so the search ignored the budget); and its final architecture was
the last epoch's argmax, whether or not it met the budget. Here the resource term is always on,
its weight adapts until the derived network sits inside the budget band [band * budget, budget],
the result is the best in-band network seen, and a derived network that is still over budget is
repaired greedily (cheapest loss of log-probability per MAC saved) so the budget always holds; one
below the band (or repaired below it) is widened greedily into it the same way (`fill_to_band`).

With `--search-int8` under a latency budget the table prices each int8 layer by its measured int8
kernels, plus the conversions where float and int8 layers meet (`latency.table`), and a candidate
keeps only the int8 layers that lower its predicted latency (`drop_useless_int8`). Under a latency
budget a narrower layer can cost more than a wider one (channel-blocked kernels), so a candidate's
layers are widened wherever the table prices the wider choice no dearer (`widen_free`), and the
chosen network's milliseconds are then spent on MACs up to the budget (`spend_on_capacity`,
`--spend-capacity`, on by default): the resource term only sees that narrower is cheaper, and
bought 5-wide layers at SRGAN 1/32:ms that cost half a dB against the uniform network.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..arch.cost import fmt_macs, spec_macs
from ..arch.ops import OPS
from ..arch.spec import ArchSpec
from ..distill.loop import run_loop
from ..distributed import average_gradients, broadcast_parameters, is_main
from ..data.label_maps import label_channels
from ..errors import UserError
from ..fileio import atomic_write_text
from .agd_supernet import (Supernet, drop_useless_int8, fill_to_band, repair_to_budget, spend_on_capacity,
                           student_state_from_supernet, widen_free)
from .base import Method, RunContext, distill_student
from .space import SpaceConfig, budget_meta, frame_template, smaller_space_hint


def make_supernet(cfg: SpaceConfig, template: ArchSpec, budget=None):
    """The supernet of the space; `budget` (a budget.Budget) decides the unit of its cost."""
    from ..arch.ops import INT8_SUFFIX

    if template.spade is not None:  # label2image: widths only (methods/agd_spade.py)
        from .agd_spade import SpadeSupernet
        from .space import WidthSpace

        return SpadeSupernet(WidthSpace(template, 0, 0, ratios=cfg.width_ratios), budget)
    ops = list(cfg.ops)
    if cfg.int8_search:  # every operator also as its int8 twin: precision becomes part of the choice
        ops += [o + INT8_SUFFIX for o in cfg.ops if not o.endswith(INT8_SUFFIX)]
    return Supernet(template, cfg.n_cells, cfg.n_layers, ops, cfg.width_ratios,
                    cfg.int8_cost if cfg.int8_search else 1.0, frame_ratios=cfg.frame_ratios, budget=budget)


@dataclass
class SearchResult:
    spec: ArchSpec
    supernet_state: dict
    op_idx: list
    history: list = field(default_factory=list)
    w_idx: list = field(default_factory=list)


def search(cfg: SpaceConfig, template: ArchSpec, weight_sampler, arch_sampler, val_batch, budget,
           work_dir: Path, distill_loss, device: str = "cpu", quiet: bool = False) -> SearchResult:
    """Run warm-up + search, checkpointing into `work_dir`; returns the derived spec.

    `budget`: a budget.Budget (its unit is the unit of the resource term and of the band).
    `weight_sampler` / `arch_sampler`: patch samplers over two disjoint halves of the training data
    (LR patch, teacher-output patch). `val_batch`: fixed (lr, target) tensors for choosing among
    derived networks. `distill_loss(student_out, teacher_out)` -> scalar.
    (Long on purpose: the weight step, the architecture step and the in-band selection are closures
    over one search state that the checkpoint saves and restores as a whole.)
    """
    torch.manual_seed(cfg.seed)
    net = make_supernet(cfg, template, budget).to(device)
    broadcast_parameters(net.parameters())
    w_params = net.weight_parameters()
    opt_w = torch.optim.Adam(w_params, lr=cfg.lr_weights)
    opt_a = torch.optim.Adam(net.arch_parameters(), lr=cfg.lr_arch, betas=(0.5, 0.999),
                             weight_decay=cfg.arch_weight_decay)
    lo, hi = cfg.band * budget.limit, budget.limit
    total = cfg.warmup_steps + cfg.search_steps
    # int8 layers priced by measured latency: one may cost more than its float twin, so a candidate
    # keeps only those that pay (drop_useless_int8)
    timed_int8 = budget.unit == "ms" and any(OPS[o].bits == 8 for o in net.op_names)
    # there, greedy moves add no int8 layer: only drop_useless_int8 decides which stay
    float_only = (lambda o: OPS[net.op_names[o]].bits != 8) if timed_int8 else None  # noqa: E731
    state = {"penalty": cfg.penalty_init, "best_loss": math.inf, "best_ops": [], "best_ws": [],
             "best_macs": 0, "history": []}

    def to_dev(b):
        return b[0].to(device), b[1].to(device)

    def weight_step():
        lr, tgt = to_dev(weight_sampler.next_batch())
        opt_w.zero_grad(set_to_none=True)
        total_loss = 0.0
        for mode in ("max", "min", "sample"):
            out = net(lr, width_mode=mode, op_mode="mix_detached")
            loss = distill_loss(out, tgt)
            loss.backward()
            total_loss += loss.item()
        average_gradients(w_params)
        opt_w.step()
        return total_loss / 3

    def arch_step(tau: float):
        lr, tgt = to_dev(arch_sampler.next_batch())
        opt_a.zero_grad(set_to_none=True)
        out = net(lr, width_mode="gumbel", op_mode="mix", tau=tau)
        d_loss = distill_loss(out, tgt)
        ops, ws = net.argmax_indices()
        derived = net.cost(net.spec_from_indices(ops, ws))
        sign = 1.0 if derived > hi else (-1.0 if derived < lo else 0.0)
        loss = d_loss + sign * state["penalty"] * torch.log(net.expected_cost())
        loss.backward()
        average_gradients(net.arch_parameters())
        opt_a.step()
        state["penalty"] *= cfg.penalty_growth if sign != 0 else 1 / cfg.penalty_growth ** 0.5
        state["penalty"] = float(min(max(state["penalty"], 1e-4), 10.0))
        return d_loss.item(), derived

    @torch.no_grad()
    def val_loss(ops, ws) -> float:
        """The candidate's distillation loss on the held-out batch, with the supernet's weights."""
        lr, tgt = to_dev(val_batch)
        return distill_loss(net(lr, "fixed", "fixed", fixed_widths=ws, fixed_ops=ops), tgt).item()

    @torch.no_grad()
    def consider(step: int):
        ops, ws = net.argmax_indices()
        if timed_int8:  # keep only the int8 layers that make the student faster, and do not add others
            ops = drop_useless_int8(net, ops, ws)
        if net.cost(net.spec_from_indices(ops, ws)) > hi:
            ops, ws = repair_to_budget(net, ops, ws, hi)
        widen = budget.unit == "ms"  # latency: a wider layer the table prices no dearer (MACs, MB: none is)
        ws = widen_free(net, ops, ws) if widen else ws
        for _ in range(3):  # below the band (or repaired or widened below it): fill it, then widen again
            if net.cost(net.spec_from_indices(ops, ws)) >= lo:
                break
            ops, ws = fill_to_band(net, ops, ws, lo, hi, op_ok=float_only)  # where the preferences lose least
            if not widen:
                break
            ws = widen_free(net, ops, ws)
        macs = net.cost(net.spec_from_indices(ops, ws))
        vloss = val_loss(ops, ws)
        in_band = lo <= macs <= hi
        entry = {"step": step, "macs": int(macs), "val_loss": vloss, "in_band": in_band,
                 "penalty": float(state["penalty"])}  # the resource term's adaptive weight
        if budget.unit != "MACs":  # a ms or MB budget: `cost` in its unit, `macs` the real MACs
            entry.update(macs=int(spec_macs(net.spec_from_indices(ops, ws))), cost=float(macs))
        state["history"].append(entry)
        # prefer in-band networks; among them the lowest validation loss
        key = (0 if in_band else 1, vloss)
        best_key = (0 if lo <= state["best_macs"] <= hi else 1, state["best_loss"])
        # "none yet" is best_ws empty: a label2image space has widths but no operators (best_ops
        # stays []), and testing best_ops made every candidate replace the last
        if not state["best_ws"] or key < best_key:
            state.update(best_loss=vloss, best_ops=ops, best_ws=ws, best_macs=int(macs))

    def step(i: int) -> dict:
        net.train()
        if i < cfg.warmup_steps:
            return {"stage": "warmup", "l1": weight_step()}
        s = i - cfg.warmup_steps
        frac = s / max(1, cfg.search_steps - 1)
        tau = cfg.tau_start + (cfg.tau_end - cfg.tau_start) * frac
        wl = weight_step()
        al, derived = arch_step(tau)
        if frac >= cfg.select_after and (s % cfg.eval_every == 0 or s == cfg.search_steps - 1):
            consider(i)
        return {"stage": "search", "l1": wl, "arch_l1": al, "derived": budget.fmt(derived).replace(" ", ""),
                "lam": state["penalty"]}

    run_loop("AGD search", total, step, {"supernet": net, "opt_w": opt_w, "opt_a": opt_a,
                                         "weight_sampler": weight_sampler, "arch_sampler": arch_sampler},
             Path(work_dir) / "search.ckpt", ckpt_every=25, quiet=quiet, extra_state=state)

    if not state["best_ws"]:  # a search too short to reach the selection phase
        consider(total)
    ops, ws = list(state["best_ops"]), list(state["best_ws"])
    chosen_loss = {"val_loss": state["best_loss"]}
    if cfg.spend_capacity and budget.unit == "ms":  # the chosen candidate's ms spent on MACs
        spent = spend_on_capacity(net, ops, ws, hi, op_ok=float_only)
        if spent != (ops, ws):  # the network that ships is scored too, on the same batch and weights
            chosen_loss = {"val_loss": val_loss(*spent), "val_loss_before_capacity": state["best_loss"]}
            ops, ws = spent
    meta = {"method": "agd", **budget_meta(budget, net.spec_from_indices(ops, ws)), **chosen_loss}
    if cfg.int8_search and budget.unit == "MACs":  # a latency budget prices int8 layers by the table
        meta.update(int8_cost=cfg.int8_cost, cost=float(net.cost(net.spec_from_indices(ops, ws))))
    spec = net.spec_from_indices(ops, ws, meta=meta)
    if is_main() and not quiet:
        from ..log import info

        info(f"derived architecture ({budget.fmt(net.cost(spec))}, {fmt_macs(spec.meta['macs'])}MACs; "
             f"budget {budget}):\n{spec.summary()}")
    return SearchResult(spec, net.state_dict(), ops, list(state["history"]), ws)


def l1_loss(out, target):
    return F.l1_loss(out, target)


def _floor_spec(spec: ArchSpec, unit: str) -> ArchSpec:
    """The space's smallest network in the budget's unit. `min_spec` of a supernet priced in MACs
    takes the int8 twin everywhere (discounted MACs); in milliseconds the narrow layers of the
    smallest network are faster in float (no conversions, and narrow int8 convs are slower), so
    its float twin is the floor there."""
    if unit != "ms" or not any(OPS[layer.op].bits == 8 for _, _, _, layer in spec.layers()):
        return spec
    floor = ArchSpec.from_dict(spec.to_dict())
    for cell in floor.cells:
        for layer in cell:
            layer.op = OPS[layer.op].base
    return floor.validate()


class AGD(Method):
    name, title = "agd", "AGD"
    summary = "AutoGAN-Distiller: differentiable search over operator x width"
    adapts_trunk = searches_int8 = True
    tasks = ("sr", "translate", "label2image")

    def smallest_network(self, cfg, nf: int, unit: str = "MACs") -> ArchSpec:
        from dataclasses import replace

        small = replace(cfg.search, nf=nf)
        net = make_supernet(small, frame_template(small, cfg.task, cfg.scale, label_channels(cfg)))
        return _floor_spec(net.min_spec(), unit)

    def capacity_in_budget(self, cfg, nf: int, budget):
        """Under a latency budget: the MACs of the space's float floor at trunk width nf (`cfg` is
        at that width) moved, one layer at a time, to the (operator, width) choices that add the
        most MACs per millisecond, up to the budget (`spend_on_capacity`, the pass that ends the
        search). None for SPADE students (timed whole), other units, or a floor over the budget."""
        if budget.unit != "ms" or cfg.task == "label2image":
            return None
        net = make_supernet(cfg.search, frame_template(cfg.search, cfg.task, cfg.scale, label_channels(cfg)), budget)
        floats = [o for o, name in enumerate(net.op_names) if OPS[name].bits != 8]
        narrow = net.spec_from_indices([floats[0]] * len(net.layer_widths), [0] * len(net.all_widths))
        ops = [min(floats, key=lambda o: net.op_cost(o, cin, layer.width, i))
               for i, (_, _, cin, layer) in enumerate(narrow.layers())]
        ws = [0] * len(net.all_widths)
        if net.cost(net.spec_from_indices(ops, ws)) > budget.limit:
            return None
        ops, ws = spend_on_capacity(net, ops, ws, budget.limit, op_ok=lambda o: o in floats)
        return float(spec_macs(net.spec_from_indices(ops, ws)))

    def fit_to_budget(self, ctx: RunContext):
        from .space import adapt_trunk_width

        unit = ctx.budget.unit
        return adapt_trunk_width(ctx.cfg, ctx.budget, lambda cfg, nf: self.smallest_network(cfg, nf, unit),
                                 frame_floor=True, log=ctx.log,
                                 capacity=lambda cfg, nf: self.capacity_in_budget(cfg, nf, ctx.budget))

    def check_budget(self, ctx: RunContext) -> None:
        cfg, budget = ctx.cfg, ctx.budget
        net = make_supernet(cfg.search, frame_template(cfg.search, cfg.task, cfg.scale, label_channels(cfg)))
        lo, hi = budget.cost(_floor_spec(net.min_spec(), budget.unit)), budget.cost(net.max_spec())
        if budget.limit < lo:
            hint = smaller_space_hint(cfg, budget, lambda c, nf: self.smallest_network(c, nf, budget.unit))
            raise UserError(f"budget {budget} is below the smallest network of the search space "
                            f"({budget.fmt(lo)} {budget.where()}); raise --budget to at least that, or "
                            f"shrink the space ({hint})")
        if budget.limit > hi:
            ctx.log(f"note: budget {budget} exceeds the largest network of the space "
                    f"({budget.fmt(hi)}); the search cannot use all of it (raise --nf to widen the space)")

    def search(self, ctx: RunContext):
        from ..data.patches import split_pairs

        cfg, s = ctx.cfg, ctx.cfg.search
        a, b, na, nb = split_pairs(ctx.pairs, cfg.seed, names=ctx.names)
        wa = ctx.sampler(s.patch, s.batch, cfg.seed, a, na)
        ab = ctx.sampler(s.patch, s.batch, cfg.seed + 1, b, nb)
        val = ctx.sampler(s.patch, 2 * s.batch, cfg.seed + 7, split=False).next_batch()
        template = frame_template(s, cfg.task, cfg.scale, label_channels(cfg))
        res = search(s, template, wa, ab, val, ctx.budget, ctx.run / "search", ctx.distill_loss(), cfg.device,
                     cfg.quiet)
        if is_main():
            atomic_write_text(ctx.run / "search" / "history.json", json.dumps(res.history, indent=1))
        if template.spade is not None:  # the widest student's weights; the student takes their leading slices
            return res.spec, {k[4:]: v for k, v in res.supernet_state.items() if k.startswith("net.")}
        net = make_supernet(s, template)  # only its layout is needed here: the MACs tables are cheap
        net.load_state_dict(res.supernet_state)
        return res.spec, student_state_from_supernet(net, res.op_idx)

    def retrain(self, ctx: RunContext, spec, student):
        from ..quant.fake import enable_fake_quant, int8_layer_names

        int8_layers = int8_layer_names(spec)
        if int8_layers:  # layers the precision search made int8 retrain with fake quantization
            enable_fake_quant(student, 8, only=tuple(int8_layers))
        return distill_student(ctx, student)


METHOD = AGD()

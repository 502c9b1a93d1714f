"""AGD (AutoGAN-Distiller, Fu et al., ICML 2020) for super-resolution: the search.

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
repaired greedily (cheapest loss of log-probability per MAC saved) so the budget always holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..arch.cost import INT8_MAC_COST, spec_macs
from ..arch.ops import DEFAULT_OPS
from ..arch.spec import ArchSpec, UpsamplerSpec, frame_for_width
from ..distill.loop import average_gradients, broadcast_parameters, is_main, run_loop
from .agd_supernet import Supernet, repair_to_budget


@dataclass
class AGDSearchConfig:
    nf: int = 32
    n_cells: int = 5
    n_layers: int = 5
    ops: tuple = DEFAULT_OPS
    width_ratios: tuple = (1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)
    upsampler: str = "pixelshuffle"
    up_width: int = 0
    skip: str = "bicubic"
    patch: int = 24
    batch: int = 8
    warmup_steps: int = 150
    search_steps: int = 300
    lr_weights: float = 5e-4
    lr_arch: float = 5e-3
    tau_start: float = 2.0
    tau_end: float = 0.5
    band: float = 0.85
    penalty_init: float = 0.01
    penalty_growth: float = 1.1
    select_after: float = 0.3
    eval_every: int = 10
    seed: int = 0
    int8_search: bool = False  # also choose int8 or fp32 per layer (issue 5 part 5; off by default)
    int8_cost: float = INT8_MAC_COST  # an int8 MAC's share of an fp32 MAC in the budget
    # translation: width ratios for the frame (stem, down, up layers); None: the same as the cells'
    # (compress.adapt_trunk_width sets the uniform baseline's frame as the floor when left None)
    frame_ratios: tuple | None = None
    # translation: the trunk width whose CycleGAN proportions (w/4, w/2) are the frame's widest
    # choices; 0: nf. The frame floor raises it when the uniform baseline's frame is wider than nf's
    frame_nf: int = 0

    def to_dict(self):
        d = asdict(self)
        d["ops"] = list(self.ops)
        d["width_ratios"] = list(self.width_ratios)
        if self.frame_ratios is None:  # configs written before the option existed compare equal
            del d["frame_ratios"]
        else:
            d["frame_ratios"] = list(self.frame_ratios)
        if not self.frame_nf:
            del d["frame_nf"]
        if not self.int8_search:  # configs written before the option existed compare equal
            del d["int8_search"], d["int8_cost"]
        return d


def frame_template(cfg: AGDSearchConfig, task: str = "sr", scale: int = 4) -> ArchSpec:
    """The spec of everything around the searched cells (no cells yet)."""
    if task == "translate":
        return ArchSpec("translate", 1, cfg.nf, [], skip="none",
                        frame=frame_for_width(cfg.frame_nf or cfg.nf, cfg.upsampler))
    return ArchSpec("sr", scale, cfg.nf, [], UpsamplerSpec(cfg.upsampler, cfg.up_width), skip=cfg.skip)


def make_supernet(cfg: AGDSearchConfig, template: ArchSpec) -> Supernet:
    from ..arch.ops import INT8_SUFFIX

    ops = list(cfg.ops)
    if cfg.int8_search:  # every operator also as its int8 twin: precision becomes part of the choice
        ops += [o + INT8_SUFFIX for o in cfg.ops if not o.endswith(INT8_SUFFIX)]
    return Supernet(template, cfg.n_cells, cfg.n_layers, ops, cfg.width_ratios,
                    cfg.int8_cost if cfg.int8_search else 1.0, frame_ratios=cfg.frame_ratios)


@dataclass
class SearchResult:
    spec: ArchSpec
    supernet_state: dict
    op_idx: list
    history: list = field(default_factory=list)


def search(cfg: AGDSearchConfig, template: ArchSpec, weight_sampler, arch_sampler, val_batch, budget: int,
           work_dir: Path, distill_loss, device: str = "cpu", quiet: bool = False) -> SearchResult:
    """Run warm-up + search, checkpointing into `work_dir`; returns the derived spec.

    `weight_sampler` / `arch_sampler`: patch samplers over two disjoint halves of the training data
    (LR patch, teacher-output patch). `val_batch`: fixed (lr, target) tensors for choosing among
    derived networks. `distill_loss(student_out, teacher_out)` -> scalar.
    """
    torch.manual_seed(cfg.seed)
    net = make_supernet(cfg, template).to(device)
    broadcast_parameters(net.parameters())
    w_params = net.weight_parameters()
    opt_w = torch.optim.Adam(w_params, lr=cfg.lr_weights)
    opt_a = torch.optim.Adam(net.arch_parameters(), lr=cfg.lr_arch, betas=(0.5, 0.999), weight_decay=1e-3)
    lo, hi = cfg.band * budget, budget
    total = cfg.warmup_steps + cfg.search_steps
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
        loss = d_loss + sign * state["penalty"] * torch.log(net.expected_macs())
        loss.backward()
        average_gradients(net.arch_parameters())
        opt_a.step()
        state["penalty"] *= cfg.penalty_growth if sign != 0 else 1 / cfg.penalty_growth ** 0.5
        state["penalty"] = float(min(max(state["penalty"], 1e-4), 10.0))
        return d_loss.item(), derived

    @torch.no_grad()
    def consider(step: int):
        ops, ws = net.argmax_indices()
        if net.cost(net.spec_from_indices(ops, ws)) > hi:
            ops, ws = repair_to_budget(net, ops, ws, hi)
        macs = net.cost(net.spec_from_indices(ops, ws))
        lr, tgt = to_dev(val_batch)
        vloss = distill_loss(net(lr, "fixed", "fixed", fixed_widths=ws, fixed_ops=ops), tgt).item()
        in_band = lo <= macs <= hi
        state["history"].append({"step": step, "macs": int(macs), "val_loss": vloss, "in_band": in_band})
        # prefer in-band networks; among them the lowest validation loss
        key = (0 if in_band else 1, vloss)
        best_key = (0 if lo <= state["best_macs"] <= hi else 1, state["best_loss"])
        if not state["best_ops"] or key < best_key:
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
        return {"stage": "search", "l1": wl, "arch_l1": al, "derived": f"{derived / 1e9:.2f}G",
                "lam": state["penalty"]}

    run_loop("AGD search", total, step, {"supernet": net, "opt_w": opt_w, "opt_a": opt_a,
                                         "weight_sampler": weight_sampler, "arch_sampler": arch_sampler},
             Path(work_dir) / "search.ckpt", ckpt_every=25, quiet=quiet, extra_state=state)

    if not state["best_ops"]:  # a search too short to reach the selection phase
        consider(total)
    ops, ws = list(state["best_ops"]), list(state["best_ws"])
    meta = {"method": "agd", "budget_macs": int(budget), "macs": int(spec_macs(net.spec_from_indices(ops, ws))),
            "val_loss": state["best_loss"]}
    if cfg.int8_search:
        meta.update(int8_cost=cfg.int8_cost, cost=float(net.cost(net.spec_from_indices(ops, ws))))
    spec = net.spec_from_indices(ops, ws, meta=meta)
    if is_main() and not quiet:
        print(f"derived architecture ({spec.meta['macs'] / 1e9:.2f} GMACs, budget {budget / 1e9:.2f}):")
        print(spec.summary())
    return SearchResult(spec, net.state_dict(), ops, list(state["history"]))


def l1_loss(out, target):
    return F.l1_loss(out, target)

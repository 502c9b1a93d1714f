"""GAN Slimming (Wang et al., ECCV 2020) as `--method slim` (alias gan-slimming): one optimization that distils, prunes
channels and (GS-8) trains for 8-bit, then extraction of the pruned network.

* Student: the widest network of the space (the GAN Compression width space, one operator without
  an internal skip in every cell layer), with one learnable **channel gate** per channel of every
  width position. Positions coupled by residual connections share one gate vector (`nf`: the head
  or encoder output, every cell's output, the SR trunk), so they are pruned together. SR students
  have no affine norm, so the gate multiplies the conv's output; translation students gate their
  instance norms' output (the paper reads the norms' own scales; an explicit gate on the normalised
  output is the same thing, and makes a pruned channel exactly zero even with the norm's bias).
* Loss: lambda_recon * L1(student, teacher) + lambda_gan * LSGAN (discriminator: teacher outputs
  real, student outputs fake, through an image pool). Weights: Adam. Gates: their own SGD group,
  followed after every step by the proximal step of rho * ||gates||_1, the soft threshold
  g <- sign(g) * max(|g| - lr_gate * rho, 0), which drives unneeded channels to exactly zero.
* GS-8 (`--bits 8`): fake quantization of weights and activations from the start (quant/fake.py).
* Budget: the gates are thresholded at the smallest |g| cut that lands the network within the
  MACs budget (binary search over the sorted gate magnitudes, as CAT does), keeping at least one
  channel per position. Where a fixed rho zeroed more than the budget asks, the zeroed channels are
  ranked below the live ones by their filters' magnitude and the cut regrows the strongest of them
  up to the budget with `--regrow` (default: the paper's cut, live gates only). `--slim-score rank`
  cuts every position to the same fraction instead of one |g| threshold for all. Neither applies to
  `--slim-init graph`; neither beat the default on the demo SR teacher (BENCHMARKS.md).
  Extraction removes the cut channels and folds the gates into the weights,
  so the extracted plain student computes exactly what the gated network with those gates zeroed
  computes (tested). It is then fine-tuned by distillation.

Run directory: search/slim.ckpt (the joint optimization, resumable), search/spec.json and
search/init.safetensors (the extracted network), search/slim.json (threshold, widths, sparsity),
retrain.ckpt (fine-tuning by distillation, with fake quantization for GS-8).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import torch

from ..arch.cost import fmt_macs
from ..arch.graph_channels import position_widths
from ..arch.ops import OPS
from ..arch.spec import ArchSpec
from ..distributed import is_main
from ..errors import UserError
from ..fileio import atomic_write_text
from ..rundir import omit_defaults
from .base import RunContext, distill_student
from .space import budget_meta
from .channels import (PRUNABLE_OPS, GatedStudent, PruningMethod, extract, op_option, rank_scores,
                       slimming_scores, start_option, threshold_for_budget, widths_of)

SLIM_OPS = PRUNABLE_OPS


@dataclass
class SlimConfig:
    op: str = op_option("--slim-op")
    steps: int = field(default=1000, metadata={
        "flag": "--slim-steps", "help": "steps of the joint distillation + pruning optimization"})
    rho: float = field(default=0.01, metadata={
        "help": "L1 weight on the channel gates (proximal step); larger prunes more"})
    lr: float = field(default=1e-3, metadata={"cli": False})
    lr_gate: float = field(default=0.1, metadata={"help": "gate SGD learning rate"})
    lr_d: float = field(default=2e-4, metadata={"cli": False})
    lambda_recon: float = 10.0  # --lambda-recon, --lambda-gan, --gan-loss: shared with GAN Compression
    lambda_gan: float = 0.1
    gan_loss: str = "lsgan"
    bits: int = field(default=32, metadata={
        "type": int, "choices": [8, 32], "help": "8: GS-8, quantization-aware from the start; 32: GS-32"})
    # shrink gates only while the network of non-zero gates is over the budget: a fixed rho prunes
    # far below it where the budget is loose (SRGAN 1/5: 40-50 % of it, below the uniform baseline
    # on every seed; with the stop, the widest network and a tie). False is the paper's fixed-rho
    # proximal step for every step (the default until session 47; config.json records it)
    stop_at_budget: bool = field(default=True, metadata={
        "aliases": ("--stop-at-budget",),
        "help": "the paper's fixed-rho proximal step on every step, even once the unpruned channels fit the "
                "budget (by default the step stops there: a fixed --rho can prune far below the budget)"})
    # fill the budget: channels the proximal step zeroed are regrown, strongest filters first, while
    # the network fits (channels.slimming_scores). Off by default: on the demo SR teacher at 1/5 the
    # filled student (7.02 G) scored what the unfilled one (4.8-5.8 G) did (three seeds each)
    regrow: bool = field(default=False, metadata={
        "help": "regrow the strongest channels the proximal step zeroed while the network fits the budget (a fixed "
                "--rho can prune far below it); not with --slim-init graph"})
    # what the budget threshold ranks: the gate magnitudes (the paper) or channels.rank_scores
    score: str = field(default="gate", metadata={
        "flag": "--slim-score", "choices": ["gate", "rank"],
        "help": "what the budget cut ranks: gate (|gate|, one threshold for all positions) or rank (each position's "
                "gates by rank: every position keeps the same fraction, its strongest gates)"})
    # the network that is slimmed: "teacher" (the pretrained teacher itself, as the paper does, when
    # its layout is expressible: teachers/as_student.py; otherwise the run falls back to "space")
    # or "space" (the widest network of the width space, trained from scratch)
    init: str = start_option("--slim-init", "from scratch")

    def to_dict(self):
        # stop_at_budget: omitted when False, the value every run before the switch ran with (the
        # default flipped in session 47), so those run folders still match and resume as they ran
        return omit_defaults(asdict(self), {"stop_at_budget": False, "init": "space", "regrow": False,
                                            "score": "gate"})


def validate(cfg: SlimConfig) -> None:
    if cfg.op not in SLIM_OPS:
        raise UserError(f"--slim-op {cfg.op!r}: GAN Slimming prunes operators without an internal skip; "
                        f"choose one of {', '.join(SLIM_OPS)}" + ("" if cfg.op in OPS else " (unknown operator)"))
    if cfg.init not in ("teacher", "graph", "space"):
        raise UserError(f"--slim-init must be 'teacher', 'graph' or 'space', got {cfg.init!r}")
    if (cfg.regrow or cfg.score != "gate") and cfg.init == "graph":
        raise UserError("--regrow and --slim-score rank work on the space network's channel gates; --slim-init graph "
                        "cuts the teacher's own graph by |gate| only: drop one of them")
    if cfg.bits not in (8, 32):
        raise UserError(f"--bits must be 8 (GS-8, quantization-aware) or 32 (GS-32), got {cfg.bits}")
    if cfg.rho < 0 or cfg.steps < 0 or cfg.lambda_recon < 0 or cfg.lambda_gan < 0:
        raise UserError("--rho, --slim-steps, --lambda-recon and --lambda-gan must be >= 0")


LATENCY_CHECK_EVERY = 25


def train_gated(cfg: SlimConfig, student: GatedStudent, recon_loss, sampler, ckpt, device, quiet=False,
                out_size: int = 128, seed: int = 0, budget=None) -> dict:
    """The one GAN Slimming optimization (resumable): distillation + GAN + proximal L1 on gates.
    With cfg.stop_at_budget and a budget (a budget.Budget), the proximal step is skipped while the
    non-zero gates already fit the budget (decided afresh every step, so resuming needs no extra
    state; a latency budget is asked every LATENCY_CHECK_EVERY steps, since new widths are timed)."""
    from ..distill.gan import ImagePool, discriminator_step, distill_discriminator, g_loss
    from ..distill.loop import run_loop
    from ..distill.train import CosineLR
    from ..distributed import average_gradients, broadcast_parameters

    torch.manual_seed(seed)
    student.to(device).train()
    w_params, g_params = student.weight_parameters(), student.gate_parameters()
    broadcast_parameters(w_params + g_params)
    opt = torch.optim.Adam(w_params, lr=cfg.lr)
    sched = CosineLR(opt, cfg.steps, cfg.lr, cfg.lr * 0.01)
    opt_g = torch.optim.SGD(g_params, lr=cfg.lr_gate)
    stateful = {"student": student, "opt": opt, "sched": sched, "opt_g": opt_g, "sampler": sampler}
    disc = None
    if cfg.lambda_gan > 0:
        disc = distill_discriminator(out_size).to(device)
        broadcast_parameters(disc.parameters())
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        pool = ImagePool(50, seed)
        stateful.update(disc=disc, opt_d=opt_d, pool=pool)

    last_fit: list[bool] = []  # the latest answer, reused between latency checks

    def live_fits(i: int) -> bool:
        if budget.unit != "ms" or not last_fit or i % LATENCY_CHECK_EVERY == 0:
            last_fit[:] = [budget.fits(student.live_spec())]
        return last_fit[0]

    def step(i):
        lr_b, tgt = sampler.next_batch()
        lr_b, tgt = lr_b.to(device), tgt.to(device)
        out = student(lr_b)
        loss = cfg.lambda_recon * recon_loss(out, tgt)
        logs = {"recon": loss.item()}
        if disc is not None:
            gl = cfg.lambda_gan * g_loss(cfg.gan_loss, disc(out))
            loss = loss + gl
            logs["gan"] = gl.item()
        opt.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(w_params + g_params)
        opt.step()
        sched.step()
        opt_g.step()
        if not (cfg.stop_at_budget and budget is not None and live_fits(i)):
            student.proximal_step(cfg.lr_gate * cfg.rho)
        if disc is not None:
            logs["d"] = discriminator_step(disc, opt_d, tgt, pool.query(out.detach()).to(device), cfg.gan_loss)
        logs["zero gates"] = f"{100 * student.sparsity():.0f}%"
        return logs

    return run_loop("GAN Slimming", cfg.steps, step, stateful, ckpt, ckpt_every=max(25, cfg.steps // 20),
                    quiet=quiet)


def quantize_for(cfg, module) -> list[str]:
    """GS-8: fake quantization on exactly the convs the task's int8 export quantizes (as `--qat`):
    SR all but the bicubic skip, the upsampler included; translation all but the output conv and
    the ConvTranspose2d layers. Returns the quantized module names."""
    if cfg.method_options.bits != 8:
        return []
    from ..quant.fake import enable_export_qat

    return enable_export_qat(module, cfg.task)


class GANSlimming(PruningMethod):
    name, aliases, title = "slim", ("gan-slimming",), "GAN Slimming"
    summary = "distillation + channel pruning + optional QAT"
    options, config_key = SlimConfig, "slim"
    tasks = ("sr", "translate", "label2image")

    def validate(self, cfg) -> None:
        validate(cfg.method_options)
        if cfg.task == "label2image" and cfg.method_options.bits != 32:
            raise UserError("--bits 8 is not available for --task label2image yet (its int8 export is not built); "
                            "use --bits 32")
        if cfg.task == "label2image" and cfg.method_options.init == "graph":
            raise UserError("--slim-init graph cannot read a SPADE generator (its label map enters every block); use "
                            "--slim-init teacher (the teacher's own widths and weights) or space")

    init_flag = "--slim-init"

    def graph_refusal(self, cfg) -> str | None:
        if cfg.method_options.bits != 32:
            return "GS-8 places its fake quantization by the skeleton's layer names; --slim-init graph is GS-32 only"
        return None

    def search(self, ctx: RunContext):
        cfg, run, s = ctx.cfg, ctx.run, ctx.cfg.search
        o, budget = cfg.method_options, ctx.budget
        if "graph" in ctx.extra:
            return self._search_graph(ctx)
        if cfg.task == "label2image":
            from .spade_gates import GatedSpade, extract_spade

            student, extract_fn = GatedSpade(self.space(ctx)), extract_spade
        else:
            student, extract_fn = GatedStudent(self.space(ctx)), extract
        if ctx.start is not None:  # the teacher itself, weights and all (outputs equal: tested)
            student.net.load_state_dict(ctx.start[1])
        quantize_for(cfg, student.net)
        train_gated(o, student, ctx.distill_loss(), ctx.sampler(s.patch, s.batch, cfg.seed), run / "search" / "slim.ckpt",
                    cfg.device, cfg.quiet, min(s.patch, cfg.retrain.patch) * cfg.scale, cfg.seed, budget)
        student.cpu().eval()
        zero = student.sparsity()
        # rank scores are all positive, so under them every zeroed channel can already be kept
        scores = rank_scores(student) if o.score == "rank" else slimming_scores(student) if o.regrow else None
        t = threshold_for_budget(student, budget, scores)
        kept = self.cut(ctx, student, t, scores)
        plain, spec = extract_fn(student, kept)
        spec = replace(spec, bits=o.bits, meta={"method": "slim", **budget_meta(budget, spec),
                                                "threshold": t, "rho": o.rho, "gate_sparsity": zero, "bits": o.bits})
        space = student.space
        regrown = sum(int((student.gates[i].detach()[k] == 0).sum()) for i, k in enumerate(kept) if i in student.map.prunable)
        info = {"threshold": t, "gate_sparsity_after_training": zero, "regrown_channels": regrown,
                "widths": dict(zip(space.names, widths_of(kept))), "widest": dict(zip(space.names, space.max_config()))}
        ctx.log(f"GAN Slimming: {100 * zero:.0f}% of gates at zero after training; threshold {t:.4g} keeps "
                f"{fmt_macs(spec.meta['macs'])} MACs, {budget.fmt(budget.cost(spec))} (budget {budget})"
                + (f", {regrown} zeroed channels regrown" if regrown else ""))
        if t == 0.0 and budget.cost(spec) < 0.85 * budget.limit:
            ctx.log(f"note: --rho {o.rho} alone pruned the network to {budget.fmt(budget.cost(spec))}, well under "
                    f"the budget {budget}; a smaller --rho leaves the cut to the budget")
        if is_main():
            atomic_write_text(run / "search" / "slim.json", json.dumps(info, indent=1))
        return spec, {k: v.contiguous() for k, v in plain.state_dict().items()}

    @staticmethod
    def _search_graph(ctx: RunContext):
        """The same optimization on the teacher read as a graph: a gate per channel class."""
        from .graph_pruning import GatedGraph

        cfg, run, s = ctx.cfg, ctx.run, ctx.cfg.search
        o, budget = cfg.method_options, ctx.budget
        student = GatedGraph(cfg.task, ctx.teacher.scale, *ctx.extra["graph"])
        train_gated(o, student, ctx.distill_loss(), ctx.sampler(s.patch, s.batch, cfg.seed), run / "search" / "slim.ckpt",
                    cfg.device, cfg.quiet, min(s.patch, cfg.retrain.patch) * cfg.scale, cfg.seed, budget)
        student.cpu().eval()
        zero = student.sparsity()
        t = student.threshold_for_budget(budget)
        keep = student.kept(t)
        graph, weights = student.extract(keep)
        spec = ArchSpec.from_graph(cfg.task, ctx.teacher.scale, graph)
        spec = replace(spec, meta={"method": "slim", **budget_meta(budget, spec), "threshold": t, "rho": o.rho,
                                   "gate_sparsity": zero, "bits": 32, "pruned_from": "teacher graph"})
        info = {"threshold": t, "gate_sparsity_after_training": zero, "pruned_from": "teacher graph",
                "widths": position_widths(student.cg, keep), "widest": [len(p) for p in student.cg.positions]}
        if is_main():  # which teacher channels the student kept: the targets of --hints
            from ..distill.hints import hinted_channels, write_channels

            write_channels(run, hinted_channels(student.graph, student.cg, keep))
        cost = "" if budget.unit == "MACs" else f", {budget.fmt(budget.cost(spec))}"
        ctx.log(f"GAN Slimming (teacher graph): {100 * zero:.0f}% of gates at zero after training; threshold {t:.4g} "
                f"keeps {fmt_macs(spec.meta['macs'])} MACs{cost} (budget {budget})")
        if is_main():
            atomic_write_text(run / "search" / "slim.json", json.dumps(info, indent=1))
        return spec, {k: v.contiguous() for k, v in weights.items()}

    def retrain(self, ctx: RunContext, spec, student):
        quantize_for(ctx.cfg, student)
        return distill_student(ctx, student, "GS fine-tune")


METHOD = GANSlimming()

"""GAN Slimming (Wang et al., ECCV 2020) as `--method slim`: one optimization that distils, prunes
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
  channel per position. Extraction removes the cut channels and folds the gates into the weights,
  so the extracted plain student computes exactly what the gated network with those gates zeroed
  computes (tested). It is then fine-tuned by distillation.
"""

from __future__ import annotations

import bisect
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..arch.build import build_student
from ..arch.cost import spec_macs
from ..arch.ops import OPS
from ..errors import UserError
from .ofa_space import OFASpace

SLIM_OPS = ("conv3x3", "conv1x1", "dil3x3")  # no internal skip / hidden width: channels prune cleanly


@dataclass
class SlimConfig:
    op: str = "conv3x3"
    steps: int = 1000
    rho: float = 0.01
    lr: float = 1e-3
    lr_gate: float = 0.1
    lr_d: float = 2e-4
    lambda_recon: float = 10.0
    lambda_gan: float = 0.1
    gan_loss: str = "lsgan"
    bits: int = 32
    # shrink gates only while the network of non-zero gates is over the budget (a fixed rho can prune
    # far below it: 26 % under at SRGAN 1/10); False is the paper's fixed-rho proximal step
    stop_at_budget: bool = False
    # the network that is slimmed: "teacher" (the pretrained teacher itself, as the paper does, when
    # its layout is expressible: teachers/as_student.py; otherwise the run falls back to "space")
    # or "space" (the widest network of the GAN Compression space, trained from scratch)
    init: str = "teacher"

    def to_dict(self):
        d = asdict(self)
        if not self.stop_at_budget:  # run directories written before the option keep matching
            del d["stop_at_budget"]
        if self.init == "space":
            del d["init"]
        return d


def validate(cfg: SlimConfig) -> None:
    if cfg.op not in SLIM_OPS:
        raise UserError(f"--slim-op {cfg.op!r}: GAN Slimming prunes operators without an internal skip; "
                        f"choose one of {', '.join(SLIM_OPS)}" + ("" if cfg.op in OPS else " (unknown operator)"))
    if cfg.init not in ("teacher", "space"):
        raise UserError(f"--slim-init must be 'teacher' or 'space', got {cfg.init!r}")
    if cfg.bits not in (8, 32):
        raise UserError(f"--bits must be 8 (GS-8, quantization-aware) or 32 (GS-32), got {cfg.bits}")
    if cfg.rho < 0 or cfg.steps < 0 or cfg.lambda_recon < 0 or cfg.lambda_gan < 0:
        raise UserError("--rho, --slim-steps, --lambda-recon and --lambda-gan must be >= 0")


def _primes(n: int, start: int = 101) -> list[int]:
    out, k = [], start
    while len(out) < n:
        if all(k % d for d in range(2, int(k ** 0.5) + 1)):
            out.append(k)
        k += 1
    return out


class ChannelMap:
    """Which position of the space every conv reads and writes, and which modules carry gates.

    Found by building the student once with a distinct prime width per position and reading the
    layers' channel counts back, so it follows the build code instead of duplicating it."""

    def __init__(self, space: OFASpace):
        self.space = space
        probe = _primes(len(space))
        pos = {w: i for i, w in enumerate(probe)}
        student = build_student(space.spec(probe))
        self.convs: dict[str, tuple] = {}
        self.norms: dict[str, int | None] = {}
        for name, m in student.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if m.groups != 1:
                    raise UserError(f"GAN Slimming cannot prune grouped conv {name}")
                self.convs[name] = (pos.get(m.out_channels), pos.get(m.in_channels))
            elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)):
                self.norms[name] = pos.get(m.num_features)
        self.gate_on_norm = student.style.norm != "none"
        # a progressive SR upsampler's width is interleaved by PixelShuffle: it is never pruned
        self.prunable = [i for i, n in enumerate(space.names) if n != "up"]
        self.gated = {n: p for n, p in (self.norms.items() if self.gate_on_norm
                                        else ((n, io[0]) for n, io in self.convs.items())) if p is not None}


class GatedStudent(nn.Module):
    """The widest student with a gate vector per prunable position, applied by forward hooks."""

    def __init__(self, space: OFASpace):
        super().__init__()
        self.space, self.map = space, ChannelMap(space)
        self.net = build_student(space.spec(space.max_config()))
        widest = space.max_config()
        self.gates = nn.ParameterList(nn.Parameter(torch.ones(widest[i])) if i in self.map.prunable
                                      else nn.Parameter(torch.ones(0), requires_grad=False) for i in range(len(space)))
        modules = dict(self.net.named_modules())
        for name, p in self.map.gated.items():
            if p in self.map.prunable:
                modules[name].register_forward_hook(self._gate(p))

    def _gate(self, p):
        def hook(_m, _inp, out):
            return out * self.gates[p].view(1, -1, 1, 1)
        return hook

    def forward(self, x):
        return self.net(x)

    def gate_parameters(self):
        return [g for g in self.gates if g.requires_grad]

    def weight_parameters(self):
        return list(self.net.parameters())

    @torch.no_grad()
    def proximal_step(self, threshold: float) -> None:
        """Soft threshold (the proximal operator of threshold * ||g||_1)."""
        for g in self.gate_parameters():
            g.copy_(torch.sign(g) * torch.clamp(g.abs() - threshold, min=0))

    def sparsity(self) -> float:
        gs = torch.cat([g.detach().flatten() for g in self.gate_parameters()])
        return float((gs == 0).float().mean())


def kept_channels(student: GatedStudent, threshold: float) -> list[torch.Tensor]:
    """Indices kept per position: |g| > threshold, at least the largest one (with a warning)."""
    kept = []
    for i, g in enumerate(student.gates):
        if i not in student.map.prunable:
            kept.append(torch.arange(student.space.max_config()[i]))
            continue
        idx = torch.nonzero(g.detach().abs() > threshold).flatten()
        if idx.numel() == 0:
            warnings.warn(f"GAN Slimming pruned every channel of {student.space.names[i]}; keeping its "
                          "strongest one (lower --rho to prune less)", stacklevel=2)
            idx = g.detach().abs().argmax().view(1)
        kept.append(idx)
    return kept


def widths_of(kept) -> tuple[int, ...]:
    return tuple(int(k.numel()) for k in kept)


def threshold_for_budget(student: GatedStudent, budget: int) -> float:
    """The smallest gate-magnitude threshold whose pruned network fits `budget` MACs (binary search:
    MACs fall monotonically as the threshold rises)."""
    space = student.space
    mags = sorted({0.0, *(float(v) for i in student.map.prunable for v in student.gates[i].detach().abs())})

    def macs(t):
        return spec_macs(space.spec(widths_of(kept_channels_quiet(student, t))))

    if macs(mags[-1]) > budget:
        raise UserError(f"even one channel per layer ({macs(mags[-1]) / 1e9:.3f} GMACs) exceeds the budget "
                        f"{budget / 1e9:.3f} GMACs; raise --budget")
    i = bisect.bisect_left(range(len(mags)), True, key=lambda j: macs(mags[j]) <= budget)
    return mags[i]


def kept_channels_quiet(student, t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kept_channels(student, t)


@torch.no_grad()
def extract(student: GatedStudent, kept) -> tuple[nn.Module, object]:
    """A plain student of the kept widths with the gated network's weights (gates folded in)."""
    space, cmap = student.space, student.map
    spec = space.spec(widths_of(kept))
    plain = build_student(spec)
    src = dict(student.net.named_modules())
    gates = {i: student.gates[i].detach() for i in cmap.prunable}

    def sel(pos):
        return None if pos is None else kept[pos]

    for name, m in plain.named_modules():
        s = src.get(name)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            out_p, in_p = cmap.convs[name]
            w = s.weight
            o_dim, i_dim = (1, 0) if isinstance(m, nn.ConvTranspose2d) else (0, 1)
            if sel(out_p) is not None:
                w = w.index_select(o_dim, kept[out_p])
            if sel(in_p) is not None:
                w = w.index_select(i_dim, kept[in_p])
            b = None if s.bias is None else (s.bias if out_p is None else s.bias[kept[out_p]])
            if not cmap.gate_on_norm:
                # SR: the gated output is lrelu(g z) = |g| lrelu(sign(g) z) (positive homogeneity,
                # and the residual adds are linear), so the producer keeps only the sign and the
                # consumers take |g| on their input channel. Folding g into the producer instead left
                # gates of ~0.003 as weights of ~1e-4, which Adam then wrecked in one fine-tuning step
                # (a GS-32 SRGAN student fell from 31.8 to 15.5 dB).
                if out_p in gates:
                    sg = torch.sign(gates[out_p][kept[out_p]])
                    w = w * sg.view(-1, 1, 1, 1)
                    b = None if b is None else b * sg
                if in_p in gates and not isinstance(m, nn.ConvTranspose2d):
                    w = w * gates[in_p][kept[in_p]].abs().view(1, -1, 1, 1)
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) and m.weight is not None:
            p = cmap.norms[name]
            idx = kept[p] if p is not None else torch.arange(m.num_features)
            g = gates[p][idx] if (cmap.gate_on_norm and p in gates) else torch.ones(len(idx))
            m.weight.copy_(s.weight[idx] * g)
            m.bias.copy_(s.bias[idx] * g)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(s.running_mean[idx])
                m.running_var.copy_(s.running_var[idx])
    return plain, spec


@torch.no_grad()
def zero_cut_gates(student: GatedStudent, kept) -> None:
    """Set the gates of cut channels to zero (the masked network extraction must equal)."""
    for i in student.map.prunable:
        mask = torch.zeros_like(student.gates[i])
        mask[kept[i]] = 1
        student.gates[i].mul_(mask)


# module-name prefixes kept in float during QAT: the layers that write the output image, as the
# int8 export keeps them (export/int8.py)
QAT_FLOAT = {"sr": ("skip", "upsampler"), "translate": ("out",)}


def live_macs(student: GatedStudent) -> int:
    """MACs of the network that the non-zero gates keep (the floor of one channel counted)."""
    return spec_macs(student.space.spec(widths_of(kept_channels_quiet(student, 0.0))))


def train_gated(cfg: SlimConfig, student: GatedStudent, recon_loss, sampler, ckpt, device, quiet=False,
                out_size: int = 128, seed: int = 0, budget: int | None = None) -> dict:
    """The one GAN Slimming optimization (resumable): distillation + GAN + proximal L1 on gates.
    With cfg.stop_at_budget and a budget, the proximal step is skipped while the non-zero gates
    already fit the budget (decided afresh every step, so resuming needs no extra state)."""
    from ..distill.gan import ImagePool, discriminator_step, distill_discriminator, g_loss
    from ..distill.loop import average_gradients, broadcast_parameters, run_loop
    from ..distill.train import CosineLR

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
        if not (cfg.stop_at_budget and budget is not None and live_macs(student) <= budget):
            student.proximal_step(cfg.lr_gate * cfg.rho)
        if disc is not None:
            logs["d"] = discriminator_step(disc, opt_d, tgt, pool.query(out.detach()).to(device), cfg.gan_loss)
        logs["zero gates"] = f"{100 * student.sparsity():.0f}%"
        return logs

    return run_loop("GAN Slimming", cfg.steps, step, stateful, ckpt, ckpt_every=max(25, cfg.steps // 20),
                    quiet=quiet)

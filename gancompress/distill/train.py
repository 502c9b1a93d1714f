"""Pixel-loss training of an SR network on aligned patches: one routine for three jobs.

* retraining a derived student by distillation (targets = teacher outputs),
* training the uniform-width baseline the same way (fair comparison: same steps, same data),
* training an SR teacher from scratch (targets = HR photographs) for `gancompress train-teacher`.

Adam with cosine decay; L1 (or a weight-free loss mix) plus an optional perceptual term. Resumable through `run_loop`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .loop import run_loop

from ..distributed import average_gradients, broadcast_parameters


@dataclass
class TrainConfig:
    steps: int = 5000
    patch: int = 32
    batch: int = 16
    lr: float = 2e-3  # measured: 30.19 vs 29.49 dB Set5 at 2000 of 6000 steps against 5e-4
    min_lr: float = 1e-6
    perceptual_weight: float = 0.0
    loss: str = "l1"  # weight-free loss mix, see distill.losses
    hints: float = 0.0  # weight of the teacher's intermediate features (graph students: distill/hints.py)
    qat: bool = False  # quantization-aware: fake int8 on every conv `export --int8` quantizes (quant/fake.py)

    def to_dict(self):
        from ..rundir import omit_defaults

        return omit_defaults(asdict(self), {"loss": "l1", "hints": 0.0, "qat": False})


class CosineLR:
    """Cosine decay from lr to min_lr over `steps`, with state for resuming."""

    def __init__(self, opt, steps, lr, min_lr):
        self.opt, self.steps, self.lr, self.min_lr, self.i = opt, steps, lr, min_lr, 0

    def step(self):
        self.i += 1
        t = min(1.0, self.i / max(1, self.steps))
        lr = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * t))
        for g in self.opt.param_groups:
            g["lr"] = lr

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, d):
        self.i = int(d["i"])


def fit_pixels(model: torch.nn.Module, sampler, cfg: TrainConfig, ckpt_path: Path, name: str,
               device: str = "cpu", quiet: bool = False, perceptual=None, hints=None) -> dict:
    """Train `model` so model(lr) matches the sampler's targets; resumes from `ckpt_path`.
    `hints(model, lr) -> (output, loss)`: an extra term on intermediate features (distill/hints.py)."""
    from .losses import make_distill_loss

    loss_fn = make_distill_loss(cfg.loss, perceptual, cfg.perceptual_weight)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    broadcast_parameters(params)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = CosineLR(opt, cfg.steps, cfg.lr, cfg.min_lr)

    trend = {"loss": None}  # the loss's running mean, checkpointed: a resumed run judges spikes alike

    def step(i):
        lr, tgt = sampler.next_batch()
        lr, tgt = lr.to(device), tgt.to(device)
        if hints is not None:
            out, hint = hints(model, lr)
            loss = loss_fn(out, tgt)
            logs = {"loss": loss.item(), "hint": hint.item()}
            loss = loss + hint
        else:
            loss = loss_fn(model(lr), tgt)
            logs = {"loss": loss.item()}
        check_spike(trend, logs["loss"], i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params)
        opt.step()
        sched.step()
        return logs

    logs = run_loop(name, cfg.steps, step, {"model": model, "opt": opt, "sched": sched, "sampler": sampler},
                    ckpt_path, ckpt_every=max(50, cfg.steps // 20), quiet=quiet, extra_state=trend)
    model.eval()
    return logs


SPIKE_FACTOR = 20.0  # a batch loss this many times the running mean is a run going wrong, not a hard batch
SPIKE_AFTER = 100  # steps before the running mean is trusted


def check_spike(trend: dict, loss: float, i: int) -> None:
    """Raise Diverged when `loss` is SPIKE_FACTOR times its running mean (kept in `trend`), so
    run_loop rolls back to the last checkpoint with the learning rate halved. Why: Adam runs can
    blow up while every value stays finite; a 1/40 SRGAN student's L1 went from 0.012 to 567 at
    step 5000 of 20000 and never came back below 1 (BENCHMARKS.md, session 35)."""
    from .loop import Diverged

    mean = trend["loss"]
    if mean is not None and i >= SPIKE_AFTER and loss > SPIKE_FACTOR * mean:
        raise Diverged(f"the training loss jumped to {loss:.4g}, {loss / mean:.0f} times its running mean {mean:.4g}")
    trend["loss"] = loss if mean is None else 0.99 * mean + 0.01 * loss

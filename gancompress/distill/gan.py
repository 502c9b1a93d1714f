"""The adversarial term shared by GAN Compression and GAN Slimming (and the teacher trainer):
a PatchGAN discriminator and LSGAN / hinge losses.

In distillation the discriminator's "real" images are the teacher's outputs (unpaired case) or
the ground truth (paired case, e.g. the HR photographs of SR); "fake" are the student's.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

GAN_LOSSES = ("lsgan", "hinge")


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: conv4x4 stride 2 (64, 128, 256), conv4x4 stride 1 (512), conv4x4 -> 1 map;
    instance norm except on the first and last convs, LeakyReLU 0.2."""

    def __init__(self, in_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = ndf
        for i in range(1, n_layers + 1):
            c_next = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, c_next, 4, stride, 1), nn.InstanceNorm2d(c_next), nn.LeakyReLU(0.2, True)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class ImagePool:
    """Keeps up to `size` past fakes; with probability 1/2 the discriminator sees an old one
    instead of the new one (Shrivastava et al.), which steadies CycleGAN's training."""

    def __init__(self, size: int = 50, seed: int = 0):
        self.size, self.images = size, []
        self.rng = random.Random(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        out = []
        for im in batch.detach():
            if len(self.images) < self.size:
                self.images.append(im.clone())
                out.append(im)
            elif self.rng.random() < 0.5:
                j = self.rng.randrange(self.size)
                out.append(self.images[j].clone())
                self.images[j] = im.clone()
            else:
                out.append(im)
        return torch.stack(out)

    def state_dict(self):
        return {"images": list(self.images), "rng": list(self.rng.getstate()[1]),
                "rng_pos": self.rng.getstate()[2] if self.rng.getstate()[2] is not None else -1}

    def load_state_dict(self, d):
        self.images = list(d["images"])
        self.rng.setstate((3, tuple(int(v) for v in d["rng"]), None if d["rng_pos"] == -1 else d["rng_pos"]))



# The discriminator GAN Compression and GAN Slimming train beside a student: width 16, not pix2pix's
# 64, which on a CPU made it cost 10x the student per step (fine-tuning an SRGAN student at 1/10:
# 1.9 s/step, against 0.16 s for plain distillation); fewer stride-2 layers for small patches.
DISTILL_DISC_WIDTH = 16


def distill_discriminator(out_size: int) -> PatchDiscriminator:
    """A PatchGAN for student outputs of `out_size` px."""
    return PatchDiscriminator(3, DISTILL_DISC_WIDTH, 3 if out_size >= 64 else (2 if out_size >= 32 else 1))


def discriminator_step(disc, opt_d, real, fake, kind: str) -> float:
    """One discriminator update (gradients averaged across ranks); returns its loss."""
    from ..distributed import average_gradients

    opt_d.zero_grad(set_to_none=True)
    loss = d_loss(kind, disc(real), disc(fake))
    loss.backward()
    average_gradients(list(disc.parameters()))
    opt_d.step()
    return loss.item()


def d_loss(kind: str, pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss (averaged over real and fake)."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - pred_real).mean() + F.relu(1 + pred_fake).mean())
    return 0.5 * (F.mse_loss(pred_real, torch.ones_like(pred_real))
                  + F.mse_loss(pred_fake, torch.zeros_like(pred_fake)))


def g_loss(kind: str, pred_fake: torch.Tensor) -> torch.Tensor:
    """Generator (student) loss: make the discriminator call its output real."""
    if kind == "hinge":
        return -pred_fake.mean()
    return F.mse_loss(pred_fake, torch.ones_like(pred_fake))


def conditional_gan_step(g, d, opt_g, opt_d, x, y, lambda_l1: float, schedulers=()) -> dict:
    """One pix2pix-style step (the teacher trainers'): a conditional discriminator sees (input,
    image) pairs, least-squares GAN loss, and the generator also pays lambda_l1 x L1 to `y`."""
    def lsgan(pred, real):
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))

    fake = g(x)
    opt_d.zero_grad(set_to_none=True)
    loss_d = 0.5 * (lsgan(d(torch.cat([x, y], 1)), True) + lsgan(d(torch.cat([x, fake.detach()], 1)), False))
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    gan = lsgan(d(torch.cat([x, fake], 1)), True)
    l1 = F.l1_loss(fake, y)
    (gan + lambda_l1 * l1).backward()
    opt_g.step()
    for s in schedulers:
        s.step()
    return {"d": loss_d.item(), "g_gan": gan.item(), "l1": l1.item()}

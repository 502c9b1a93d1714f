"""`gancompress train-teacher --task translate`: train a translation generator with a GAN.

Unpaired (default): CycleGAN (Zhu et al. 2017). Two ResNet generators (A->B, B->A) and two 70x70
PatchGAN discriminators; least-squares GAN loss, cycle-consistency (lambda 10) and identity
(0.5 x lambda) losses, a pool of 50 past fakes for the discriminators, Adam (2e-4, beta1 0.5),
learning rate constant for the first half of the steps and linearly decayed to 0 in the second.

Paired (`--paired`): pix2pix (Isola et al. 2017). One generator, a conditional PatchGAN that sees
(input, output) pairs; GAN loss + 100 x L1 to the target. The GAN loss is least squares in both
modes (pix2pix's paper used the cross-entropy loss; LSGAN is CycleGAN's and trains more steadily),
and the generator is the ResNet one in both (pix2pix's U-Net is a zoo teacher, not trained here).

Without domain folders, the pairs are the bundled photographs and a classical, non-learned
rendering of them (`toon_filter`): that is how the bundled translation demo teacher was made.

The generator is saved in the public CycleGAN release's `model.N.*` layout (`cyclegan-resnet`), in
[-1, 1], so any tool that reads that layout reads ours. The run resumes from `<out>.*.ckpt`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.patches import PatchSampler
from ..distill.gan import ImagePool, PatchDiscriminator, conditional_gan_step
from ..distill.loop import remove_checkpoint, run_loop
from ..errors import UserError
from ..fileio import save_safetensors_atomic
from .zoo_translate import ResnetGenerator


# ---- the demo task's target: a classical "toon" rendering --------------------------------------
def toon_filter(img: torch.Tensor, levels: int = 5, edge: float = 0.25) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> cartoon-like rendering: a 5x5 median smooth, colours posterized to
    `levels` per channel, and dark outlines where the smoothed luminance has a strong Sobel edge.
    Every step is local (what a convolutional generator can learn)."""
    x = img[None]
    p = F.pad(x, (2, 2, 2, 2), mode="reflect")
    smooth = p.unfold(2, 5, 1).unfold(3, 5, 1).reshape(*x.shape, 25).median(-1).values
    poster = torch.round(smooth * (levels - 1)) / (levels - 1)
    lum = (0.299 * smooth[:, 0] + 0.587 * smooth[:, 1] + 0.114 * smooth[:, 2])[:, None]
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    lp = F.pad(lum, (1, 1, 1, 1), mode="reflect")
    g = torch.sqrt(F.conv2d(lp, kx) ** 2 + F.conv2d(lp, kx.transpose(2, 3)) ** 2)
    outline = (g > edge).float()
    return (poster * (1 - outline))[0].clamp(0, 1)


# ---- discriminator and image pool -----------------------------------------------------------
def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


def _linear_decay(total: int):
    half = total // 2
    return lambda step: 1.0 if step < half else max(0.0, 1.0 - (step - half) / max(1, total - half))


# ---- data -------------------------------------------------------------------------------------
def _domain_images(folder, size, hint):
    from ..data.translate import load_square_folder

    return load_square_folder(folder, size, hint=hint)


def paired_training_images(domain_a, domain_b, size):
    from ..data.translate import load_square_paths, paired_files

    pairs = paired_files(domain_a, domain_b)
    a = dict(load_square_paths([p for p, _ in pairs], size))
    b = dict(load_square_paths([q for _, q in pairs], size))
    return [p.name for p, _ in pairs], [(a[p.name], b[q.name]) for p, q in pairs]


def demo_pairs(size):
    from ..data.bundled import bundled_photographs
    from ..data.translate import square

    names, pairs = [], []
    for name, im in bundled_photographs("train"):
        x = square(im, size)
        names.append(name)
        pairs.append((x, toon_filter(x)))
    return names, pairs


# ---- training ---------------------------------------------------------------------------------
def train_translate_teacher(out: str | os.PathLike, domain_a: str | None = None, domain_b: str | None = None,
                            paired: bool = False, ngf: int = 32, n_blocks: int = 9, steps: int = 4000,
                            size: int = 256, crop: int = 128, batch: int = 1, lr: float = 2e-4,
                            lambda_cycle: float = 10.0, lambda_identity: float = 0.5, lambda_l1: float = 100.0,
                            seed: int = 0, device: str = "cpu", quiet: bool = False) -> Path:
    """Train a CycleGAN (unpaired) or pix2pix-style (paired) ResNet generator; write it to `out`.
    (Long on purpose: the two objectives share the networks, optimizers and the resumable loop.)"""
    out = Path(out)
    if (domain_a is None) != (domain_b is None):
        raise UserError("give both --domain-a and --domain-b, or neither (the bundled photographs and "
                        "their toon rendering, paired)")
    if crop > size or crop % 4:
        raise UserError(f"--crop must be a multiple of 4 and at most --size {size}, got {crop}")
    if domain_a is None:
        paired = True
        names, pairs = demo_pairs(size)
    elif paired:
        names, pairs = paired_training_images(domain_a, domain_b, size)
    else:
        a = _domain_images(domain_a, size, "point --domain-a at a folder of domain-A images")
        b = _domain_images(domain_b, size, "point --domain-b at a folder of domain-B images")
    torch.manual_seed(seed)
    to_pm = lambda t: t * 2 - 1  # noqa: E731 - the generators work in [-1, 1]
    g_ab = ResnetGenerator(ngf=ngf, n_blocks=n_blocks).to(device)
    tag = f"{'paired' if paired else 'cycle'}-ngf{ngf}-nb{n_blocks}-s{steps}-c{crop}-b{batch}"
    ckpt = out.with_name(f"{out.name}.{tag}.ckpt")
    decay = _linear_decay(steps)
    if paired:
        d = PatchDiscriminator(6).to(device)
        sampler = PatchSampler(pairs, crop, 1, batch, seed, names=names)
        opt_g = torch.optim.Adam(g_ab.parameters(), lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
        sch = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_d)]

        def step(i):
            x, y = (to_pm(t.to(device)) for t in sampler.next_batch())
            return conditional_gan_step(g_ab, d, opt_g, opt_d, x, y, lambda_l1, sch)

        stateful = {"g": g_ab, "d": d, "opt_g": opt_g, "opt_d": opt_d, "sch_g": sch[0], "sch_d": sch[1],
                    "sampler": sampler}
    else:
        g_ba = ResnetGenerator(ngf=ngf, n_blocks=n_blocks).to(device)
        d_a, d_b = PatchDiscriminator(3).to(device), PatchDiscriminator(3).to(device)
        # unpaired: each domain sampled on its own (an image is its own "pair")
        sa = PatchSampler([(im, im) for _, im in a], crop, 1, batch, seed, names=[n for n, _ in a])
        sb = PatchSampler([(im, im) for _, im in b], crop, 1, batch, seed + 1, names=[n for n, _ in b])
        pool_a, pool_b = ImagePool(50, seed), ImagePool(50, seed + 1)
        opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=lr, betas=(0.5, 0.999))
        sch = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_d)]

        def step(i):
            ra, rb = to_pm(sa.next_batch()[0].to(device)), to_pm(sb.next_batch()[0].to(device))
            opt_g.zero_grad(set_to_none=True)
            fb, fa = g_ab(ra), g_ba(rb)
            gan = _lsgan(d_b(fb), True) + _lsgan(d_a(fa), True)
            cyc = F.l1_loss(g_ba(fb), ra) + F.l1_loss(g_ab(fa), rb)
            idt = F.l1_loss(g_ab(rb), rb) + F.l1_loss(g_ba(ra), ra) if lambda_identity > 0 else torch.zeros(())
            (gan + lambda_cycle * cyc + lambda_cycle * lambda_identity * idt).backward()
            opt_g.step()
            opt_d.zero_grad(set_to_none=True)
            qb, qa = pool_b.query(fb), pool_a.query(fa)
            loss_d = 0.5 * (_lsgan(d_b(rb), True) + _lsgan(d_b(qb), False)) \
                + 0.5 * (_lsgan(d_a(ra), True) + _lsgan(d_a(qa), False))
            loss_d.backward()
            opt_d.step()
            for s in sch:
                s.step()
            return {"d": loss_d.item(), "g_gan": gan.item(), "cycle": cyc.item()}

        stateful = {"g_ab": g_ab, "g_ba": g_ba, "d_a": d_a, "d_b": d_b, "opt_g": opt_g, "opt_d": opt_d,
                    "sch_g": sch[0], "sch_d": sch[1], "sampler_a": sa, "sampler_b": sb, "pool_a": pool_a,
                    "pool_b": pool_b}
    for m in stateful.values():
        if isinstance(m, nn.Module):
            m.train()
    run_loop("train teacher", steps, step, stateful, ckpt, ckpt_every=100, quiet=quiet)
    g_ab.eval()
    save_safetensors_atomic(g_ab.state_dict(), out, {"arch": "cyclegan-resnet", "ngf": str(ngf),
                                                    "n_blocks": str(n_blocks), "mode": "paired" if paired else "cycle",
                                                    "steps": str(steps), "seed": str(seed)})
    remove_checkpoint(ckpt)  # and its previous copy
    return out

"""`gancompress train-teacher --task sr`: train an ESRGAN-style RRDB generator from HR photographs.

This is how the bundled demo teacher was made (see README, "The demo teacher"): L1 to the HR
photographs on bicubic-downscaled LR patches. (ESRGAN's second, adversarial phase is not
implemented yet: the teacher is PSNR-oriented.)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.degrade import bicubic_downscale
from ..data.patches import PatchSampler
from ..distill.loop import remove_checkpoint
from ..distill.train import TrainConfig, fit_pixels
from ..fileio import save_safetensors_atomic
from .zoo import RRDBNet


def training_pairs(images, scale: int):
    """(names, [(lr, hr)]) from (name, HR tensor) pairs, HR cropped to a multiple of scale."""
    names, pairs = [], []
    for name, hr in images:
        hr_c, lr = bicubic_downscale(hr, scale, name=name)
        names.append(name)
        pairs.append((lr, hr_c))
    return names, pairs


def train_sr_teacher(out: str | os.PathLike, scale: int = 4, data: str | None = None, nf: int = 32,
                     nb: int = 2, gc: int = 16, steps: int = 1500, patch: int = 32, batch: int = 16,
                     lr: float = 5e-4, seed: int = 0, device: str = "cpu", quiet: bool = False) -> Path:
    """Train an RRDBNet teacher and write it as safetensors (BasicSR key names) to `out`.

    A checkpoint beside `out` (`<out>.ckpt`) makes the run resumable; it is removed at the end.
    """
    from ..data.bundled import bundled_photographs
    from ..data.images import load_folder

    out = Path(out)
    images = load_folder(data, min_size=patch * scale) if data else bundled_photographs("train")
    names, pairs = training_pairs(images, scale)
    torch.manual_seed(seed)
    model = RRDBNet(nf=nf, nb=nb, gc=gc, scale=scale)
    sampler = PatchSampler(pairs, patch, scale, batch, seed, names=names)
    # the hyper-parameters are in the name: a checkpoint of another architecture is never resumed
    ckpt = out.with_name(f"{out.name}.nf{nf}-nb{nb}-gc{gc}-x{scale}-p{patch}-b{batch}-s{steps}.ckpt")
    fit_pixels(model, sampler, TrainConfig(steps=steps, patch=patch, batch=batch, lr=lr), ckpt,
               "train teacher", device=device, quiet=quiet)
    save_safetensors_atomic(model.state_dict(), out, {"arch": "esrgan", "nf": str(nf), "nb": str(nb), "gc": str(gc),
                                                      "scale": str(scale), "steps": str(steps), "seed": str(seed)})
    remove_checkpoint(ckpt)  # and its previous copy
    return out

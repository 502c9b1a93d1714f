"""Training batches labelled by the teacher on the very crop the student sees (translation).

Why: a translation teacher with instance norm and stride-2 layers is neither crop-consistent nor
shift-equivariant. On the style teacher in ../shared, the output of a 128 px crop is 14.6-20.6 dB
PSNR from the same region of the whole-image output, and moving the input by one pixel changes the
output by 16-21 dB (bench/teacher_consistency.py). Crops of whole-image outputs therefore ask the
student for labels no function of its input can produce, and cap its fit near those numbers.
Labelling each crop with the teacher itself makes every label a true teacher output for exactly
that input, so flips, rotations and rescaling become valid augmentations too.

Each item: an image drawn in proportion to its area, a square side drawn log-uniformly between the
patch size and the image's shorter side (native detail up to the whole image), a random position,
an antialiased resize to the patch size, a random flip and quarter turn; then one teacher pass
over the batch. Deterministic in (seed, rank), resumable through `state_dict`, like PatchSampler.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError


class TeacherViewSampler:
    """Batches (x, teacher(x)) of random views of `images`; the same interface as PatchSampler."""

    def __init__(self, images: Sequence[torch.Tensor], teacher, patch: int, batch_size: int, seed: int,
                 names: Sequence[str] | None = None, rank: int = 0, world_size: int = 1, augment: bool = True,
                 rescale: bool = True):
        if not images:
            raise UserError("no training images to sample views from; point --train-data at a folder of images")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.names = list(names) if names is not None else [f"image #{i}" for i in range(len(images))]
        for img, name in zip(images, self.names):
            if min(img.shape[-2:]) < patch:
                raise UserError(f"{name} is {img.shape[-1]}x{img.shape[-2]} px, smaller than the {patch} px "
                                "training crops; use larger images or a smaller --patch")
        self.images = list(images)
        self.teacher, self.patch, self.batch_size = teacher, int(patch), int(batch_size)
        self.augment, self.rescale = augment, rescale
        self.scale = 1
        areas = np.array([im.shape[-2] * im.shape[-1] for im in self.images], dtype=np.float64)
        self._probs = areas / areas.sum()
        self._rng = np.random.default_rng([int(seed), int(rank)])

    def _view(self) -> torch.Tensor:
        rng, p = self._rng, self.patch
        img = self.images[int(rng.choice(len(self.images), p=self._probs))]
        h, w = img.shape[-2:]
        hi = min(h, w)
        side = int(round(p * (hi / p) ** rng.random())) if self.rescale and hi > p else p
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        v = img[:, y:y + side, x:x + side]
        if side != p:
            v = F.interpolate(v[None], size=(p, p), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
        if self.augment:
            if rng.integers(0, 2):
                v = v.flip(-1)
            k = int(rng.integers(0, 4))
            if k:
                v = torch.rot90(v, k, dims=(-2, -1))
        return v

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        from ..arch.cost import module_device

        x = torch.stack([self._view() for _ in range(self.batch_size)]).contiguous()
        t = self.teacher.predict(x.to(module_device(self.teacher))).cpu()
        return x, t

    def state_dict(self) -> dict:
        from .patches import rng_state

        return rng_state(self._rng)

    def load_state_dict(self, d: dict) -> None:
        from .patches import set_rng_state

        set_rng_state(self._rng, d)

    def __iter__(self):
        while True:
            yield self.next_batch()

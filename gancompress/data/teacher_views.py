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

`reuse` R > 1 keeps a pool of 2 x batch x R labelled views: each batch labels only batch/R new
views on average (replacing the oldest; with R > batch, one view every R/batch steps) and draws
the batch from the pool, so every view is used about R times and the teacher costs 1/R of a pass
per step. The labels stay exact (each is the teacher's
output for that view); what is traded is view diversity per step. The pool is part of the state.
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
                 rescale: bool = True, reuse: int = 1):
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
        if int(reuse) < 1:
            raise UserError(f"--label-reuse must be at least 1, got {reuse}")
        self.reuse = int(reuse)
        self._pool: tuple[torch.Tensor, torch.Tensor] | None = None  # (views, labels) when reuse > 1
        self._next = 0  # the pool slot replaced next
        self._refreshes = 0  # batches drawn from the pool: step k labels floor((k+1)B/R) - floor(kB/R) views
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

    def _labelled(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        from ..arch.cost import module_device

        x = torch.stack([self._view() for _ in range(n)]).contiguous()
        return x, self.teacher.predict(x.to(module_device(self.teacher))).cpu()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reuse == 1:
            return self._labelled(self.batch_size)
        size = 2 * self.batch_size * self.reuse
        if self._pool is None:  # filled batch by batch, so one teacher pass stays batch-sized
            parts = [self._labelled(self.batch_size) for _ in range(2 * self.reuse)]
            self._pool = (torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts]))
        else:  # batch/reuse new views per step on average, also when that is below one
            k, b, r = self._refreshes, self.batch_size, self.reuse
            fresh = (k + 1) * b // r - k * b // r
            self._refreshes += 1
            if fresh:
                x, t = self._labelled(fresh)
                slots = (self._next + torch.arange(fresh)) % size
                self._pool[0][slots], self._pool[1][slots] = x, t
                self._next = int(slots[-1] + 1) % size
        pick = torch.from_numpy(self._rng.choice(size, self.batch_size, replace=False))
        return self._pool[0][pick], self._pool[1][pick]

    def state_dict(self) -> dict:
        from .patches import rng_state

        d = rng_state(self._rng)
        if self._pool is not None:
            d = {**d, "pool_x": self._pool[0], "pool_t": self._pool[1], "pool_next": self._next,
                 "pool_refreshes": self._refreshes}
        return d

    def load_state_dict(self, d: dict) -> None:
        from .patches import set_rng_state

        d = dict(d)
        if "pool_x" in d:
            self._pool, self._next = (d.pop("pool_x"), d.pop("pool_t")), int(d.pop("pool_next"))
            self._refreshes = int(d.pop("pool_refreshes", 0))
        set_rng_state(self._rng, d)

    def __iter__(self):
        while True:
            yield self.next_batch()

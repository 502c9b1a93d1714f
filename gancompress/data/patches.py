"""Random aligned patch batches for training SR students, and the AGD data split.

A training pair is (lr, target): target is what the student should produce from lr (the HR
photo or the teacher's output), exactly `scale` times larger. Patches are cut at matching
positions (LR crop at (y, x) <-> target crop at (y*scale, x*scale)) and flipped/rotated with the
same transform, so the pair stays pixel-aligned.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import UserError


def _pair_scale(lr: torch.Tensor, target: torch.Tensor, name: str) -> int:
    lh, lw = lr.shape[-2:]
    th, tw = target.shape[-2:]
    if lh == 0 or lw == 0 or th % lh or tw % lw or th // lh != tw // lw:
        raise UserError(
            f"{name}: target {tw}x{th} px is not a whole multiple of its LR {lw}x{lh} px; "
            f"crop the HR image to a multiple of the scale (bicubic_downscale does this)"
        )
    return th // lh


class PatchSampler:
    """Draw batches of aligned random (lr, target) patches.

    * Images are chosen with probability proportional to their LR area, so every pixel is
      equally likely and one big photo is not under-sampled next to many small ones.
    * With `augment`, each patch gets a random horizontal flip and a random rot90 (0-3 quarter
      turns): together the 8 symmetries of the square, the same for LR and target.
    * Deterministic given (seed, rank): the generator is seeded with ``[seed, rank]``
      (numpy SeedSequence), so under DDP each rank draws different patches, and a rerun with the
      same seed draws the same ones. `world_size` is only checked (rank < world_size).
    * `align`: patch corners on multiples of `align` LR pixels. A translation generator with two
      stride-2 layers draws a pattern that repeats every 4 px (ConvTranspose2d): moving its input by
      1-2 px changes its output by ~25 dB PSNR, by 4 px ~50 dB (BENCHMARKS.md). Crops at any offset
      ask the student for four phases of that pattern at once; aligned crops keep the phase the
      whole-image output has.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
        lr_patch: int,
        scale: int,
        batch_size: int,
        seed: int,
        augment: bool = True,
        names: Sequence[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
        align: int = 1,
    ) -> None:
        if not pairs:
            raise UserError("no training images to sample patches from; point the training data option at a folder of images")
        if names is not None and len(names) != len(pairs):
            raise ValueError(f"got {len(names)} names for {len(pairs)} pairs")
        if lr_patch < 1 or batch_size < 1:
            raise ValueError(f"lr_patch and batch_size must be >= 1, got {lr_patch}, {batch_size}")
        if align < 1:
            raise ValueError(f"align must be >= 1, got {align}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.names = list(names) if names is not None else [f"image #{i}" for i in range(len(pairs))]
        self.lr_patch = int(lr_patch)
        self.scale = int(scale)
        self.batch_size = int(batch_size)
        self.augment = augment
        self.align = int(align)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for (lr, target), name in zip(pairs, self.names):
            s = _pair_scale(lr, target, name)
            if s != self.scale:
                raise UserError(
                    f"{name}: target is x{s} its LR, but the sampler was set up for x{self.scale}; "
                    f"check --scale"
                )
            lh, lw = lr.shape[-2:]
            if lh < self.lr_patch or lw < self.lr_patch:
                th, tw = target.shape[-2:]
                raise UserError(
                    f"{name} is too small for {self.lr_patch}px LR patches: LR {lw}x{lh} px "
                    f"(HR {tw}x{th}); use images at least {self.lr_patch * self.scale}x"
                    f"{self.lr_patch * self.scale} px or a smaller --patch size"
                )
            self.pairs.append((lr, target))
        areas = np.array([p[0].shape[-2] * p[0].shape[-1] for p in self.pairs], dtype=np.float64)
        self._probs = areas / areas.sum()
        self._rng = np.random.default_rng([int(seed), int(rank)])

    def _one(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng, p, s = self._rng, self.lr_patch, self.scale
        idx = int(rng.choice(len(self.pairs), p=self._probs))
        lr, target = self.pairs[idx]
        lh, lw = lr.shape[-2:]
        a = self.align
        y = a * int(rng.integers(0, (lh - p) // a + 1))
        x = a * int(rng.integers(0, (lw - p) // a + 1))
        lr_c = lr[..., y : y + p, x : x + p]
        t_c = target[..., y * s : (y + p) * s, x * s : (x + p) * s]
        if self.augment:
            flip = bool(rng.integers(0, 2))
            k = int(rng.integers(0, 4))
            if flip:
                lr_c, t_c = lr_c.flip(-1), t_c.flip(-1)
            if k:
                lr_c, t_c = torch.rot90(lr_c, k, dims=(-2, -1)), torch.rot90(t_c, k, dims=(-2, -1))
        return lr_c, t_c

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr_batch (B, C, p, p), target_batch (B, C, p*scale, p*scale)), contiguous float tensors."""
        items = [self._one() for _ in range(self.batch_size)]
        lr_b = torch.stack([a for a, _ in items]).contiguous()
        t_b = torch.stack([b for _, b in items]).contiguous()
        return lr_b, t_b

    def state_dict(self) -> dict:
        """The generator's position, so an interrupted training run resumes on the same patches."""
        return rng_state(self._rng)

    def load_state_dict(self, d: dict) -> None:
        set_rng_state(self._rng, d)

    def __iter__(self):
        while True:
            yield self.next_batch()


def rng_state(rng: np.random.Generator) -> dict:
    """A numpy generator's position as plain values (checkpoints load with weights_only=True)."""
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"], "state": str(st["state"]["state"]),
            "inc": str(st["state"]["inc"]), "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def set_rng_state(rng: np.random.Generator, d: dict) -> None:
    rng.bit_generator.state = {"bit_generator": d["bit_generator"],
                               "state": {"state": int(d["state"]), "inc": int(d["inc"])},
                               "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}


def split_pairs(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    seed: int,
    names: Sequence[str] | None = None,
):
    """Split training pairs into two disjoint halves (AGD: one to train weights, one for the architecture).

    With two or more images the split is by image (shuffled with `seed`; the first half gets
    the extra one when the count is odd), so no image is in both halves. With a single image it
    is cut into a left and a right half (the LR cut at W//2, the target at W//2 * scale).
    Returns (half_a, half_b); if `names` is given, returns (half_a, half_b, names_a, names_b).
    """
    pairs = list(pairs)
    if names is not None and len(names) != len(pairs):
        raise ValueError(f"got {len(names)} names for {len(pairs)} pairs")
    with_names = names is not None
    names = list(names) if names is not None else [f"image #{i}" for i in range(len(pairs))]
    if not pairs:
        raise UserError("no training images to split; point the training data option at a folder of images")
    if len(pairs) == 1:
        lr, target = pairs[0]
        s = _pair_scale(lr, target, names[0])
        lw = lr.shape[-1]
        if lw < 2:
            raise UserError(f"{names[0]} is too narrow to split into two halves; use a larger image")
        cut = lw // 2
        a = [(lr[..., :cut], target[..., : cut * s])]
        b = [(lr[..., cut:], target[..., cut * s :])]
        na, nb = [f"{names[0]} (left half)"], [f"{names[0]} (right half)"]
    else:  # by source photograph: the views of one photo (data/translate.py) stay on one side
        from .translate import source_of

        keys = [source_of(n) for n in names]
        if len(set(keys)) == 1:
            keys = list(range(len(names)))  # all views of one photo: split the views themselves
        sources = list(dict.fromkeys(keys))
        order = np.random.default_rng(int(seed)).permutation(len(sources)).tolist()
        side_a = {sources[j] for j in order[: (len(sources) + 1) // 2]}
        ia = [i for i, k in enumerate(keys) if k in side_a]
        ib = [i for i, k in enumerate(keys) if k not in side_a]
        a, b = [pairs[i] for i in ia], [pairs[i] for i in ib]
        na, nb = [names[i] for i in ia], [names[i] for i in ib]
    return (a, b, na, nb) if with_names else (a, b)

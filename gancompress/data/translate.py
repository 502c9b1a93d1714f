"""Image folders for translation: one fixed square size for every image.

Resize policy (stated in messages and the README): each image's shorter side is resized to `size`
(bilinear, antialiased), then the centre `size` x `size` square is kept: no aspect distortion, at
most the ends of the long side are lost. An image that has to be enlarged more than 2x, or whose
long side is more than twice its short side, is used but named in a warning, since its result will
be blurry or heavily cropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError, warn
from .images import list_images, load_folder, load_image

RESIZE_POLICY = "shorter side resized to SIZE, centre SIZE x SIZE crop"


def square(img: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, size, size) by the resize policy above."""
    h, w = img.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False,
                            antialias=s < 1)[0].clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[:, top:top + size, left:left + size].contiguous()


def _warn_odd(name: str, img: torch.Tensor, size: int) -> None:
    h, w = img.shape[-2:]
    if min(h, w) * 2 < size:
        warn(f"{name} is {w}x{h} px: enlarged more than 2x to {size} px ({RESIZE_POLICY}); "
             "its result will be blurry")
    elif max(h, w) > 2 * min(h, w):
        warn(f"{name} is {w}x{h} px: the centre square keeps less than half of it ({RESIZE_POLICY})")


def load_square_folder(folder: str | os.PathLike, size: int, hint: str) -> list[tuple[str, torch.Tensor]]:
    """Every readable image of `folder` as (name, (3, size, size))."""
    out = []
    for name, img in load_folder(folder, hint=hint):
        _warn_odd(name, img, size)
        out.append((name, square(img, size)))
    return out


def load_square_paths(paths: list[Path], size: int):
    for p in paths:
        yield p.name, square(load_image(p), size)


def paired_files(dir_a: str | os.PathLike, dir_b: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Match the images of two folders by file stem (a.png <-> a.jpg); the first image without a
    partner is named in the error."""
    a = {p.stem: p for p in list_images(dir_a, hint="point --domain-a at a folder of input images")}
    b = {p.stem: p for p in list_images(dir_b, hint="point --domain-b at a folder of target images")}
    for stem in sorted(a):
        if stem not in b:
            raise UserError(f"--paired: {a[stem]} has no partner named {stem}.* in {dir_b}; pairs are "
                            "matched by file name (without extension)")
    for stem in sorted(b):
        if stem not in a:
            raise UserError(f"--paired: {b[stem]} has no partner named {stem}.* in {dir_a}; pairs are "
                            "matched by file name (without extension)")
    return [(a[s], b[s]) for s in sorted(a)]

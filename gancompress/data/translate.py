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
    return [(name, square(img, size)) for name, img in load_warned_folder(folder, size, hint)]


def load_warned_folder(folder, size: int, hint: str) -> list[tuple[str, torch.Tensor]]:
    """Every readable image of `folder` at its own size, with `load_square_folder`'s warnings."""
    out = load_folder(folder, hint=hint)
    for name, img in out:
        _warn_odd(name, img, size)
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


VIEW_SEP = "@view"  # "photo.png@view3": view 3 of photo.png (views of one photo stay on one side of a split)


def source_of(name: str) -> str:
    """The photograph a training view was cut from."""
    return name.split(VIEW_SEP)[0]


def _jitter_colour(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random saturation (x0.6-1.4), hue rotation (+-30 degrees about the grey axis) and gamma
    (0.7-1.4): inputs the teacher has never been shown as such, but whose outputs it defines."""
    u = torch.rand(3, generator=g)
    sat, angle, gamma = 0.6 + 0.8 * u[0], (u[1] - 0.5) * (torch.pi / 3), 0.7 * 2 ** u[2].item()
    grey = img.mean(0, keepdim=True)
    img = grey + sat * (img - grey)
    # rotation about (1, 1, 1)/sqrt(3) by `angle` (Rodrigues), which keeps grey pixels grey
    k = torch.ones(3) / 3 ** 0.5
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = torch.eye(3) + torch.sin(angle) * kx + (1 - torch.cos(angle)) * (kx @ kx)
    img = torch.einsum("ij,jhw->ihw", rot, img)
    return img.clamp(0, 1) ** gamma


def training_views(images: list[tuple[str, torch.Tensor]], size: int, views: int, seed: int,
                   colour: bool = False) -> list[tuple[str, torch.Tensor]]:
    """`views` size x size squares of every photograph: the whole-photo square of `square`, then
    views - 1 random crops whose side is drawn log-uniformly between `size` px of the original
    (native resolution) and its shorter side (the whole photo), resized to `size`.

    Why: the student only has to agree with the teacher on the inputs it will see, and a few
    downscaled whole photographs cover few of them (textures at native resolution, close-ups).
    Every view is labelled by the teacher, so any view is a valid training pair. Deterministic in
    `seed`; with `colour`, views after the first also get a random colour jitter."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for name, img in images:
        out.append((f"{name}{VIEW_SEP}0" if views > 1 else name, square(img, size)))
        h, w = img.shape[-2:]
        lo, hi = min(size, min(h, w)), min(h, w)
        for v in range(1, views):
            u = torch.rand(3, generator=g)
            side = int(round(lo * (hi / lo) ** u[0].item()))
            top, left = int(u[1] * (h - side + 1)) if h > side else 0, int(u[2] * (w - side + 1)) if w > side else 0
            crop = square(img[:, top:top + side, left:left + side], size)
            out.append((f"{name}{VIEW_SEP}{v}", _jitter_colour(crop, g) if colour else crop))
    return out

"""Visual comparisons for the report: labelled image rows and a textured crop picker.

Callers pass tensors already at the size they want shown (e.g. the LR nearest- or
bicubic-upscaled to HR size): this module never resizes, so what is shown is exactly what was
measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.images import to_pil

_GAP = 6  # px between panels and around the row
_BG = (255, 255, 255)
_FG = (0, 0, 0)


def pick_crop(hr: torch.Tensor, size: int, seed: int = 0, candidates: int = 16) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a textured `size` x `size` window of `hr`.

    Flat sky shows no difference between methods, so among `candidates` random windows (plus
    the centre) the one with the highest luminance variance wins. Deterministic given `seed`.
    If the image is smaller than `size`, the window shrinks to fit.
    """
    h, w = hr.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    lum = hr.detach().float().cpu()
    if lum.dim() == 3 and lum.shape[0] == 3:
        lum = 0.299 * lum[0] + 0.587 * lum[1] + 0.114 * lum[2]
    elif lum.dim() == 3:
        lum = lum.mean(0)
    rng = np.random.default_rng(int(seed))
    spots = [((h - ch) // 2, (w - cw) // 2)]
    for _ in range(candidates):
        spots.append((int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))))
    best, best_var = spots[0], -1.0
    for top, left in spots:
        v = float(lum[top : top + ch, left : left + cw].var()) if ch * cw > 1 else 0.0
        if v > best_var:
            best, best_var = (top, left), v
    return best[0], best[1], ch, cw


def label_font(height: int):
    try:
        return ImageFont.load_default(size=max(10, height))
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def side_by_side(
    crops: Sequence[tuple[str, torch.Tensor]],
    path: str | os.PathLike,
    crop: tuple[int, int, int, int] | None = None,
) -> Path:
    """Write one PNG: the images in a row, each with its label above it.

    `crops` is [(label, (3, H, W) tensor)]; `crop` = (top, left, height, width), e.g. from
    `pick_crop`, is applied to every image first (all must then share the same coordinates,
    i.e. the same size). Images of different heights are top-aligned on a white background.
    """
    if not crops:
        raise ValueError("side_by_side needs at least one image")
    panels: list[tuple[str, Image.Image]] = []
    for label, img in crops:
        if img.dim() == 4 and img.shape[0] == 1:
            img = img[0]
        if crop is not None:
            top, left, ch, cw = crop
            img = img[..., top : top + ch, left : left + cw]
        panels.append((str(label), to_pil(img).convert("RGB")))

    max_h = max(im.height for _, im in panels)
    font = label_font(max(12, min(24, max_h // 12)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_sizes = []
    for label, _ in panels:
        x0, y0, x1, y1 = probe.textbbox((0, 0), label, font=font)
        text_sizes.append((x1 - x0, y1 - y0, x0, y0))
    text_h = max(t[1] for t in text_sizes) + _GAP

    widths = [max(im.width, ts[0]) for (_, im), ts in zip(panels, text_sizes)]
    total_w = sum(widths) + _GAP * (len(panels) + 1)
    total_h = _GAP + text_h + max_h + _GAP
    sheet = Image.new("RGB", (total_w, total_h), _BG)
    draw = ImageDraw.Draw(sheet)
    x = _GAP
    for (label, im), (tw, _th, tx0, ty0), pw in zip(panels, text_sizes, widths):
        draw.text((x + (pw - tw) // 2 - tx0, _GAP - ty0), label, fill=_FG, font=font)
        sheet.paste(im, (x + (pw - im.width) // 2, _GAP + text_h))
        x += pw + _GAP

    if not hasattr(path, "write"):  # a file object is written as given (the HTML report inlines the PNG)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


HEAT_MAX = 0.2  # |student - teacher| (mean over RGB, [0, 1] scale) shown at full heat


def error_heatmap(a: torch.Tensor, b: torch.Tensor, vmax: float = HEAT_MAX) -> torch.Tensor:
    """|a - b| (mean over channels) as a (3, H, W) heat image: black (equal) -> red -> yellow ->
    white (>= vmax), one fixed scale so maps of different images and runs compare."""
    e = ((a.float() - b.float()).abs().mean(0) / vmax).clamp(0, 1)
    return torch.stack([(3 * e).clamp(0, 1), (3 * e - 1).clamp(0, 1), (3 * e - 2).clamp(0, 1)])


def worst_window(a: torch.Tensor, b: torch.Tensor, size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the `size` x `size` window where |a - b| is largest on average."""
    e = (a.float() - b.float()).abs().mean(0)[None, None]
    h, w = e.shape[-2:]
    s = max(1, min(size, h, w))
    stride = max(1, s // 4)
    mean = torch.nn.functional.avg_pool2d(e, s, stride=stride)[0, 0]
    i = int(mean.flatten().argmax())
    return (i // mean.shape[1]) * stride, (i % mean.shape[1]) * stride, s, s


def zoom(img: torch.Tensor, window: tuple[int, int, int, int], factor: int = 3) -> torch.Tensor:
    """The window of `img`, enlarged `factor` times with nearest neighbours (pixels stay pixels)."""
    top, left, ch, cw = window
    part = img[..., top:top + ch, left:left + cw]
    return part.repeat_interleave(factor, -2).repeat_interleave(factor, -1)

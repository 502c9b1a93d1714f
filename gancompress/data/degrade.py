"""Bicubic degradation, the standard way SR benchmarks make low-resolution inputs.

`bicubic_downscale` resizes the 8-bit image with PIL's BICUBIC filter (Keys kernel, a = -0.5,
as MATLAB's `imresize`). When shrinking, PIL widens the kernel by the scale factor
(antialiasing), as `imresize` does by default, so LR images made here match the published
benchmark LR files: against shared Set5/Set14 x4 LR, 49-56 dB PSNR, interior pixels within
1-4 levels; the only larger differences are in the outermost 2 px (MATLAB pads symmetrically,
PIL renormalises the kernel). The LR is quantized to 8 bits, as if saved as PNG.

`bicubic_upscale` is the bicubic baseline; see its docstring for why it defaults to torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import UserError
from .images import from_pil, to_pil


def _check_scale(scale: int) -> int:
    if int(scale) != scale or scale < 1:
        raise UserError(f"scale must be a positive whole number, got {scale}; use e.g. --scale 4")
    return int(scale)


def crop_to_multiple(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right edge so H and W are multiples of `scale` (top-left anchored)."""
    scale = _check_scale(scale)
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def bicubic_downscale(
    hr: torch.Tensor, scale: int, name: str = "image"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hr_cropped, lr): HR cropped to a multiple of `scale`, and its antialiased bicubic downscale.

    The cropped HR is returned too because every HR/LR pair must line up pixel-for-pixel
    (LR size * scale == HR size) for training and for PSNR.
    """
    scale = _check_scale(scale)
    h, w = hr.shape[-2:]
    if h < scale or w < scale:
        raise UserError(
            f"{name} is {w}x{h} px, too small to downscale by x{scale}; "
            f"use images at least {scale}x{scale} px"
        )
    hr_c = crop_to_multiple(hr, scale)
    hc, wc = hr_c.shape[-2:]
    lr = to_pil(hr_c).convert("RGB").resize((wc // scale, hc // scale), Image.Resampling.BICUBIC)
    return hr_c, from_pil(lr)


def bicubic_upscale(lr: torch.Tensor, scale: int, method: str = "torch") -> torch.Tensor:
    """Bicubic x`scale` enlargement of an LR image: the baseline every SR model must beat.

    Two bicubic flavours give different baselines, so the choice is explicit:

    * ``"torch"`` (default): ``F.interpolate(mode="bicubic", align_corners=False)``, Keys
      a = -0.75. This is the number the project's reference figures use (PSNR-Y, border 4:
      Set5 x4 28.63 dB, Set14 x4 26.22 dB).
    * ``"pil"``: PIL BICUBIC on the uint8 image, Keys a = -0.5 like MATLAB ``imresize``; it
      reproduces the "Bicubic" row of SR papers (Set5 x4 28.43 dB, papers: 28.42; Set14 x4
      26.09 dB) and is about 0.2 dB lower than ``"torch"``.

    Output is clamped to [0, 1] (bicubic overshoots at edges) but not quantized.
    """
    scale = _check_scale(scale)
    h, w = lr.shape[-2:]
    if method == "torch":
        x = lr.detach().float().unsqueeze(0) if lr.dim() == 3 else lr.detach().float()
        up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False, antialias=False)
        up = up.clamp_(0.0, 1.0)
        return up[0] if lr.dim() == 3 else up
    if method == "pil":
        up = to_pil(lr).convert("RGB").resize((w * scale, h * scale), Image.Resampling.BICUBIC)
        return from_pil(up)
    raise ValueError(f"unknown bicubic method {method!r}; use 'torch' or 'pil'")

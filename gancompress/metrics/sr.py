"""Super-resolution fidelity metrics, in the convention of the SR literature.

Numbers here are meant to be comparable with published tables, so they follow the usual
MATLAB/BasicSR evaluation:

* both images are first quantized to 8-bit levels (as the SR output would be saved as PNG);
* RGB is converted to the MATLAB (BT.601, studio-swing) luma Y in [16, 235] on a [0, 255] scale;
* `border` pixels (normally = the scale factor) are cropped from every side;
* PSNR uses peak 255; SSIM uses an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  L = 255, with 'valid' filtering (no padding), averaged over the SSIM map.

PSNR of two identical images is `math.inf` (not capped): it is the honest value, and a cap
would silently bias averages. Callers that average over images should expect it only when an
output is bit-identical to its reference.

Inputs are (3, H, W) float tensors in [0, 1], or (N, 3, H, W) batches, for which the mean over
the N images is returned. Shapes must be equal (no silent resizing): ValueError otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _quantize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> [0, 255] float64 on integer levels (clamped, rounded)."""
    return torch.round(img.detach().to(torch.float64).clamp(0.0, 1.0) * 255.0)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """MATLAB `rgb2ycbcr` luma: Y = 16 + 65.481 R + 128.553 G + 24.966 B, R,G,B in [0, 1].

    Input (3, H, W) or (N, 3, H, W) in [0, 1]; output (H, W) or (N, H, W) in [16, 235] (on the
    [0, 255] scale), not rounded (as BasicSR does). No quantization happens here.
    """
    if img.dim() not in (3, 4) or img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects (3,H,W) or (N,3,H,W) RGB, got shape {tuple(img.shape)}")
    img = img.to(torch.float64) if img.dtype != torch.float64 else img
    r, g, b = img.unbind(dim=-3)
    return 16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _prepare(sr: torch.Tensor, hr: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes, quantize to 8-bit levels in [0, 255], crop the border; returns (N, 3, h, w)."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.dim() == 3:
        sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
    if sr.dim() != 4 or sr.shape[1] != 3:
        raise ValueError(f"expected (3,H,W) or (N,3,H,W) RGB tensors, got {tuple(sr.shape)}")
    border = int(border)
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    h, w = sr.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"image {w}x{h} is too small to crop a {border}px border")
    sr_q, hr_q = _quantize(sr.cpu()), _quantize(hr.cpu())
    if border:
        sr_q = sr_q[..., border : h - border, border : w - border]
        hr_q = hr_q[..., border : h - border, border : w - border]
    return sr_q, hr_q


def _psnr_from_mse(mse: torch.Tensor) -> list[float]:
    out = []
    for m in mse.tolist():
        out.append(math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m))
    return out


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, border: int = 0) -> float:
    """PSNR (dB) on the MATLAB Y channel, peak 255, after quantizing and cropping `border` px."""
    sr_q, hr_q = _prepare(sr, hr, border)
    # quantized levels / 255 gives the exact [0, 1] values a saved PNG would load as
    y_sr, y_hr = rgb_to_y(sr_q / 255.0), rgb_to_y(hr_q / 255.0)
    mse = ((y_sr - y_hr) ** 2).flatten(1).mean(dim=1)
    return _mean(_psnr_from_mse(mse))


def psnr_rgb(sr: torch.Tensor, hr: torch.Tensor, border: int = 0) -> float:
    """PSNR (dB) over all three RGB channels, peak 255, after quantizing and cropping `border` px."""
    sr_q, hr_q = _prepare(sr, hr, border)
    mse = ((sr_q - hr_q) ** 2).flatten(1).mean(dim=1)
    return _mean(_psnr_from_mse(mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).view(1, 1, size, size)


def _ssim_map_mean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image for (N, 1, H, W) float64 tensors on [0, 255]; 'valid' filtering."""
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    win = _gaussian_window()
    mu_x = F.conv2d(x, win)
    mu_y = F.conv2d(y, win)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = F.conv2d(x * x, win) - mu_xx
    s_yy = F.conv2d(y * y, win) - mu_yy
    s_xy = F.conv2d(x * y, win) - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * s_xy + c2)) / ((mu_xx + mu_yy + c1) * (s_xx + s_yy + c2))
    return ssim_map.flatten(1).mean(dim=1)


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, border: int = 0) -> float:
    """SSIM on the MATLAB Y channel (11x11 Gaussian, sigma 1.5, 'valid'), after quantizing and cropping."""
    sr_q, hr_q = _prepare(sr, hr, border)
    if min(sr_q.shape[-2:]) < 11:
        raise ValueError(
            f"image is {sr_q.shape[-1]}x{sr_q.shape[-2]} after cropping the border; SSIM needs at least 11x11"
        )
    y_sr = rgb_to_y(sr_q / 255.0).unsqueeze(1)
    y_hr = rgb_to_y(hr_q / 255.0).unsqueeze(1)
    return _mean(_ssim_map_mean(y_sr, y_hr).tolist())

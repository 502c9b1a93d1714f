"""Fake quantization for quantization-aware training (GAN Slimming's GS-8, AGD's int8 layers, `--qat`).

Weights: symmetric, per output channel, on the int8 export's grid ([-64, 64]: INT8_WEIGHT_QMAX),
applied as a parametrization so the conv sees round-to-grid weights. Activations: 8-bit
asymmetric over a running [min, max] range (exponential average while training), applied to every
conv's input by a forward pre-hook. Both pass gradients straight through the rounding (STE).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

QUANT_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """q in the forward pass, identity gradient in the backward pass."""
    return x + (q - x).detach()


# The int8 export quantizes weights to [-64, 64] (ONNX Runtime's reduce_range, export/int8.py: on
# AVX2 CPUs without VNNI the u8 x s8 kernels add pairs of products in int16 and saturate with full
# 8-bit weights); 8-bit fake quantization trains on that same grid, so the export does not re-round.
INT8_WEIGHT_QMAX = 64


def fake_quant_weight(w: torch.Tensor, bits: int = 8, axis: int = 0) -> torch.Tensor:
    """Symmetric per-channel round-to-grid: scale = max|w| / qmax per `axis` slice (qmax: the int8
    export's weight range for 8 bits, 2^(bits-1) - 1 otherwise)."""
    qmax = INT8_WEIGHT_QMAX if bits == 8 else 2 ** (bits - 1) - 1
    dims = [d for d in range(w.dim()) if d != axis]
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / qmax
    return _ste(w, torch.clamp(torch.round(w / scale), -qmax, qmax) * scale)


def fake_quant_act(x: torch.Tensor, lo: float, hi: float, bits: int = 8) -> torch.Tensor:
    """Asymmetric round-to-grid over [lo, hi] (the range always includes 0, as uint8 QDQ does)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2 ** bits - 1
    scale = max(hi - lo, 1e-8) / levels
    zero = round(-lo / scale)
    q = (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale
    return _ste(x, q)


class WeightFakeQuant(nn.Module):
    def __init__(self, bits: int = 8, axis: int = 0):
        super().__init__()
        self.bits, self.axis = bits, axis

    def forward(self, w):
        return fake_quant_weight(w, self.bits, self.axis)


class ActRange(nn.Module):
    """Running input range of one layer; the pre-hook quantizes the input with it."""

    def __init__(self, bits: int = 8, momentum: float = 0.1):
        super().__init__()
        self.bits, self.momentum = bits, momentum
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def hook(self, module, args):
        x = args[0]
        if module.training:
            lo, hi = x.detach().min(), x.detach().max()
            if not bool(self.seen):
                self.lo.copy_(lo)
                self.hi.copy_(hi)
                self.seen.fill_(True)
            else:
                self.lo.lerp_(lo, self.momentum)
                self.hi.lerp_(hi, self.momentum)
        if not bool(self.seen):
            return None
        return (fake_quant_act(x, float(self.lo), float(self.hi), self.bits),) + tuple(args[1:])


def enable_fake_quant(model: nn.Module, bits: int = 8, skip: tuple = (), only: tuple | None = None) -> list[str]:
    """Quantize every conv's weights and inputs during forward (in place). `skip`: module-name
    prefixes left in float (e.g. the layers that write the output image); `only`: if given, just
    the convs under these prefixes. Returns the names."""
    done = []
    for name, m in list(model.named_modules()):
        if not isinstance(m, QUANT_TYPES) or any(name.startswith(s) for s in skip):
            continue
        if parametrize.is_parametrized(m, "weight"):  # already quantized (e.g. --qat on a precision-searched layer)
            continue
        if only is not None and not any(name == o or name.startswith(o + ".") for o in only):
            continue
        axis = 1 if isinstance(m, nn.ConvTranspose2d) else 0  # ConvTranspose2d weights are (in, out, k, k)
        parametrize.register_parametrization(m, "weight", WeightFakeQuant(bits, axis))
        rng = ActRange(bits)
        m.add_module("act_range", rng)
        m.register_forward_pre_hook(rng.hook)
        done.append(name)
    return done


def enable_export_qat(model: nn.Module, task: str) -> list[str]:
    """Fake quantization on the convs the task's default int8 export recipe quantizes (in place),
    so quantization-aware retraining (`--qat`) sees the rounding the deployed model applies; the
    layers the recipe keeps float (SR: the bicubic skip; translation: the output conv and, as it
    quantizes Conv only, every ConvTranspose2d) stay float. Returns the quantized names."""
    from ..export.int8 import DEFAULT_RECIPE, RECIPES

    _, quantized_ops, floats = RECIPES[DEFAULT_RECIPE[task]]
    skip = [f.strip("/") for f in floats[task]]  # ONNX node prefix "/skip/" is module "skip"
    if "ConvTranspose" not in quantized_ops:
        skip += [n for n, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)]
    return enable_fake_quant(model, 8, skip=tuple(skip))


def int8_layer_names(spec) -> list[str]:
    """Module names of the layers an AGD precision search chose int8 for (`cells.C.layers.L`)."""
    from ..arch.ops import OPS

    return [f"cells.{c}.layers.{l}" for c, l, _, layer in spec.layers() if OPS[layer.op].bits == 8]


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Bake the quantized weights in and remove every fake-quant hook and buffer (for export)."""
    for m in model.modules():
        if isinstance(m, QUANT_TYPES) and parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            m._forward_pre_hooks.clear()
            if hasattr(m, "act_range"):
                del m.act_range
    return model

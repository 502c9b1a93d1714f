"""ArchSpec -> plain nn.Module. One function, readable top to bottom, no search machinery inside."""

from __future__ import annotations

import torch
from torch import nn

from .ops import OPS, act
from .spec import ArchSpec


class Cell(nn.Module):
    """A chain of layers with a residual connection around it."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = layer(h)
        return x + h


class Upsampler(nn.Module):
    def __init__(self, kind: str, nf: int, scale: int, width: int):
        super().__init__()
        self.kind = kind
        if kind == "pixelshuffle":
            self.convs = nn.ModuleList([nn.Conv2d(nf, 3 * scale * scale, 3, padding=1)])
            self.shuffles = [scale]
            self.final = None
        else:  # progressive
            factors = [2, 2] if scale == 4 else [scale]
            convs, cin = [], nf
            for f in factors:
                convs.append(nn.Conv2d(cin, width * f * f, 3, padding=1))
                cin = width
            self.convs = nn.ModuleList(convs)
            self.shuffles = factors
            self.final = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        for conv, f in zip(self.convs, self.shuffles):
            x = nn.functional.pixel_shuffle(conv(x), f)
            if self.final is not None:
                x = act(x)
        return x if self.final is None else self.final(x)


class SRStudent(nn.Module):
    """The SR student: head -> residual cells -> trunk (+ global residual) -> upsampler.

    Input and output are RGB in [0, 1]; the output is not clamped (clamp when saving).
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        self.scale = spec.scale
        nf = spec.nf
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        cells = []
        for cell in spec.cells:
            layers, cin = [], nf
            for layer in cell:
                layers.append(OPS[layer.op].build(cin, layer.width))
                cin = layer.width
            cells.append(Cell(layers))
        self.cells = nn.Sequential(*cells)
        self.trunk = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = Upsampler(spec.upsampler.kind, nf, spec.scale, spec.upsampler.width)
        self.skip = spec.skip

    def forward(self, x):
        f = self.head(x)
        f = f + self.trunk(self.cells(f))
        return add_global_skip(self.upsampler(f), x, self.skip, self.scale)


def add_global_skip(y, x, skip: str, scale: int):
    """VDSR/MSRResNet-style global residual: the network learns only the correction to a plain
    bicubic upscale, which makes small students converge far faster. Interpolation has no
    multiply-accumulates in the FlopCounterMode convention, so MACs are unchanged."""
    if skip == "bicubic":
        return y + nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y


def build_student(spec: ArchSpec) -> SRStudent:
    """Build the plain student module that `spec` describes (weights freshly initialised)."""
    return SRStudent(spec)


@torch.no_grad()
def load_sliced(student: nn.Module, source_state: dict) -> int:
    """Copy weights from a wider network with the same parameter names by taking the leading slice
    of every dimension (how the supernet's masked channels line up). Returns how many tensors were
    copied; names absent from `source_state` keep their initialisation."""
    n = 0
    for name, p in student.state_dict().items():
        src = source_state.get(name)
        if src is None or src.dim() != p.dim() or any(s < d for s, d in zip(src.shape, p.shape)):
            continue
        p.copy_(src[tuple(slice(0, d) for d in p.shape)])
        n += 1
    return n

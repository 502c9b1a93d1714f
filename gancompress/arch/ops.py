"""Candidate operators of the search space, shared by the built student and the AGD supernet.

Each operator maps `cin` -> `cout` channels at the same resolution. The student builds it at its
exact widths; the supernet builds it once at the widest widths and passes channel masks to
`forward`, so a masked wide operator computes exactly what a narrow one with sliced weights does
(the first `w` channels are the active ones). That is what makes "what was searched is what gets
built" true, and lets a student start from the supernet's weights by slicing.

When `cin != cout`, residual operators use a parameter-free channel-matched identity (slice or
zero-pad), so the skip exists at every width pair and stays consistent with the masked supernet.

`macs(cin, cout)` is the operator's multiply-accumulates per output pixel; it counts conv weights
exactly as FlopCounterMode does (activations, adds and biases are not counted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEG_SLOPE = 0.2


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEG_SLOPE)


def match_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    """Identity skip between widths: keep the first `c` channels, or zero-pad up to `c`."""
    n = x.shape[1]
    if n == c:
        return x
    if n > c:
        return x[:, :c]
    return F.pad(x, (0, 0, 0, 0, 0, c - n))


def _mask(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    return x if m is None else x * m


class Conv(nn.Module):
    """k x k convolution (optionally dilated) followed by LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, k: int = 3, dilation: int = 1):
        super().__init__()
        self.k, self.dilation = k, dilation
        self.conv = nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation)

    def forward(self, x, out_mask=None, hid_mask=None):
        return _mask(act(self.conv(x)), out_mask)



class ResBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3, plus the identity skip, then LeakyReLU (EDSR/SRResNet style)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x, out_mask=None, hid_mask=None):
        h = _mask(act(self.conv1(x)), out_mask)
        y = self.conv2(h) + match_channels(x, self.conv2.out_channels)
        return _mask(act(y), out_mask)



class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (to ratio*cout), depthwise 3x3, linear 1x1 project, + skip.

    The hidden width follows the layer's *output* width, so one width choice sets the whole block.
    """

    def __init__(self, cin: int, cout: int, ratio: int = 4):
        super().__init__()
        hid = ratio * cout
        self.expand = nn.Conv2d(cin, hid, 1)
        self.dw = nn.Conv2d(hid, hid, 3, padding=1, groups=hid)
        self.project = nn.Conv2d(hid, cout, 1)

    def forward(self, x, out_mask=None, hid_mask=None):
        h = _mask(act(self.expand(x)), hid_mask)
        h = _mask(act(self.dw(h)), hid_mask)
        y = self.project(h) + match_channels(x, self.project.out_channels)
        return _mask(y, out_mask)



class OpDef:
    """Registry entry: how to build an operator and what it costs."""

    def __init__(self, name, make, macs, hidden_ratio=0, doc=""):
        self.name, self._make, self._macs, self.hidden_ratio, self.doc = name, make, macs, hidden_ratio, doc

    def build(self, cin: int, cout: int) -> nn.Module:
        return self._make(cin, cout)

    def macs(self, cin: int, cout: int) -> int:
        """Multiply-accumulates per output pixel."""
        return self._macs(cin, cout)

    def params(self, cin: int, cout: int) -> int:
        return sum(p.numel() for p in self.build(cin, cout).parameters())


OPS: dict[str, OpDef] = {
    "conv3x3": OpDef("conv3x3", lambda i, o: Conv(i, o, 3), lambda i, o: 9 * i * o,
                     doc="3x3 conv + LeakyReLU"),
    "conv1x1": OpDef("conv1x1", lambda i, o: Conv(i, o, 1), lambda i, o: i * o,
                     doc="1x1 conv + LeakyReLU"),
    "resblock": OpDef("resblock", ResBlock, lambda i, o: 9 * i * o + 9 * o * o,
                      doc="two 3x3 convs with identity skip"),
    "irb": OpDef("irb", lambda i, o: InvertedResidual(i, o, 4),
                 lambda i, o: i * 4 * o + 9 * 4 * o + 4 * o * o, hidden_ratio=4,
                 doc="inverted residual, expansion 4, depthwise 3x3"),
    "dil3x3": OpDef("dil3x3", lambda i, o: Conv(i, o, 3, dilation=2), lambda i, o: 9 * i * o,
                    doc="3x3 conv dilation 2 + LeakyReLU"),
}

DEFAULT_OPS = ("conv3x3", "conv1x1", "resblock", "irb")

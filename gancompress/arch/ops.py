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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEG_SLOPE = 0.2


@dataclass(frozen=True)
class OpStyle:
    """How a task's operators normalise, activate and pad (the operator *shapes* are shared).

    SR (AGD's SR space): no normalisation (it hurts SR fidelity), LeakyReLU 0.2, zero padding, and
    an activation after every layer. Translation (CycleGAN-like): instance norm with affine
    parameters (their scales are what channel pruning reads), ReLU, reflection padding, and the
    last layer of a cell linear so the residual branch can both add and subtract."""

    norm: str = "none"  # none | instance
    act: str = "lrelu"  # lrelu | relu
    pad: str = "zeros"  # zeros | reflect
    act_last: bool = True


SR_STYLE = OpStyle()
TRANSLATE_STYLE = OpStyle(norm="instance", act="relu", pad="reflect", act_last=False)


def act(x: torch.Tensor, kind: str = "lrelu") -> torch.Tensor:
    return F.leaky_relu(x, NEG_SLOPE) if kind == "lrelu" else F.relu(x)


def make_norm(style: OpStyle, c: int) -> nn.Module | None:
    return nn.InstanceNorm2d(c, affine=True) if style.norm == "instance" else None


def _apply(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if norm is None else norm(x)


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


class _Op(nn.Module):
    def __init__(self, style: OpStyle, last: bool):
        super().__init__()
        self.style = style
        self.final_act = style.act_last or not last

    def _act(self, x):
        return act(x, self.style.act)

    def _out_act(self, x):
        return self._act(x) if self.final_act else x

    def _conv(self, cin, cout, k, dilation=1, groups=1, bias=True):
        return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, groups=groups, bias=bias,
                         padding_mode=self.style.pad if k > 1 else "zeros")


class Conv(_Op):
    """k x k convolution (optionally dilated) [-> norm] -> activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, dilation: int = 1, style: OpStyle = SR_STYLE,
                 last: bool = False):
        super().__init__(style, last)
        self.k, self.dilation = k, dilation
        self.conv = self._conv(cin, cout, k, dilation)
        self.norm = make_norm(style, cout)

    def forward(self, x, out_mask=None, hid_mask=None):
        return _mask(self._out_act(_apply(self.norm, self.conv(x))), out_mask)


class ResBlock(_Op):
    """conv3x3 [-> norm] -> act -> conv3x3 [-> norm], plus the identity skip, then act
    (EDSR/SRResNet style for SR; CycleGAN's block, norm included, for translation)."""

    def __init__(self, cin: int, cout: int, style: OpStyle = SR_STYLE, last: bool = False):
        super().__init__(style, last)
        self.conv1 = self._conv(cin, cout, 3)
        self.norm1 = make_norm(style, cout)
        self.conv2 = self._conv(cout, cout, 3)
        self.norm2 = make_norm(style, cout)

    def forward(self, x, out_mask=None, hid_mask=None):
        h = _mask(self._act(_apply(self.norm1, self.conv1(x))), out_mask)
        y = _apply(self.norm2, self.conv2(h))
        y = y + match_channels(x, y.shape[1])  # the tensor's width: right in dynamic supernets too
        return _mask(self._out_act(y), out_mask)


class InvertedResidual(_Op):
    """MobileNetV2 block: 1x1 expand (to ratio*cout), depthwise 3x3, linear 1x1 project, + skip.

    The hidden width follows the layer's *output* width, so one width choice sets the whole block.
    """

    def __init__(self, cin: int, cout: int, ratio: int = 4, style: OpStyle = SR_STYLE, last: bool = False):
        super().__init__(style, last)
        hid = ratio * cout
        self.expand = nn.Conv2d(cin, hid, 1)
        self.norm_e = make_norm(style, hid)
        self.dw = self._conv(hid, hid, 3, groups=hid)
        self.norm_d = make_norm(style, hid)
        self.project = nn.Conv2d(hid, cout, 1)
        self.norm_p = make_norm(style, cout)

    def forward(self, x, out_mask=None, hid_mask=None):
        h = _mask(self._act(_apply(self.norm_e, self.expand(x))), hid_mask)
        h = _mask(self._act(_apply(self.norm_d, self.dw(h))), hid_mask)
        y = _apply(self.norm_p, self.project(h))
        y = y + match_channels(x, y.shape[1])
        return _mask(y, out_mask)


class SepConv(_Op):
    """Depthwise-separable 3x3 (MobileNetV1's block): depthwise 3x3 on the input, 1x1 to `cout`
    [-> norm] -> activation. On ONNX Runtime's CPU kernels a 16 -> 16 one costs about half of a dense
    8 -> 8 conv 3x3, the width tiny latency budgets cannot buy with dense convs; at 1/80 of SRGAN's
    latency it did not pay, the nf 16 frame costing what it saved (BENCHMARKS.md, "What limits the
    1/80 student"). Not in the default space. The depthwise conv has no bias: the supernet's masked
    input channels then stay zero through it, as a narrower student's absent channels are."""

    def __init__(self, cin: int, cout: int, style: OpStyle = SR_STYLE, last: bool = False):
        super().__init__(style, last)
        self.dw = self._conv(cin, cin, 3, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1)
        self.norm = make_norm(style, cout)

    def forward(self, x, out_mask=None, hid_mask=None):
        return _mask(self._out_act(_apply(self.norm, self.pw(self.dw(x)))), out_mask)


class OpDef:
    """Registry entry: how to build an operator and what it costs. `bits` 8 marks an operator that
    runs in int8 once deployed (same module and MACs; AGD's precision search and the budget's cost
    model treat it differently)."""

    def __init__(self, name, make, macs, hidden_ratio=0, doc="", bits=32, base=None):
        self.name, self._make, self._macs, self.hidden_ratio, self.doc = name, make, macs, hidden_ratio, doc
        self.bits, self.base = bits, base or name

    def build(self, cin: int, cout: int, style: OpStyle = SR_STYLE, last: bool = False) -> nn.Module:
        """The operator at exact widths; `last`: it ends a cell (see `OpStyle.act_last`)."""
        return self._make(cin, cout, style, last)

    def macs(self, cin: int, cout: int) -> int:
        """Multiply-accumulates per output pixel."""
        return self._macs(cin, cout)

    def params(self, cin: int, cout: int) -> int:
        return sum(p.numel() for p in self.build(cin, cout).parameters())


OPS: dict[str, OpDef] = {
    "conv3x3": OpDef("conv3x3", lambda i, o, s, l: Conv(i, o, 3, style=s, last=l), lambda i, o: 9 * i * o,
                     doc="3x3 conv + LeakyReLU"),
    "conv1x1": OpDef("conv1x1", lambda i, o, s, l: Conv(i, o, 1, style=s, last=l), lambda i, o: i * o,
                     doc="1x1 conv + LeakyReLU"),
    "resblock": OpDef("resblock", lambda i, o, s, l: ResBlock(i, o, s, l), lambda i, o: 9 * i * o + 9 * o * o,
                      doc="two 3x3 convs with identity skip"),
    "irb": OpDef("irb", lambda i, o, s, l: InvertedResidual(i, o, 4, s, l),
                 lambda i, o: i * 4 * o + 9 * 4 * o + 4 * o * o, hidden_ratio=4,
                 doc="inverted residual, expansion 4, depthwise 3x3"),
    "sep3x3": OpDef("sep3x3", lambda i, o, s, l: SepConv(i, o, s, l), lambda i, o: 9 * i + i * o,
                    doc="depthwise 3x3 + 1x1 + LeakyReLU"),
    "dil3x3": OpDef("dil3x3", lambda i, o, s, l: Conv(i, o, 3, dilation=2, style=s, last=l), lambda i, o: 9 * i * o,
                    doc="3x3 conv dilation 2 + LeakyReLU"),
}

# int8 twins of every operator ("conv3x3@int8"): AGD with `--search-int8` chooses per layer between
# an operator and its twin (trained with fake quantization in the supernet and in retraining).
INT8_SUFFIX = "@int8"
for _name, _op in list(OPS.items()):
    OPS[_name + INT8_SUFFIX] = OpDef(_name + INT8_SUFFIX, _op._make, _op._macs, _op.hidden_ratio,
                                     _op.doc + ", int8", bits=8, base=_name)

# Measured (BENCHMARKS.md, SRGAN x4 at 1/10): searching over {conv3x3, resblock} gave 30.57 dB Set5
# and a 0.06 ORT latency ratio, against 30.30 dB / 0.10 with conv1x1 and irb in the space too (they
# are cheap in MACs but weak and memory-bound on CPU); they stay available through --ops.
DEFAULT_OPS = ("conv3x3", "resblock")

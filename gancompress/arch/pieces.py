"""A student cut into the pieces a latency table times one by one.

A piece is one layer of the built student at its input size (a cell layer, the head, a stride-2
conv, the upsampler, a residual add...), named by a key that holds everything its run time depends
on: kind, operator, widths, kernel, padding, the input's side. The same key in two students is the
same computation, so a table measured once serves every spec of a space: a spec's predicted
latency is the sum of its pieces' measured times (`latency.table`).

`spec_pieces(spec, hw)` lists a whole student's pieces in forward order; `layer_piece` and
`frame_pieces` give the ones a search varies (a cell layer's operator and widths, the translation
frame's widths), so AGD's expected latency and a width search can ask for exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .build import BicubicUpsample, UpLayer, Upsampler, conv_norm_relu, pad_to_multiple
from .ops import INT8_SUFFIX, OPS, SR_STYLE, TRANSLATE_STYLE
from .spec import ArchSpec, frame_side


@dataclass(frozen=True)
class Piece:
    """One timed unit: `kind` with input width `cin`, output width `cout`, input side h x w and
    its remaining settings in `extra` ((name, value) pairs)."""

    task: str
    kind: str
    cin: int
    cout: int
    h: int
    w: int
    extra: tuple = ()
    part: str = ""  # "": the piece; "in" / "out": an int8 piece's conversions at a float neighbour

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.extra)
        base = f"{self.task}/{self.kind}/{self.cin}>{self.cout}/{self.h}x{self.w}" + (f"/{opts}" if opts else "")
        return base + (f"#{self.part}" if self.part else "")

    @property
    def int8(self) -> bool:
        """An int8 layer (`conv3x3@int8`): timed as `export --int8` quantizes it."""
        return str(self.option("op", "")).endswith(INT8_SUFFIX)

    def whole(self) -> "Piece":
        """The piece itself, for a conversion part."""
        return replace(self, part="")

    def conversion(self, side: str) -> "Piece":
        """This int8 piece's conversion at a float neighbour: `in` (quantize its float input, and
        the layout change of the int8 kernels) or `out` (back to float)."""
        return replace(self, part=side)

    def option(self, name, default=None):
        return dict(self.extra).get(name, default)

    def input(self) -> torch.Tensor:
        return torch.rand(1, self.cin, self.h, self.w)

    def build(self) -> nn.Module:
        """The piece as a module (fresh weights: run time does not depend on their values)."""
        return _BUILDERS[self.kind](self)


class _WithAdd(nn.Module):
    """A layer (None: identity) followed by the add of another tensor of its output's size, as a
    residual skip reads two tensors (the other is a constant here: same memory traffic)."""

    def __init__(self, layer: nn.Module | None, out_shape: tuple):
        super().__init__()
        self.layer = layer
        self.register_buffer("other", torch.rand(out_shape))

    def forward(self, x):
        return (x if self.layer is None else self.layer(x)) + self.other


class _Output(nn.Module):
    """Translation output: conv k x k to RGB, then (tanh + 1) / 2."""

    def __init__(self, cin: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 3, k, padding=k // 2, padding_mode="reflect")

    def forward(self, x):
        return (torch.tanh(self.conv(x)) + 1) / 2


class _ShuffledWith(nn.Module):
    """A pixelshuffle upsampler that adds the bicubic skip's phases before its one shuffle (the
    phases are a constant here: same memory traffic)."""

    def __init__(self, cin: int, scale: int, h: int, w: int):
        super().__init__()
        self.up = Upsampler("pixelshuffle", cin, scale, 0)
        self.register_buffer("phases", torch.rand(1, 3 * scale * scale, h, w))

    def forward(self, x):
        return self.up(x, self.phases)


class _SkipPhases(nn.Module):
    """The bicubic skip up to its phases (no shuffle, no add: the upsampler piece pays those)."""

    def __init__(self, scale: int, unshuffle: int):
        super().__init__()
        self.skip = BicubicUpsample(scale, unshuffle)

    def forward(self, x):
        if self.skip.unshuffle > 1:  # as SRStudent.decode pads it
            x = pad_to_multiple(x, self.skip.unshuffle)
        return self.skip(x, shuffle=False)


class _Unshuffled(nn.Module):
    """An unshuffled SR student's head: pad to whole unshuffled pixels, unshuffle, conv 3x3."""

    def __init__(self, cout: int, u: int):
        super().__init__()
        self.u = u
        self.conv = nn.Conv2d(3 * u * u, cout, 3, padding=1)

    def forward(self, x):
        return self.conv(nn.functional.pixel_unshuffle(pad_to_multiple(x, self.u), self.u))


class _Cropped(nn.Module):
    """An unshuffled SR student's upsampler: its output is cropped back to scale x the LR input
    (a copy of the HR image in ONNX Runtime, where the crop's size comes from the input's)."""

    def __init__(self, up: nn.Module, scale: int, lr_hw: tuple):
        super().__init__()
        self.up, self.scale = up, scale
        self.register_buffer("lr", torch.zeros(1, 1, *lr_hw))  # stands for the student's input

    def forward(self, x):
        y = self.up(x)
        return y[..., : self.lr.shape[-2] * self.scale, : self.lr.shape[-1] * self.scale]


def _upsampler(p: Piece) -> nn.Module:
    u = p.option("unshuffle", 1)
    if p.option("skip") == "bicubic":
        up = _ShuffledWith(p.cin, p.option("scale") * u, p.h, p.w)
    else:
        up = Upsampler(p.option("up"), p.cin, p.option("scale") * u, p.option("width"))
    return up if u == 1 else _Cropped(up, p.option("scale"), (p.h * u, p.w * u))


def _skip(p: Piece) -> nn.Module:
    if p.option("shuffle") == "upsampler":
        return _SkipPhases(p.option("scale"), p.option("unshuffle", 1))
    return _WithAdd(BicubicUpsample(p.option("scale")), (1, 3, p.h * p.option("scale"), p.w * p.option("scale")))


def _head(p: Piece) -> nn.Module:
    u = p.option("unshuffle", 1)
    return nn.Conv2d(p.cin, p.cout, 3, padding=1) if u == 1 else _Unshuffled(p.cout, u)


def _style(p: Piece):
    return TRANSLATE_STYLE if p.task == "translate" else SR_STYLE


_BUILDERS = {
    "layer": lambda p: OPS[OPS[p.option("op")].base].build(p.cin, p.cout, _style(p), last=p.option("last") == 1),
    "add": lambda p: _WithAdd(None, (1, p.cin, p.h, p.w)),
    "head": _head,
    "trunk": lambda p: _WithAdd(nn.Conv2d(p.cin, p.cout, 3, padding=1), (1, p.cout, p.h, p.w)),
    "upsampler": _upsampler,
    "skip": _skip,
    "stem": lambda p: conv_norm_relu(p.cin, p.cout, p.option("k")),
    "down": lambda p: conv_norm_relu(p.cin, p.cout, 3, 2, p.option("pad")),
    "up": lambda p: UpLayer(p.cin, p.cout, p.option("up")),
    "out": lambda p: _Output(p.cin, p.option("k")),
}


def cells_side(task: str, hw: tuple[int, int], unshuffle: int = 1) -> tuple[int, int]:
    """The side the cells run at: the (LR) input's for SR (1/unshuffle of it, rounded up, for an
    unshuffled student), a quarter of it for translation."""
    return (hw[0] // 4, hw[1] // 4) if task == "translate" else frame_side(hw, unshuffle)


def layer_piece(task: str, op: str, cin: int, cout: int, last: bool, hw: tuple[int, int], unshuffle: int = 1) -> Piece:
    """A cell layer of operator `op` (cin -> cout) for a student whose input is hw."""
    h, w = cells_side(task, hw, unshuffle)
    # the cell's last layer differs only in translation (no activation after it)
    last_flag = int(last and not _style_of(task).act_last)
    return Piece(task, "layer", cin, cout, h, w, (("op", op), ("last", last_flag)))


def _style_of(task: str):
    return TRANSLATE_STYLE if task == "translate" else SR_STYLE


def add_piece(task: str, nf: int, hw: tuple[int, int], unshuffle: int = 1) -> Piece:
    h, w = cells_side(task, hw, unshuffle)
    return Piece(task, "add", nf, nf, h, w)


def frame_pieces(template: ArchSpec, hw: tuple[int, int], stem=None, down=None, up0=None, up1=None) -> list[Piece]:
    """The pieces outside the cells (translation widths may be overridden, for searched frames)."""
    h, w = hw
    nf = template.nf
    if template.task == "sr":
        u, s = template.upsampler, template.scale
        # a pixelshuffle upsampler shuffles the bicubic skip with its own output (SRStudent.decode):
        # its piece pays the add and the one shuffle, the skip's only its convs
        fused = u.kind == "pixelshuffle" and template.skip == "bicubic"
        up = (("up", u.kind), ("scale", s), ("width", u.width if u.kind == "progressive" else 0))
        # an unshuffled student (SRStudent): its head pads and unshuffles the LR input, its trunk
        # and upsampler run at 1/k of the side, and the upsampler's output is cropped back
        k = template.unshuffle
        fold = (("unshuffle", k),) if k > 1 else ()
        fh, fw = cells_side("sr", hw, k)
        ps = [Piece("sr", "head", 3, nf, h, w, fold), Piece("sr", "trunk", nf, nf, fh, fw),
              Piece("sr", "upsampler", nf, 3, fh, fw, up + ((("skip", "bicubic"),) if fused else ()) + fold)]
        if template.skip == "bicubic":
            ps.append(Piece("sr", "skip", 3, 3, h, w, (("scale", s),) + ((("shuffle", "upsampler"),) if fused else ())
                            + fold))
        return ps
    f = template.frame
    stem = f.stem if stem is None else stem
    down = f.down[0] if down is None else down
    up0 = f.up[0] if up0 is None else up0
    up1 = f.up[1] if up1 is None else up1
    t = "translate"
    return [Piece(t, "stem", 3, stem, h, w, (("k", f.stem_k),)),
            Piece(t, "down", stem, down, h, w, (("pad", f.down_pad),)),
            Piece(t, "down", down, nf, h // 2, w // 2, (("pad", f.down_pad),)),
            Piece(t, "up", nf, up0, h // 4, w // 4, (("up", f.up_kind),)),
            Piece(t, "up", up0, up1, h // 2, w // 2, (("up", f.up_kind),)),
            Piece(t, "out", up1, 3, h, w, (("k", f.out_k),))]


def spec_pieces(spec: ArchSpec, hw: tuple[int, int]) -> list[Piece]:
    """Every piece of the student built from `spec` for an input of size hw, with the conversions
    of its int8 layers where they meet float ones (a cell's input and its residual add are float:
    `export --int8` quantizes only the layers searched as int8)."""
    pieces = frame_pieces(spec, hw)
    for cell in spec.cells:
        cin = spec.nf
        layers = [layer_piece(spec.task, layer.op, 0, 0, False, hw) for layer in cell]  # precision only
        for i, layer in enumerate(cell):
            p = layer_piece(spec.task, layer.op, cin, layer.width, i == len(cell) - 1, hw, spec.unshuffle)
            pieces.append(p)
            if p.int8 and (i == 0 or not layers[i - 1].int8):
                pieces.append(p.conversion("in"))
            if p.int8 and (i == len(cell) - 1 or not layers[i + 1].int8):
                pieces.append(p.conversion("out"))
            cin = layer.width
        pieces.append(add_piece(spec.task, spec.nf, hw, spec.unshuffle))
    return pieces

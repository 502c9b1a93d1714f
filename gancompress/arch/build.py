"""ArchSpec -> plain nn.Module. One function, readable top to bottom, no search machinery inside."""

from __future__ import annotations

import torch
from torch import nn

from .ops import OPS, SR_STYLE, TRANSLATE_STYLE, OpStyle, act
from .spec import ArchSpec, FrameSpec


class Cell(nn.Module):
    """A chain of layers with a residual connection around it."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @classmethod
    def from_spec(cls, cell, nf: int, style: OpStyle) -> "Cell":
        layers, cin = [], nf
        for i, layer in enumerate(cell):
            layers.append(OPS[layer.op].build(cin, layer.width, style, last=i == len(cell) - 1))
            cin = layer.width
        return cls(layers)

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

    def forward(self, x, phases=None):
        """With `phases` (pixelshuffle only: 3 * s^2 channels at x's size, in pixel_shuffle's order),
        the output plus pixel_shuffle(phases) with one shuffle for both: PixelShuffle is linear,
        and ONNX Runtime's DepthToSpace is a strided copy of the whole HR image (about 6 ms of a
        90 ms 1/50 SRGAN student at 256x256 LR). The add runs at LR, inside this module, so export
        names (`/upsampler/...`) still say what it is."""
        if phases is not None:
            return nn.functional.pixel_shuffle(self.convs[0](x) + phases, self.shuffles[0])
        for conv, f in zip(self.convs, self.shuffles):
            x = nn.functional.pixel_shuffle(conv(x), f)
            if self.final is not None:
                x = act(x)
        return x if self.final is None else self.final(x)


class SRStudent(nn.Module):
    """The SR student: head -> residual cells -> trunk (+ global residual) -> upsampler.

    Input and output are RGB in [0, 1]; the output is not clamped (clamp when saving).
    `encode` / `decode` are the parts around the cells, so the AGD supernet can wrap its mixed
    cells in exactly the student's own frame.

    With `spec.unshuffle` u > 1 the LR input is pixel-unshuffled by u (3 u^2 channels at 1/u of
    its side; sides not divisible by u are edge-padded, and the output cropped back) and
    everything up to the upsampler runs at that side; the upsampler then shuffles by scale * u.
    The idea was speed per MAC: ONNX Runtime's CPU convs run at a third to a half of their 32-channel
    speed at 8 channels, so at a small latency budget a network u times smaller per side and wider
    per pixel gets more MACs and a wider view in the same time. Measured at 1/80 of SRGAN's ORT
    latency it fits the teacher 1.0 dB worse than the full-side student (BENCHMARKS.md), so it is
    an option (`--unshuffle`), off by default.
    """

    style = SR_STYLE

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        self.scale = spec.scale
        self.unshuffle = u = spec.unshuffle
        nf = spec.nf
        self.head = nn.Conv2d(3 * u * u, nf, 3, padding=1)
        self.cells = nn.Sequential(*(Cell.from_spec(c, nf, SR_STYLE) for c in spec.cells))
        self.trunk = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = Upsampler(spec.upsampler.kind, nf, spec.scale * u, spec.upsampler.width)
        # global residual (VDSR / MSRResNet style): the network learns only the correction to a
        # bicubic upscale, which makes small students converge much faster
        self.skip = BicubicUpsample(spec.scale, u) if spec.skip == "bicubic" else None

    def encode(self, x, masks=None):
        if self.unshuffle > 1:
            x = nn.functional.pixel_unshuffle(pad_to_multiple(x, self.unshuffle), self.unshuffle)
        return self.head(x)

    def decode(self, h, f, x, masks=None):
        h = f + self.trunk(h)
        lr = x
        if self.unshuffle > 1:
            x = pad_to_multiple(x, self.unshuffle)
        if self.skip is None:
            y = self.upsampler(h)
        elif self.upsampler.kind == "pixelshuffle":  # one shuffle for both branches (Upsampler.forward)
            y = self.upsampler(h, self.skip(x, shuffle=False))
        else:
            y = self.upsampler(h) + self.skip(x)
        if self.unshuffle > 1:
            y = y[..., : lr.shape[-2] * self.scale, : lr.shape[-1] * self.scale]
        return y

    def forward(self, x):
        f = self.encode(x)
        return self.decode(self.cells(f), f, x)


def pad_to_multiple(x, u: int):
    """Edge-pad the bottom and right of x to sides divisible by u (a no-op when they are)."""
    ph, pw = (-x.shape[-2]) % u, (-x.shape[-1]) % u
    if torch.jit.is_tracing() or ph or pw:  # traced: the pads follow the input's size in ONNX
        x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def conv_norm_relu(cin, cout, k, stride=1, pad="reflect"):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, padding_mode=pad),
                         nn.InstanceNorm2d(cout, affine=True), nn.ReLU())


class UpLayer(nn.Module):
    """x2 upsampling layer: ConvTranspose2d 3x3 stride 2 (CycleGAN's) or nearest x2 + conv 3x3 (no
    checkerboard; 4x the MACs at the same width, since the conv runs at the output size)."""

    def __init__(self, cin, cout, kind):
        super().__init__()
        self.kind = kind
        if kind == "deconv":
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x):
        if self.kind == "resize":
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return torch.relu(self.norm(self.conv(x)))


def _masked(h, masks, i):
    return h if masks is None else h * masks[i]


class TranslateStudent(nn.Module):
    """The translation student: stem kxk (7 by default) -> 2 stride-2 convs -> residual cells -> 2 x2
    upsampling layers -> kxk conv -> RGB. Input and output RGB in [0, 1] (the output is (tanh + 1) / 2).
    Input sides must be multiples of 4."""

    style = TRANSLATE_STYLE
    scale = 1

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        f: FrameSpec = spec.frame
        self.stem = conv_norm_relu(3, f.stem, f.stem_k)
        self.down = nn.Sequential(conv_norm_relu(f.stem, f.down[0], 3, 2, f.down_pad),
                                  conv_norm_relu(f.down[0], spec.nf, 3, 2, f.down_pad))
        self.cells = nn.Sequential(*(Cell.from_spec(c, spec.nf, TRANSLATE_STYLE) for c in spec.cells))
        self.up = nn.Sequential(UpLayer(spec.nf, f.up[0], f.up_kind), UpLayer(f.up[0], f.up[1], f.up_kind))
        self.out = nn.Conv2d(f.up[1], 3, f.out_k, padding=f.out_k // 2, padding_mode="reflect")

    # `masks` (the AGD supernet's width choices for stem, down[0], up[0], up[1]) keep the first w
    # channels of each frame layer; a plain student has exact widths and passes none
    def encode(self, x, masks=None):
        h = _masked(self.stem(x), masks, 0)
        return self.down[1](_masked(self.down[0](h), masks, 1))

    def decode(self, h, f, x, masks=None):
        h = _masked(self.up[1](_masked(self.up[0](h), masks, 2)), masks, 3)
        return (torch.tanh(self.out(h)) + 1) / 2

    def forward(self, x):
        f = self.encode(x)
        return self.decode(self.cells(f), f, x)


def _cubic(t: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel (a = -0.75, as torch's bicubic)."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0


def bicubic_phase_taps(scale: int) -> torch.Tensor:
    """(scale, 5) weights: output phase p of an integer x`scale` bicubic upscale (half-pixel
    centres, as F.interpolate(align_corners=False)) reads input offsets -2..2 with these weights."""
    taps = torch.zeros(scale, 5)
    for p in range(scale):
        x = (p + 0.5) / scale - 0.5  # source position relative to the output's LR pixel
        f = int(torch.floor(torch.tensor(x)))
        for k in range(f - 1, f + 3):
            taps[p, k + 2] = _cubic(x - k)
    return taps


def skip_pad(unshuffle: int) -> int:
    """LR pixels of edge padding the bicubic skip reads on each side: the 2 its taps reach,
    rounded up to whole unshuffled pixels."""
    return unshuffle * -(-2 // unshuffle)


def folded_phase_taps(scale: int, unshuffle: int) -> torch.Tensor:
    """(scale * u, K, u) weights of the bicubic upscale along one axis of an input unshuffled by
    u = `unshuffle` and edge-padded by skip_pad(u) LR pixels: output phase a' = s * i + a of
    unshuffled pixel p (LR pixel u p + i, HR phase a) reads the padded, unshuffled input at offset
    d (0..K-1) and sub-pixel j with weight [a', d, j]. u = 1 gives bicubic_phase_taps (K = 5)."""
    u, pad, t = unshuffle, skip_pad(unshuffle), bicubic_phase_taps(scale)
    k_side = (u - 1 + 2 + pad) // u + 1
    taps = torch.zeros(scale * u, k_side, u)
    for i in range(u):
        for a in range(scale):
            for k in range(-2, 3):
                r = i + k + pad  # LR row u p + i + k, in the padded input, minus u p
                taps[scale * i + a, r // u, r % u] += t[a, k + 2]
    return taps


class BicubicUpsample(nn.Module):
    """Exactly F.interpolate(mode="bicubic", align_corners=False) for an integer scale, written as
    two fixed convs (vertical, then horizontal; one filter per sub-pixel phase, edge padding per
    axis) + PixelShuffle. Bicubic is separable and edge clamping is per axis, so this equals the
    2-D form exactly with a fraction of its weights and MACs.

    Why not F.interpolate: ONNX Runtime's cubic Resize is slow on CPU (about 70 ms for 128 -> 512
    px, more than the whole student); this form runs as fast as any conv there, and its
    multiply-accumulates are counted like every other conv's (`skip_macs`).
    Why separable: the fixed weights stay float in int8 exports, and the 2-D kernel (3 * s^2 * 25
    floats) was 4 % of a small int8 student's file.

    `unshuffle` u > 1: the same upscale computed at 1/u of the input's side, for a student whose
    frame runs there (SRStudent): the input (sides divisible by u) is edge-padded, unshuffled, and
    the phases come out in the order of a PixelShuffle by scale * u (the vertical conv keeps each
    column sub-pixel apart with zero weights across them)."""

    def __init__(self, scale: int, unshuffle: int = 1):
        super().__init__()
        self.scale, self.unshuffle = scale, unshuffle
        u, t = unshuffle, folded_phase_taps(scale, unshuffle)  # (s u, K, u)
        su, k = scale * u, t.shape[1]
        # vertical, per colour: (row sub-pixel j, column sub-pixel v) -> (row phase a', v)
        wv = torch.zeros(su, u, u, u, k)  # [a', v, j, v', d]
        for v in range(u):
            wv[:, v, :, v, :] = t.permute(0, 2, 1)
        self.register_buffer("weight_v", wv.reshape(su * u, u * u, k, 1).repeat(3, 1, 1, 1), persistent=False)
        # horizontal, per (colour, row phase): column sub-pixel v -> column phase b', which is
        # pixel_shuffle's c (s u)^2 + a' (s u) + b' order
        wh = t.permute(0, 2, 1).reshape(su, u, 1, k)  # [b', v, 1, d]
        self.register_buffer("weight_h", wh.repeat(3 * su, 1, 1, 1), persistent=False)

    def forward(self, x, shuffle: bool = True):
        """shuffle=False: the upscale before its PixelShuffle (3 (s u)^2 channels at 1/u of x's
        size), for a pixelshuffle upsampler to shuffle with its own output."""
        u, pad, su = self.unshuffle, skip_pad(self.unshuffle), self.scale * self.unshuffle
        if u == 1:
            y = nn.functional.pad(x, (0, 0, pad, pad), mode="replicate")
            y = nn.functional.conv2d(y, self.weight_v, groups=3)
            y = nn.functional.pad(y, (pad, pad, 0, 0), mode="replicate")
        else:  # pad both axes before unshuffling: an edge pixel's copies must be whole LR pixels
            y = nn.functional.pixel_unshuffle(nn.functional.pad(x, (pad,) * 4, mode="replicate"), u)
            y = nn.functional.conv2d(y, self.weight_v, groups=3)
        y = nn.functional.conv2d(y, self.weight_h, groups=3 * su)
        return nn.functional.pixel_shuffle(y, su) if shuffle else y


def skip_macs(skip: str, scale: int, hw: tuple[int, int], unshuffle: int = 1) -> int:
    """MACs of the bicubic skip for an LR input of size hw (sides divisible by `unshuffle`):
    3 (s + s^2) 5 per LR pixel at u = 1; at u > 1 its vertical conv also runs over the padded
    columns."""
    if skip != "bicubic":
        return 0
    u, k = unshuffle, folded_phase_taps(scale, unshuffle).shape[1]
    h, w = hw[0] // u, hw[1] // u
    cols = w if u == 1 else w + 2 * skip_pad(u) // u
    return 3 * (scale * u * u) * (u * u) * k * h * cols + 3 * scale * u * (scale * u) * u * k * h * w


def build_student(spec: ArchSpec) -> nn.Module:
    """Build the plain student module that `spec` describes (weights freshly initialised)."""
    if spec.graph is not None:
        from .graph import GraphNet, GraphSpec

        return GraphNet(GraphSpec.from_dict(spec.graph))
    if spec.spade is not None:
        from .spade import SPADEStudent

        return SPADEStudent(spec)
    return TranslateStudent(spec) if spec.task == "translate" else SRStudent(spec)


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

"""SPADE layers and the label -> image student (GauGAN's generator layout at any widths).

SPADE normalization (Park et al. 2019): a parameter-free norm (batch or instance), then
`x * (1 + gamma) + beta`, where gamma and beta are kxk convs (`mlp_gamma`, `mlp_beta`) of a shared
hidden layer (`mlp_shared`: conv + ReLU) of the label map resized (nearest) to x's size. A
SPADEResnetBlock is `norm_0 -> lrelu -> conv_0 -> norm_1 -> lrelu -> conv_1` plus a shortcut,
learned (`norm_s -> conv_s` 1x1 without bias) when the width changes. Parameter names are the
public SPADE release's, so the zoo teacher (teachers/zoo_spade.py) is built from these blocks and
a student whose spec has the teacher's widths loads the teacher's weights as they are.

The student's free widths (GAN Compression's GauGAN space): the trunk (fc, head_0, G_middle_0/1,
tied by their identity shortcuts), each up block's output, each block's conv_0 ("mid"; GauGAN:
min(in, out)) and its SPADE hidden width, which is where most of GauGAN's MACs
are (the hidden convs run at every block's resolution).

MACs (FlopCounterMode's convention: conv multiply-accumulates only; interpolation, norm and the
modulation are free), per block at its resolution A with input i, output o, mid m, hidden h,
label channels C, kernel k: SPADE(c) = k^2 C h + 2 k^2 h c for norm_0(i), norm_1(m) [and
norm_s(i)]; 9 i m + 9 m o [+ i o]. Plus fc 9 C fc at 1/32 size and conv_img 9 o 3 at full size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import SPADE_BLOCKS, SPADE_LEARNED_SHORTCUT, SPADE_UP_BEFORE, ArchSpec

N_UP = sum(SPADE_UP_BEFORE)  # 5: the coarsest grid is 1/32 of the input


class SPADE(nn.Module):
    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128, ks: int = 3, norm: str = "batch"):
        super().__init__()
        self.param_free_norm = (nn.BatchNorm2d(norm_nc, affine=False) if norm == "batch"
                                else nn.InstanceNorm2d(norm_nc, affine=False))
        pw = ks // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, ks, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, ks, padding=pw)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, ks, padding=pw)

    def forward(self, x, seg):
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """`mid`: conv_0's width (None: min(fin, fout), GauGAN's); `learned_shortcut` (None: when the
    width changes, GauGAN's rule)."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int = 128, ks: int = 3, norm: str = "batch",
                 mid: int | None = None, learned_shortcut: bool | None = None):
        super().__init__()
        self.learned_shortcut = fin != fout if learned_shortcut is None else learned_shortcut
        fmid = min(fin, fout) if mid is None else mid
        self.conv_0 = nn.Conv2d(fin, fmid, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmid, fout, 3, padding=1)
        self.norm_0 = SPADE(fin, label_nc, hidden, ks, norm)
        self.norm_1 = SPADE(fmid, label_nc, hidden, ks, norm)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_nc, hidden, ks, norm)

    def forward(self, x, seg):
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEStudent(nn.Module):
    """The label -> image student. Input: one-hot label map (N, label_nc, H, W), sides multiples of
    32; output RGB in [0, 1] ((tanh + 1) / 2), like every student."""

    scale = 1

    def __init__(self, spec: ArchSpec):
        super().__init__()
        spec.validate()
        sp = spec.spade
        self.label_nc = sp.label_nc
        self.fc = nn.Conv2d(sp.label_nc, sp.fc, 3, padding=1)
        for name, fin, (out, mid, hid), learned in zip(SPADE_BLOCKS, sp.widths_in(), sp.blocks, SPADE_LEARNED_SHORTCUT):
            self.add_module(name, SPADEResnetBlock(fin, out, sp.label_nc, hid, sp.ks, sp.norm, mid, learned))
        self.conv_img = nn.Conv2d(sp.blocks[-1][0], 3, 3, padding=1)

    @property
    def in_channels(self) -> int:
        return self.label_nc

    def forward(self, seg):
        h, w = seg.shape[-2:]
        k = 2 ** N_UP
        if h % k or w % k:
            raise ValueError(f"a label2image student needs label maps whose sides are multiples of {k}, got {h}x{w}")
        x = self.fc(F.interpolate(seg, size=(h // k, w // k), mode="nearest"))
        for name, up in zip(SPADE_BLOCKS, SPADE_UP_BEFORE):
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, name)(x, seg)
        return (torch.tanh(self.conv_img(F.leaky_relu(x, 0.2))) + 1) / 2


def block_areas(hw: tuple[int, int]) -> list[int]:
    """Pixels per channel at which each block runs, for an input of size hw."""
    h, w = hw[0] // 2 ** N_UP, hw[1] // 2 ** N_UP
    out = []
    for up in SPADE_UP_BEFORE:
        if up:
            h, w = 2 * h, 2 * w
        out.append(h * w)
    return out


def spade_block_macs(fin, fout, mid, hidden, label_nc: int, ks: int, learned_shortcut: bool):
    """MACs per pixel of one SPADE block (ints, or expected widths as tensors)."""
    def spade(c):
        return ks * ks * label_nc * hidden + 2 * ks * ks * hidden * c

    m = spade(fin) + 9 * fin * mid + spade(mid) + 9 * mid * fout
    if learned_shortcut:
        m = m + spade(fin) + fin * fout
    return m


def spade_macs(spec: ArchSpec, hw: tuple[int, int]) -> int:
    """Analytic MACs of the student built from a label2image spec at input size hw."""
    sp = spec.spade
    return spade_macs_of(sp.label_nc, sp.fc, [b[0] for b in sp.blocks], [b[1] for b in sp.blocks],
                         [b[2] for b in sp.blocks], sp.ks, hw)


def spade_macs_of(label_nc: int, fc, outs, mids, hiddens, ks: int, hw: tuple[int, int]):
    """The same count from the widths (ints, or expected widths as tensors: AGD differentiates
    through it; the widths of different positions are independent choices, so the expectation of
    each product is the product of the expectations)."""
    areas = block_areas(hw)
    m = 9 * label_nc * fc * (hw[0] // 2 ** N_UP) * (hw[1] // 2 ** N_UP)
    fin = fc
    for out, mid, hid, area, learned in zip(outs, mids, hiddens, areas, SPADE_LEARNED_SHORTCUT):
        m = m + area * spade_block_macs(fin, out, mid, hid, label_nc, ks, learned)
        fin = out
    return m + 9 * outs[-1] * 3 * hw[0] * hw[1]

"""A teacher whose layout the student skeleton can express, written as an ArchSpec + weights.

Why: GAN Slimming (and any pruning method) shrinks the pretrained generator itself, as the paper
does, instead of a network trained from scratch; that needs the teacher as a student of the same
skeleton whose outputs equal the teacher's.

Expressible today: `cyclegan-resnet` with instance norm (the public CycleGAN release's default), and
`spade` (GauGAN without z, "normal" up-sampling: the label2image skeleton is GauGAN's layout).
Its layout is the translation skeleton exactly: 7x7 stem (ngf), two stride-2 3x3 convs (2 ngf,
4 ngf; zero padding, hence `down_pad="zeros"`), n residual blocks at 4 ngf (a cell of two conv3x3
layers, the last linear, with the cell's residual), two ConvTranspose2d (2 ngf, ngf), 7x7 output
conv and tanh. The norms carry no affine parameters (they load as scale 1, shift 0), dropout is
inactive at inference, and the teacher's [-1, 1] input range is folded into the stem (the student
takes [0, 1]: W(2x - 1) + b = (2W)x + (b - sum W), exact under reflection padding); the output
(tanh + 1) / 2 is the student's own.

Not expressible (they keep the space network, and the run says so): batch-norm CycleGANs, the
pix2pix U-Net (skip concatenations), SRGAN (9x9 head, batch norm, PReLU, no bicubic skip),
SRResNet and ESRGAN's RRDB blocks, and every black box.
"""

from __future__ import annotations

import torch

from ..arch.spec import ArchSpec, FrameSpec, spade_spec_of, uniform_translate_spec


def teacher_as_student(teacher) -> tuple[ArchSpec, dict] | None:
    """(spec, student state dict) whose built student computes the teacher's outputs, or None."""
    kind = teacher.kind_name
    info = getattr(teacher, "info", {})
    if kind == "spade":
        return _spade_as_student(teacher, info)
    if kind != "cyclegan-resnet" or info.get("norm") != "instance" or teacher.value_range != (-1.0, 1.0):
        return None
    g = teacher.model
    ngf, n = info["ngf"], info["n_blocks"]
    if g.model[1].in_channels != 3 or g.model[-2].out_channels != 3:
        return None
    frame = FrameSpec(ngf, [2 * ngf], [2 * ngf, ngf], "deconv", 7, 7, down_pad="zeros")
    spec = uniform_translate_spec(4 * ngf, n, 2, frame=frame)
    spec.meta = {"from_teacher": teacher.source}
    m = [x for x in g.model]
    convs = [x for x in m if isinstance(x, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    blocks = [x for x in m if hasattr(x, "conv_block")]
    stem, d0, d1, u0, u1, out = convs[0], convs[1], convs[2], convs[3], convs[4], convs[5]
    sd = {}

    def conv(name, c, w=None, b=None):
        sd[f"{name}.weight"] = (c.weight if w is None else w).detach().clone()
        sd[f"{name}.bias"] = (c.bias if b is None else b).detach().clone()

    def norm(name, c):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = torch.ones(c), torch.zeros(c)

    # [-1, 1] input folded into the stem
    conv("stem.0", stem, 2 * stem.weight, stem.bias - stem.weight.sum(dim=(1, 2, 3)))
    norm("stem.1", ngf)
    for i, c in enumerate((d0, d1)):
        conv(f"down.{i}.0", c)
        norm(f"down.{i}.1", c.out_channels)
    for ci, blk in enumerate(blocks):
        bc = [x for x in blk.conv_block if isinstance(x, torch.nn.Conv2d)]
        for li, c in enumerate(bc):
            conv(f"cells.{ci}.layers.{li}.conv", c)
            norm(f"cells.{ci}.layers.{li}.norm", c.out_channels)
    for i, c in enumerate((u0, u1)):
        conv(f"up.{i}.conv", c)
        norm(f"up.{i}.norm", c.out_channels)
    conv("out", out)
    return spec, sd


def _spade_as_student(teacher, info) -> tuple[ArchSpec, dict] | None:
    """A GauGAN generator (no z, "normal" up-sampling) is the SPADE student skeleton at its own
    widths, parameter names and all: its state dict loads as it is (outputs equal: tested)."""
    if info.get("z_dim") or info.get("num_upsampling") != "normal" or teacher.value_range != (-1.0, 1.0):
        return None
    ngf, hidden = info["ngf"], info["hidden"]
    spec = spade_spec_of(info["label_nc"], 16 * ngf, [8 * ngf, 4 * ngf, 2 * ngf, ngf], None, [hidden] * 7,
                         info["norm"], info["ks"])
    spec.meta = {"from_teacher": teacher.source}
    return spec, {k: v.detach().clone() for k, v in teacher.model.state_dict().items()}

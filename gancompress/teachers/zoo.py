"""Zoo of known generator architectures (SR here; translation in `zoo_translate`), rebuilt from their checkpoints alone.

Each architecture is a plain `nn.Module` whose parameter names match the public checkpoints, so a
downloaded state dict loads without renaming. `from_state_dict` reads the hyper-parameters (width,
depth, scale) off tensor shapes and key names: users should not need to know how a checkpoint was
configured to use it as a teacher.

Each model also has `feature_layers()`: named layers (module paths) that feature distillation
can hook. Names, never indices, so a changed depth cannot silently shift what is distilled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .generic import ZOO_KINDS, clean_state_dict, fitted
from .zoo_translate import ResnetGenerator, UnetGenerator, cyclegan_from_state_dict, unet_from_state_dict


def _upsample_steps(scale: int) -> int:
    """Number of x2 stages for `scale`; these generators only upsample by powers of two."""
    if not isinstance(scale, int) or scale < 1 or scale & (scale - 1):
        raise UserError(f"scale {scale!r} is not supported here; use a power of two (2, 4, ...)")
    return int(math.log2(scale))


def _indices(sd: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    """Sorted distinct integers captured by `pattern` (one group) over the keys of `sd`."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})


def _dim(sd: Mapping[str, torch.Tensor], key: str, axis: int, default: int) -> int:
    t = sd.get(key)
    return int(t.shape[axis]) if t is not None and t.dim() > axis else default


# =============================================================================== SRGAN
class _SRGANResidual(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip (SRGAN's residual block)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(nf)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(nf, nf, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(nf)

    def forward(self, x):
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class _SRGANUpsample(nn.Module):
    """conv to 4x channels -> PixelShuffle(2) -> PReLU: one x2 step."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv = nn.Conv2d(nf, nf * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x):
        return self.prelu(self.shuffle(self.conv(x)))


class SRGAN(nn.Module):
    """SRGAN generator in the `block1`..`block8` layout of the shared checkpoints.

    Blocks are numbered as in those checkpoints: `block1` head, `block2`..`block{n_blocks+1}`
    residual blocks, then `block{n_blocks+2}` (conv + PReLU) and `block{n_blocks+3}` (upsampling
    + final 9x9 conv). With the standard n_blocks=5 these are `block7` and `block8`.
    Output is (tanh(y) + 1) / 2, i.e. RGB in [0, 1] like the input.
    """

    def __init__(self, scale: int = 4, nf: int = 64, n_blocks: int = 5):
        super().__init__()
        n_up = _upsample_steps(scale)
        self.scale, self.nf, self.n_blocks = scale, nf, n_blocks
        self.block1 = nn.Sequential(nn.Conv2d(3, nf, 9, padding=4), nn.PReLU())
        self.residual_names = [f"block{i}" for i in range(2, n_blocks + 2)]
        for name in self.residual_names:
            setattr(self, name, _SRGANResidual(nf))
        self.post_name = f"block{n_blocks + 2}"
        setattr(self, self.post_name, nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.PReLU()))
        self.tail_name = f"block{n_blocks + 3}"
        tail = [_SRGANUpsample(nf) for _ in range(n_up)] + [nn.Conv2d(nf, 3, 9, padding=4)]
        setattr(self, self.tail_name, nn.Sequential(*tail))

    def forward(self, x):
        b1 = self.block1(x)
        h = b1
        for name in self.residual_names:
            h = getattr(self, name)(h)
        h = getattr(self, self.post_name)(h)
        y = getattr(self, self.tail_name)(b1 + h)
        return (torch.tanh(y) + 1) / 2

    def feature_layers(self) -> dict[str, str]:
        mid = self.residual_names[len(self.residual_names) // 2] if self.residual_names else "block1"
        return {"head": "block1", "body_mid": mid, "body_out": self.post_name}


def srgan_from_state_dict(sd, source: str = "<state dict>") -> tuple[SRGAN, dict]:
    """Build an SRGAN fitted to `sd`: nf from block1's conv, depth from the residual blocks,
    scale from the number of upsample blocks in the last block."""
    sd = clean_state_dict(sd, source)
    nf = _dim(sd, "block1.0.weight", 0, 64)
    residual = _indices(sd, r"block(\d+)\.conv1\.weight$")
    n_blocks = len(residual) if residual else 5
    tail = n_blocks + 3
    n_up = len(_indices(sd, rf"block{tail}\.(\d+)\.conv\.weight$")) if residual else 2
    info = {"nf": nf, "nb": n_blocks, "scale": 2 ** n_up}
    model = SRGAN(scale=info["scale"], nf=nf, n_blocks=n_blocks)
    what = f"zoo model 'srgan' (SRGAN nf={nf} n_blocks={n_blocks} x{info['scale']})"
    return fitted(model, sd, source, what), info


# =============================================================================== RRDBNet
class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the residual is scaled by 0.2 to keep a deep net stable."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, padding=1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, padding=1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, padding=1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, padding=1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs inside another 0.2-scaled residual."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x):
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator with BasicSR's parameter names.

    Upsampling is (nearest x2 -> conv3x3 -> LeakyReLU) once per factor of two, in layers
    `conv_up1`, `conv_up2`, ... `unshuffle` > 1 reproduces BasicSR's x2/x1 variants (Real-ESRGAN
    x2plus), which pixel-unshuffle the input first and keep two upsampling stages; it is inferred
    from `conv_first`'s input channels, so plain users never set it.
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 23, gc: int = 32,
                 scale: int = 4, unshuffle: int = 1):
        super().__init__()
        n_up = _upsample_steps(scale * unshuffle)
        self.scale, self.nf, self.nb, self.gc, self.unshuffle = scale, nf, nb, gc, unshuffle
        self.conv_first = nn.Conv2d(in_nc * unshuffle ** 2, nf, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.up_names = [f"conv_up{i}" for i in range(1, n_up + 1)]
        for name in self.up_names:
            setattr(self, name, nn.Conv2d(nf, nf, 3, padding=1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        h, w = x.shape[-2:]
        if self.unshuffle > 1:  # pad odd sizes so pixel_unshuffle works, crop the output back
            u = self.unshuffle
            x = F.pad(x, (0, (-w) % u, 0, (-h) % u), mode="reflect" if min(h, w) > 1 else "replicate")
            x = F.pixel_unshuffle(x, u)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for name in self.up_names:
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = self.lrelu(getattr(self, name)(up))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        if self.unshuffle > 1:
            s = 2 ** len(self.up_names) // self.unshuffle
            out = out[..., : h * s, : w * s]
        return out

    def feature_layers(self) -> dict[str, str]:
        names = {"head": "conv_first", "body_out": "conv_body", "hr": "conv_hr"}
        if self.nb:
            names["body_mid"] = f"body.{self.nb // 2}"
        return names


# Original ESRGAN release (xinntao/ESRGAN, "new arch") -> BasicSR names. Some re-saves wrap each
# RDB conv in a Sequential, hence the optional ".0".
_ESRGAN_KEY_RULES = [
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])(?:\.0)?\.(weight|bias)$"),
     r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"^trunk_conv\.(weight|bias)$"), r"conv_body.\1"),
    (re.compile(r"^upconv(\d+)\.(weight|bias)$"), r"conv_up\1.\2"),
    (re.compile(r"^HRconv\.(weight|bias)$"), r"conv_hr.\1"),
]


def esrgan_key_to_basicsr(key: str) -> str:
    """Rename one key of the original ESRGAN release to BasicSR's name (others pass through)."""
    for rx, repl in _ESRGAN_KEY_RULES:
        if rx.match(key):
            return rx.sub(repl, key)
    return key


def basicsr_key_to_esrgan(key: str, wrapped_convs: bool = False) -> str:
    """Inverse of `esrgan_key_to_basicsr` (for tests and for exporting to old tools).

    `wrapped_convs=True` writes RDB convs as `conv1.0.weight` (Sequential-wrapped form)."""
    m = re.match(r"^body\.(\d+)\.rdb([123])\.conv([1-5])\.(weight|bias)$", key)
    if m:
        i, r, c, p = m.groups()
        return f"RRDB_trunk.{i}.RDB{r}.conv{c}{'.0' if wrapped_convs else ''}.{p}"
    for old, new in (("conv_body.", "trunk_conv."), ("conv_hr.", "HRconv.")):
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"^conv_up(\d+)\.(weight|bias)$", key)
    if m:
        return f"upconv{m.group(1)}.{m.group(2)}"
    return key


def _old_arch_to_basicsr(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert the very first ESRGAN layout (`model.0`, `model.1.sub.*`, `model.3`, ...).

    Convs after the trunk sit at increasing `model.N` positions: the last two are HR conv and
    output conv, the ones before are the upsampling convs, in order.
    """
    out: dict[str, torch.Tensor] = {}
    tail = _indices(sd, r"model\.(\d+)\.weight$")
    tail = [n for n in tail if n >= 2]
    names = {n: f"conv_up{i + 1}" for i, n in enumerate(tail[:-2])}
    if len(tail) >= 2:
        names[tail[-2]], names[tail[-1]] = "conv_hr", "conv_last"
    for key, value in sd.items():
        new = key
        if m := re.match(r"^model\.0\.(weight|bias)$", key):
            new = f"conv_first.{m.group(1)}"
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$", key):
            new = "body.{}.rdb{}.conv{}.{}".format(*m.groups())
        elif m := re.match(r"^model\.1\.sub\.\d+\.(weight|bias)$", key):
            new = f"conv_body.{m.group(1)}"
        elif (m := re.match(r"^model\.(\d+)\.(weight|bias)$", key)) and int(m.group(1)) in names:
            new = f"{names[int(m.group(1))]}.{m.group(2)}"
        out[new] = value
    return out


def convert_esrgan_state_dict(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Rename an ESRGAN state dict to BasicSR names; returns (dict, which layout it came in)."""
    if any(k.startswith("model.1.sub.") for k in sd):
        return _old_arch_to_basicsr(sd), "esrgan-old-arch"
    if any(k.startswith(("RRDB_trunk.", "trunk_conv.", "HRconv.")) for k in sd):
        return {esrgan_key_to_basicsr(k): v for k, v in sd.items()}, "esrgan-original"
    return dict(sd), "basicsr"


def rrdbnet_from_state_dict(sd, source: str = "<state dict>") -> tuple[RRDBNet, dict]:
    """Build an RRDBNet fitted to `sd`: nf/gc from the first RDB, nb from the body indices, scale
    from the number of `conv_up*` layers (and `conv_first`'s input channels for unshuffle)."""
    sd, layout = convert_esrgan_state_dict(clean_state_dict(sd, source))
    nf = _dim(sd, "conv_first.weight", 0, 64)
    in_ch = _dim(sd, "conv_first.weight", 1, 3)
    out_nc = _dim(sd, "conv_last.weight", 0, 3)
    gc = _dim(sd, "body.0.rdb1.conv1.weight", 0, 32)
    body = _indices(sd, r"body\.(\d+)\.")
    nb = len(body) if body else 23
    n_up = len(_indices(sd, r"conv_up(\d+)\.weight$")) if "conv_first.weight" in sd else 2
    unshuffle = {out_nc * 4: 2, out_nc * 16: 4}.get(in_ch, 1) if in_ch != out_nc else 1
    in_nc = in_ch // unshuffle ** 2
    scale = 2 ** n_up // unshuffle if 2 ** n_up >= unshuffle else 1
    info = {"nf": nf, "nb": nb, "gc": gc, "scale": scale, "in_nc": in_nc, "out_nc": out_nc,
            "unshuffle": unshuffle, "layout": layout}
    model = RRDBNet(in_nc, out_nc, nf=nf, nb=nb, gc=gc, scale=scale, unshuffle=unshuffle)
    return fitted(model, sd, source, f"zoo model 'esrgan' (RRDBNet nf={nf} nb={nb} gc={gc} "
                                      f"x{scale})"), info


# =============================================================================== SRResNet
class ResidualBlockNoBN(nn.Module):
    """conv-ReLU-conv with identity skip and no BatchNorm (BN hurts SR fidelity; EDSR/MSRResNet)."""

    def __init__(self, nf: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv2 = nn.Conv2d(nf, nf, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


class SRResNet(nn.Module):
    """BasicSR's MSRResNet: residual body without BN, PixelShuffle upsampling, and the output
    added to a bilinear upsampling of the input (so the network only learns the detail)."""

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 16, scale: int = 4):
        super().__init__()
        if scale not in (2, 3, 4):
            raise UserError(f"SRResNet supports scale 2, 3 or 4, not {scale!r}")
        self.scale, self.nf, self.nb = scale, nf, nb
        self.conv_first = nn.Conv2d(in_nc, nf, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(nf) for _ in range(nb)])
        step = 3 if scale == 3 else 2
        self.upconv1 = nn.Conv2d(nf, nf * step * step, 3, padding=1)
        self.upconv2 = nn.Conv2d(nf, nf * 4, 3, padding=1) if scale == 4 else None
        self.pixel_shuffle = nn.PixelShuffle(step)
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upconv2 is not None:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out + base

    def feature_layers(self) -> dict[str, str]:
        names = {"head": "conv_first", "body_out": "body", "hr": "conv_hr"}
        if self.nb:
            names["body_mid"] = f"body.{self.nb // 2}"
        return names


def srresnet_from_state_dict(sd, source: str = "<state dict>") -> tuple[SRResNet, dict]:
    """Build an SRResNet fitted to `sd`: scale 4 if `upconv2` exists, else 3 or 2 from
    `upconv1`'s output channels (9*nf for PixelShuffle(3), 4*nf for PixelShuffle(2))."""
    sd = clean_state_dict(sd, source)
    nf = _dim(sd, "conv_first.weight", 0, 64)
    in_nc = _dim(sd, "conv_first.weight", 1, 3)
    out_nc = _dim(sd, "conv_last.weight", 0, 3)
    body = _indices(sd, r"body\.(\d+)\.conv1\.weight$")
    nb = len(body) if body else 16
    if "upconv2.weight" in sd or "upconv1.weight" not in sd:
        scale = 4
    else:
        scale = 3 if _dim(sd, "upconv1.weight", 0, 4 * nf) == 9 * nf else 2
    info = {"nf": nf, "nb": nb, "scale": scale, "in_nc": in_nc, "out_nc": out_nc}
    model = SRResNet(in_nc, out_nc, nf=nf, nb=nb, scale=scale)
    return fitted(model, sd, source, f"zoo model 'srresnet' (SRResNet nf={nf} nb={nb} "
                                      f"x{scale})"), info


# =============================================================================== registry
@dataclass(frozen=True)
class ZooEntry:
    """What the loaders need to know about one zoo architecture."""

    name: str
    builder: Callable[..., nn.Module]
    from_state_dict: Callable[..., tuple[nn.Module, dict]]
    value_range: tuple[float, float] = (0.0, 1.0)
    # Feature-distillation layers of the default configuration; use `model.feature_layers()`
    # for the layers of a particular (possibly deeper/shallower) instance.
    layer_names: dict[str, str] = field(default_factory=dict)
    description: str = ""
    task: str = "sr"  # sr | translate | label2image (the input is a one-hot label map, never range-mapped)


ZOO: dict[str, ZooEntry] = {
    "srgan": ZooEntry(
        "srgan", SRGAN, srgan_from_state_dict, (0.0, 1.0),
        {"head": "block1", "body_mid": "block4", "body_out": "block7"},
        "SRGAN generator (block1..block8 layout, BN residual blocks, tanh output)",
    ),
    "esrgan": ZooEntry(
        "esrgan", RRDBNet, rrdbnet_from_state_dict, (0.0, 1.0),
        {"head": "conv_first", "body_mid": "body.11", "body_out": "conv_body", "hr": "conv_hr"},
        "ESRGAN RRDBNet (BasicSR or original ESRGAN key names)",
    ),
    "srresnet": ZooEntry(
        "srresnet", SRResNet, srresnet_from_state_dict, (0.0, 1.0),
        {"head": "conv_first", "body_mid": "body.8", "body_out": "body", "hr": "conv_hr"},
        "BasicSR MSRResNet (no BN, bilinear skip)",
    ),
    "cyclegan-resnet": ZooEntry(
        "cyclegan-resnet", ResnetGenerator, cyclegan_from_state_dict, (-1.0, 1.0),
        {"encoder": "model.9", "trunk_mid": "model.14", "trunk_out": "model.18"},
        "CycleGAN/pix2pix ResnetGenerator (public release `model.N` keys)", task="translate",
    ),
    "pix2pix-unet": ZooEntry(
        "pix2pix-unet", UnetGenerator, unet_from_state_dict, (-1.0, 1.0),
        {"encoder_2": "model.model.1", "encoder_3": "model.model.1.model.3"},
        "pix2pix UnetGenerator (public release `model.model.*` keys)", task="translate",
    ),
}
ZOO_KINDS.extend(ZOO)  # for the hint of a checkpoint that does not fit its kind (generic.fitted)


def _add_spade() -> None:
    from .zoo_spade import SPADEGenerator, spade_from_state_dict

    ZOO["spade"] = ZooEntry("spade", SPADEGenerator, spade_from_state_dict, (-1.0, 1.0),
                            {"head": "head_0", "middle": "G_middle_1", "up_1": "up_1", "up_3": "up_3"},
                            "GauGAN/SPADE generator (public SPADE release keys, spectral norm folded)",
                            task="label2image")


_add_spade()

"""Image-to-image translation generators of the public CycleGAN / pix2pix PyTorch release,
rebuilt from their checkpoints alone (parameter names `model.N.*` exactly as that release saves
them, so a `latest_net_G.pth` loads without renaming).

`cyclegan-resnet`: ResnetGenerator. Reflection pad + 7x7 stem, two stride-2 3x3 convs, n residual
blocks at 4*ngf (reflection-padded conv-norm-ReLU-conv-norm), two stride-2 ConvTranspose2d, 7x7
output conv, tanh. Instance norm without affine parameters (the release's default for CycleGAN)
or batch norm (detected from the keys).

`pix2pix-unet`: UnetGenerator: nested skip blocks (4x4 stride-2 convs down, ConvTranspose2d up,
concatenated skips), num_downs levels (8 for 256x256 inputs), batch norm by default.

Both work in [-1, 1]. The hyper-parameters (ngf, n_blocks or num_downs, norm, dropout) are read off
the checkpoint's shapes and key names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import UserError
from .generic import fitted


def _norm_layer(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


# =============================================================================== ResNet generator
class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm_layer(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator (`model.N` layout). Input/output in [-1, 1]."""

    def __init__(self, in_nc: int = 3, out_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: bool = False):
        super().__init__()
        self.ngf, self.n_blocks = ngf, n_blocks
        bias = norm == "instance"
        m: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias),
                              _norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2 ** i
            m += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), _norm_layer(norm, 2 * c), nn.ReLU(True)]
        self.first_block = len(m)
        m += [ResnetBlock(4 * ngf, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            m += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                  _norm_layer(norm, c // 2), nn.ReLU(True)]
        m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*m)

    def forward(self, x):
        return self.model(x)

    def feature_layers(self) -> dict[str, str]:
        """Named layers for feature distillation: the end of the encoder, the middle and the end
        of the residual trunk (module paths inside this model)."""
        b0, n = self.first_block, self.n_blocks
        return {"encoder": f"model.{b0 - 1}", "trunk_mid": f"model.{b0 + n // 2}",
                "trunk_out": f"model.{b0 + n - 1}"}


def _drop_instance_norm_stats(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints saved by old PyTorch versions carry running stats for InstanceNorm layers that
    track none; they carry no information and are dropped."""
    return {k: v for k, v in sd.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def cyclegan_from_state_dict(sd, source: str = "<state dict>"):
    keys = set(sd)
    if "model.1.weight" not in keys:
        raise UserError(f"{source} is not a CycleGAN ResnetGenerator checkpoint (no 'model.1.weight'; "
                        "expected the public release's `model.N.*` keys)")
    w = sd["model.1.weight"]
    ngf, in_nc = int(w.shape[0]), int(w.shape[1])
    norm = "batch" if "model.2.weight" in keys else "instance"
    if norm == "instance":
        sd = _drop_instance_norm_stats(sd)
    blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"model\.(\d+)\.conv_block\.", k)] if m})
    if not blocks:
        raise UserError(f"{source}: no residual blocks (`model.N.conv_block.*`) found; is this a "
                        "CycleGAN ResnetGenerator checkpoint?")
    dropout = any(".conv_block.6." in k for k in sd)
    out_key = f"model.{blocks[-1] + 8}.weight"
    out_nc = int(sd[out_key].shape[0]) if out_key in sd else 3
    model = ResnetGenerator(in_nc, out_nc, ngf, len(blocks), norm, dropout)
    info = {"scale": 1, "ngf": ngf, "n_blocks": len(blocks), "norm": norm, "dropout": dropout}
    return fitted(model, sd, source, f"zoo model 'cyclegan-resnet' (ngf={ngf}, {len(blocks)} blocks, "
                                      f"{norm} norm)"), info


# =============================================================================== U-Net generator
class UnetSkipBlock(nn.Module):
    """One level of the pix2pix U-Net: down (conv 4x4 s2), the inner levels, up (ConvTranspose2d
    4x4 s2); non-outermost levels concatenate their input to their output (the skip)."""

    def __init__(self, outer_nc: int, inner_nc: int, in_nc: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        in_nc = outer_nc if in_nc is None else in_nc
        down = nn.Conv2d(in_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [down, sub, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, _norm_layer(norm, outer_nc)]
        else:
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, _norm_layer(norm, inner_nc), sub,
                      nn.ReLU(True), up, _norm_layer(norm, outer_nc)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net generator (`model.model.*` layout). Input side must be divisible by
    2**num_downs (256 for the default 8 levels). Input/output in [-1, 1]."""

    def __init__(self, in_nc: int = 3, out_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False):
        super().__init__()
        if num_downs < 5:
            raise UserError(f"a pix2pix U-Net needs at least 5 levels, got {num_downs}")
        self.num_downs = num_downs
        b = UnetSkipBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            b = UnetSkipBlock(ngf * 8, ngf * 8, sub=b, norm=norm, dropout=dropout)
        b = UnetSkipBlock(ngf * 4, ngf * 8, sub=b, norm=norm)
        b = UnetSkipBlock(ngf * 2, ngf * 4, sub=b, norm=norm)
        b = UnetSkipBlock(ngf, ngf * 2, sub=b, norm=norm)
        self.model = UnetSkipBlock(out_nc, ngf, in_nc=in_nc, sub=b, outermost=True, norm=norm)

    def forward(self, x):
        m = 2 ** self.num_downs
        if x.shape[-1] % m or x.shape[-2] % m:
            raise UserError(f"the pix2pix U-Net teacher ({self.num_downs} levels) needs image sides "
                            f"divisible by {m}; got {tuple(x.shape[-2:])} (use --size {max(m, 256)})")
        return self.model(x)

    def feature_layers(self) -> dict[str, str]:
        return {"encoder_2": "model.model.1", "encoder_3": "model.model.1.model.3"}


def unet_from_state_dict(sd, source: str = "<state dict>"):
    if "model.model.0.weight" not in sd:
        raise UserError(f"{source} is not a pix2pix UnetGenerator checkpoint (no 'model.model.0.weight')")
    w = sd["model.model.0.weight"]
    ngf, in_nc = int(w.shape[0]), int(w.shape[1])
    # level 2 sits at model.model.1; each deeper level at `.model.3` of the one above it
    nest = re.compile(r"\.model\.3(?=\.model\.)")
    num_downs = 2 + max((len(nest.findall(k)) for k in sd if k.startswith("model.model.1.")), default=-2)
    norm = "batch" if any(k.endswith("running_mean") for k in sd) else "instance"
    if norm == "instance":
        sd = _drop_instance_norm_stats(sd)
    out_nc = int(sd["model.model.3.weight"].shape[1]) if "model.model.3.weight" in sd else 3
    # Dropout has no parameters and is off in eval mode: it cannot be (and need not be) detected
    model = UnetGenerator(in_nc, out_nc, num_downs, ngf, norm)
    info = {"scale": 1, "ngf": ngf, "num_downs": num_downs, "norm": norm}
    return fitted(model, sd, source, f"zoo model 'pix2pix-unet' (ngf={ngf}, {num_downs} levels, "
                                      f"{norm} norm)"), info

"""GauGAN / SPADE generators (label map -> image) of the public SPADE release, rebuilt from their
checkpoints alone (parameter names exactly as that release saves `latest_net_G.pth`).

Layout: `fc` (a 3x3 conv of the label map resized to the coarsest grid, or, in the `z` variant, a
Linear layer from a latent vector), `head_0`, `G_middle_0`, `G_middle_1`, `up_0..up_3` (`up_4`
when the release's `num_upsampling_layers` is "most"), then leaky ReLU, `conv_img` (3x3 to RGB),
tanh. Every block is a SPADEResnetBlock: `norm_0 -> lrelu -> conv_0 -> norm_1 -> lrelu -> conv_1`
plus a shortcut, learned (`norm_s -> conv_s`, 1x1 without bias) when the width changes. SPADE
normalization: a parameter-free norm (synchronized batch norm with running statistics, or
instance norm), then `x * (1 + gamma) + beta` where `gamma`, `beta` are 3x3 convs (`mlp_gamma`,
`mlp_beta`) of a shared hidden layer (`mlp_shared.0`, conv + ReLU) of the label map resized to x
(nearest).

Spectral norm: the release stores `weight_orig`, `weight_u`, `weight_v`; in eval mode PyTorch uses
weight = weight_orig / sigma with sigma = u . (W v), W = weight_orig as (out, -1), no power
iteration. We fold that once at load (`fold_spectral_norm`), so the teacher is a plain network.

What the file tells: ngf (fc's width / 16), the label channels (fc's input, or the SPADE
hidden layer's input in the `z` variant), the SPADE hidden width and kernel, batch vs instance
norm (running statistics present or not), `up_4` ("most"). What it cannot tell: "normal" and
"more" up-sampling both have `G_middle_1` and differ only by a weight-free up-sampling; "normal"
(every public checkpoint's) is assumed, `num_upsampling` overrides. The coarsest grid is the
input's size / 2^(up-samplings), so any input whose sides divide by that runs.

Input: a one-hot label map (N, label channels, H, W) (plus the instance-edge channel when the
model was trained with one: it is just one more input channel here). Output RGB in [-1, 1].
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..arch.spade import SPADEResnetBlock
from .generic import fitted

UPSAMPLINGS = {"normal": 5, "more": 6, "most": 7}


class SPADEGenerator(nn.Module):
    """GauGAN's generator (public release layout). Input: one-hot label map; output in [-1, 1].
    `z_dim` > 0: the `z` variant (fc is a Linear layer from a latent; `forward(seg, z)`, z = 0 when
    not given, the deterministic output)."""

    def __init__(self, label_nc: int, ngf: int = 64, num_upsampling: str = "normal", hidden: int = 128,
                 ks: int = 3, norm: str = "batch", z_dim: int = 0, aspect: float = 1.0, crop: int = 256):
        super().__init__()
        if num_upsampling not in UPSAMPLINGS:
            raise UserError(f"num_upsampling must be one of {', '.join(UPSAMPLINGS)}, got {num_upsampling!r}")
        self.label_nc, self.ngf, self.num_upsampling, self.z_dim = label_nc, ngf, num_upsampling, z_dim
        self.n_up = UPSAMPLINGS[num_upsampling]
        nf = ngf
        if z_dim:  # the latent is mapped to a fixed grid: the release's crop size and aspect ratio
            self.sw = crop // 2 ** self.n_up
            self.sh = round(self.sw / aspect)
            self.fc = nn.Linear(z_dim, 16 * nf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * nf, 3, padding=1)
        blk = dict(label_nc=label_nc, hidden=hidden, ks=ks, norm=norm)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, **blk)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, **blk)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, **blk)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, **blk)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, **blk)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, **blk)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, **blk)
        final = nf
        if num_upsampling == "most":
            self.up_4 = SPADEResnetBlock(nf, nf // 2, **blk)
            final = nf // 2
        self.conv_img = nn.Conv2d(final, 3, 3, padding=1)

    def feature_layers(self) -> dict[str, str]:
        return {"head": "head_0", "middle": "G_middle_1", "up_1": "up_1", "up_3": "up_3"}

    @staticmethod
    def _up(x):
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, seg, z=None):
        h, w = seg.shape[-2:]
        k = 2 ** self.n_up
        if h % k or w % k:
            raise UserError(f"a SPADE generator with {self.n_up} up-samplings needs label maps whose sides "
                            f"are multiples of {k}, got {h}x{w}")
        if self.z_dim:
            if z is None:
                z = seg.new_zeros(seg.shape[0], self.z_dim)
            x = self.fc(z).view(-1, 16 * self.ngf, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(h // k, w // k), mode="nearest"))
        x = self.head_0(x, seg)
        x = self._up(x)
        x = self.G_middle_0(x, seg)
        if self.num_upsampling in ("more", "most"):
            x = self._up(x)
        x = self.G_middle_1(x, seg)
        for name in ("up_0", "up_1", "up_2", "up_3"):
            x = getattr(self, name)(self._up(x), seg)
        if self.num_upsampling == "most":
            x = self.up_4(self._up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def fold_spectral_norm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`X.weight_orig`, `X.weight_u`, `X.weight_v` -> `X.weight` = weight_orig / (u . W v): the
    weight PyTorch's spectral_norm uses in eval mode. Other entries pass through."""
    def named(k, suffix):
        return k == suffix or k.endswith("." + suffix)

    out = {}
    for k, v in sd.items():
        if named(k, "weight_u") or named(k, "weight_v"):
            continue
        if named(k, "weight_orig"):
            base = k[: -len("_orig")]
            u, vv = sd.get(base + "_u"), sd.get(base + "_v")
            if u is None or vv is None:
                raise UserError(f"{k} has no {base}_u / {base}_v beside it: a spectral-norm weight needs both")
            w = v.float()
            sigma = torch.dot(u.float(), w.reshape(w.shape[0], -1) @ vv.float())
            out[base] = (w / sigma).to(v.dtype)
        else:
            out[k] = v
    return out


def spade_from_state_dict(sd, source: str = "<state dict>", num_upsampling: str | None = None):
    sd = fold_spectral_norm(sd)
    if "fc.weight" not in sd or "head_0.conv_0.weight" not in sd:
        raise UserError(f"{source} is not a SPADE/GauGAN generator checkpoint (no 'fc.weight' / "
                        "'head_0.conv_0.weight'; expected the public SPADE release's key names)")
    shared = sd.get("head_0.norm_0.mlp_shared.0.weight")
    if shared is None:
        raise UserError(f"{source}: no 'head_0.norm_0.mlp_shared.0.weight'; is this a SPADE generator?")
    hidden, label_nc, ks = int(shared.shape[0]), int(shared.shape[1]), int(shared.shape[-1])
    fc = sd["fc.weight"]
    z_dim, info_z = 0, {}
    if fc.dim() == 2:  # the z variant: Linear(z_dim, 16 nf sh sw)
        z_dim = int(fc.shape[1])
        ngf = int(sd["head_0.conv_0.weight"].shape[0]) // 16
        cells = int(fc.shape[0]) // (16 * ngf)
        info_z = {"z_dim": z_dim, "latent_grid": cells}
    else:
        ngf = int(fc.shape[0]) // 16
        if int(fc.shape[1]) != label_nc:
            raise UserError(f"{source}: fc reads {int(fc.shape[1])} channels but SPADE reads {label_nc}")
    norm = "batch" if "head_0.norm_0.param_free_norm.running_mean" in sd else "instance"
    most = any(re.match(r"up_4\.", k) for k in sd)
    ups = "most" if most else (num_upsampling or "normal")
    if most and num_upsampling not in (None, "most"):
        raise UserError(f"{source} has up_4: its num_upsampling is 'most', not {num_upsampling!r}")
    kw = {}
    if z_dim:  # the latent grid: sw * sh cells; the release's aspect ratio from them (sw >= sh)
        import math

        sw = next((c for c in range(math.isqrt(cells), cells + 1) if cells % c == 0 and c >= cells // c), cells)
        kw = {"crop": sw * 2 ** UPSAMPLINGS[ups], "aspect": sw / (cells // sw)}
    model = SPADEGenerator(label_nc, ngf, ups, hidden, ks, norm, z_dim, **kw)
    info = {"scale": 1, "ngf": ngf, "label_nc": label_nc, "hidden": hidden, "ks": ks, "norm": norm,
            "num_upsampling": ups, "in_channels": label_nc, **info_z}
    return fitted(model, sd, source, f"zoo model 'spade' (ngf={ngf}, {label_nc} label channels, {ups} "
                                      f"up-sampling, {norm} norm)"), info

"""Optional perceptual (VGG feature) losses, from weights the user supplies.

ImageNet VGG weights cannot be downloaded here, so these losses exist only when the user points
`--perceptual-weights` at a VGG16 or VGG19 state dict in torchvision's layout
(`features.N.weight/bias`; which one is read off the keys; classifier keys are ignored). With
ImageNet normalisation:
* `sr`: features compared (L1) at the last conv (conv5_4 / conv5_3) before its activation, as ESRGAN;
* `style` (translation, as AGD's style-transfer losses): content L1 at relu4_2 plus style: L1
  between Gram matrices (normalised by C*H*W) at relu1_2, relu2_2, relu3_3 and relu4_3.
The weights are never saved into a student checkpoint. Untuned: no VGG weights are available to
this project, so no setting of these terms has been measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

# torchvision's VGG `features` configurations; "M" = max-pool
_CFGS = {
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
}
_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
_CONTENT_LAYER = "relu4_2"


def _layer_names(cfg) -> list[str]:
    """Name of every module of `features` (conv{b}_{i}, relu{b}_{i}, pool{b})."""
    names, block, i = [], 1, 0
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 0
        else:
            i += 1
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
    return names
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class PerceptualLoss(nn.Module):
    def __init__(self, weights_path: str, mode: str = "sr"):
        super().__init__()
        from ..teachers.generic import load_weights_file

        sd = load_weights_file(weights_path)
        conv_idx = [int(k.split(".")[1]) for k in sd if k.startswith("features.") and k.endswith(".weight")]
        depth = 16 if conv_idx and max(conv_idx) == 28 else 19
        cfg = _CFGS[depth]
        self.mode, self.names = mode, _layer_names(cfg)
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        layers = layers[:-1]  # stop at the last conv, before its ReLU
        self.features = nn.Sequential(*layers)
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        own = self.features.state_dict()
        missing = [k for k in own if k not in feats]
        if missing:
            raise UserError(f"{weights_path} is not a VGG16/VGG19 state dict in torchvision's layout: missing "
                            f"{missing[:4]}; save `torchvision.models.vgg19(...).state_dict()`")
        self.features.load_state_dict({k: feats[k] for k in own})
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", _MEAN.clone(), persistent=False)
        self.register_buffer("std", _STD.clone(), persistent=False)
        self.eval()

    def _taps(self, x, wanted):
        feats, h = {}, (x - self.mean) / self.std
        for name, layer in zip(self.names, self.features):
            h = layer(h)
            if name in wanted:
                feats[name] = h
            if len(feats) == len(wanted):
                break
        return feats

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.mode == "sr":
            f = lambda x: self.features((x - self.mean) / self.std)  # noqa: E731
            return F.l1_loss(f(out), f(target).detach())
        wanted = {_CONTENT_LAYER, *_STYLE_LAYERS}
        fo, ft = self._taps(out, wanted), self._taps(target, wanted)
        loss = F.l1_loss(fo[_CONTENT_LAYER], ft[_CONTENT_LAYER].detach())
        for name in _STYLE_LAYERS:
            loss = loss + F.l1_loss(gram(fo[name]), gram(ft[name]).detach())
        return loss


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    x = f.reshape(n, c, h * w)
    return x @ x.transpose(1, 2) / (c * h * w)

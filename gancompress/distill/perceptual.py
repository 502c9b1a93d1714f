"""Optional perceptual (VGG19 feature) loss, from weights the user supplies.

ImageNet VGG weights cannot be downloaded here, so this loss exists only when the user points
`--perceptual-weights` at a VGG19 state dict in torchvision's layout (`features.N.weight/bias`;
extra classifier keys are ignored). Features are compared at conv5_4 before its activation, as
ESRGAN does, with ImageNet normalisation. The weights are never saved into a student checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

# torchvision's VGG19 `features` configuration; "M" = max-pool
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class PerceptualLoss(nn.Module):
    def __init__(self, weights_path: str):
        super().__init__()
        from ..teachers.generic import load_weights_file

        layers, cin = [], 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        layers = layers[:-1]  # stop at conv5_4, before its ReLU
        self.features = nn.Sequential(*layers)
        sd = load_weights_file(weights_path)
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        own = self.features.state_dict()
        missing = [k for k in own if k not in feats]
        if missing:
            raise UserError(f"{weights_path} is not a VGG19 state dict in torchvision's layout: missing "
                            f"{missing[:4]}; save `torchvision.models.vgg19(...).state_dict()`")
        self.features.load_state_dict({k: feats[k] for k in own})
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", _MEAN.clone(), persistent=False)
        self.register_buffer("std", _STD.clone(), persistent=False)
        self.eval()

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f = lambda x: self.features((x - self.mean) / self.std)  # noqa: E731
        return F.l1_loss(f(out), f(target).detach())

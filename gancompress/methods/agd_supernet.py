"""AGD's supernet: every searchable layer of the cells holds all candidate operators.

The part outside the cells (SR: head, trunk, upsampler, skip; translation: stem, downsampling,
upsampling, output conv) is the student's own frame, built from a template spec with no cells, so
the supernet and the students it derives share one definition of it.

Operator choice: a softmax mixture over architecture parameters `alpha` (one vector per layer).
Width choice: straight-through Gumbel-softmax over `beta`: the forward pass uses one width (a hard
one-hot channel mask), the backward pass sends gradients to `beta` through the soft sample.
Candidates are built at the widest width and masked (see `arch.ops`), so the argmax sub-network
is exactly a student that `build_student` can make, and its weights are slices of the supernet's.

`expected_cost()` is differentiable in alpha and beta: per layer, the mixture of each operator's
cost over the joint distribution of (input width, output width); the input width's distribution
is the previous layer's. The cost is exact MACs (`expected_macs`), or, for a latency or size
budget (`budget.Budget`), each layer's measured latency or weight bytes at those widths (the
latency table's pieces), and the translation frame's likewise over its width distributions.
The resource term of the search is built on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dataclasses import replace

from ..arch.build import build_student
from ..arch.cost import DEFAULT_HW, cells_area, frame_macs, spec_macs, translate_frame_macs
from ..arch.ops import OPS, OpStyle
from ..arch.pieces import add_piece, frame_pieces, layer_piece
from ..arch.spec import ArchSpec, LayerSpec
from .space import most_capacity, widen_while_free, width_choices


class MixedLayer(nn.Module):
    def __init__(self, cin_max: int, widths: list[int], ops: list[str], style: OpStyle, last: bool):
        super().__init__()
        self.ops = list(ops)
        self.widths = list(widths)
        cmax = max(widths)
        self.cands = nn.ModuleList(OPS[o].build(cin_max, cmax, style, last) for o in ops)
        for o, cand in zip(ops, self.cands):
            if OPS[o].bits == 8:  # the int8 twin trains with fake quantization (weights and inputs)
                from ..quant.fake import enable_fake_quant

                enable_fake_quant(cand)
        w = torch.tensor(widths)
        self.register_buffer("out_masks", (torch.arange(cmax)[None] < w[:, None]).float(), persistent=False)
        hid = {}
        for o in self.ops:
            r = OPS[o].hidden_ratio
            if r:
                hid[o] = (torch.arange(r * cmax)[None] < (r * w)[:, None]).float()
        self._hid = hid
        for o, m in hid.items():
            self.register_buffer(f"hid_masks_{o}", m, persistent=False)

    def forward(self, x, wsel: torch.Tensor, opsel: torch.Tensor | int):
        """wsel: (K,) weights over widths (one-hot, maybe with straight-through grads).
        opsel: (n_ops,) mixture weights, or an int to run that single operator."""
        c = self.out_masks.shape[1]
        out_mask = (wsel @ self.out_masks).view(1, c, 1, 1)
        if isinstance(opsel, int):
            idx = [opsel]
            weights = [None]
        else:
            idx = range(len(self.ops))
            weights = [opsel[i] for i in idx]
        y = 0
        for i, wgt in zip(idx, weights):
            o = self.ops[i]
            hid = None
            if o in self._hid:
                hm = getattr(self, f"hid_masks_{o}")
                hid = (wsel @ hm).view(1, hm.shape[1], 1, 1)
            out = self.cands[i](x, out_mask, hid)
            y = y + (out if wgt is None else wgt * out)
        return y


def select_widths(betas, mode: str, tau: float = 1.0, fixed: list[int] | None = None) -> list[torch.Tensor]:
    """One (K,) one-hot selection per width logit vector. Modes: max, min, argmax, sample (no grad
    to the logits), gumbel (straight-through grads to the logits), fixed (given indices)."""
    sels = []
    for i, beta in enumerate(betas):
        k = len(beta)
        if mode in ("sample", "gumbel"):
            sels.append(F.gumbel_softmax(beta if mode == "gumbel" else beta.detach(), tau=tau, hard=True))
            continue
        if mode == "max":
            j = k - 1
        elif mode == "min":
            j = 0
        elif mode == "argmax":
            j = int(beta.argmax())
        elif mode == "fixed":
            j = fixed[i]
        else:
            raise ValueError(mode)
        sels.append(F.one_hot(torch.tensor(j), k).float().to(beta.device))
    return sels


class Supernet(nn.Module):
    def __init__(self, template: ArchSpec, n_cells: int, n_layers: int, ops, width_ratios, int8_cost: float = 1.0,
                 frame_ratios=None, budget=None):
        super().__init__()
        self.int8_cost = int8_cost  # cost per MAC of an int8 operator, relative to fp32
        # a budget.Budget in ms or MB prices layers by their pieces; None or MACs: analytic MACs
        self.budget = budget if budget is not None and budget.unit != "MACs" else None
        self.cost_hw = tuple(budget.hw) if budget is not None else DEFAULT_HW  # where MACs are taken
        self.template = replace(template, cells=[], meta={})
        self.nf, self.n_cells, self.n_layers = template.nf, n_cells, n_layers
        self.op_names = list(ops)
        self.frame = build_student(self.template)  # encode / decode around the cells
        nf = template.nf
        widths = width_choices(nf, width_ratios)
        if widths[-1] != nf:
            widths.append(nf)
        self.widths = widths
        layers = []
        self.layer_widths: list[list[int]] = []
        for _ in range(n_cells):
            for li in range(n_layers):
                last = li == n_layers - 1
                ws = [nf] if last else widths
                cin = nf if li == 0 else max(widths)
                layers.append(MixedLayer(cin, ws, self.op_names, self.frame.style, last))
                self.layer_widths.append(ws)
        self.layers = nn.ModuleList(layers)
        n = len(layers)
        self.alpha = nn.Parameter(1e-3 * torch.randn(n, len(self.op_names)))
        self.betas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(len(ws))) for ws in self.layer_widths)
        # translation: the widths of the frame (stem, down[0], up[0], up[1]) are searched too, from
        # `frame_ratios` (default: the cells' ratios) of the template's widths; their indices follow
        # the cell layers' in `ws`
        self.frame_widths: list[list[int]] = []
        if self.template.task == "translate":
            fr = self.template.frame
            self.frame_widths = [width_choices(m, frame_ratios or width_ratios) for m in (fr.stem, fr.down[0], *fr.up)]
            for ws, m in zip(self.frame_widths, (fr.stem, fr.down[0], *fr.up)):
                if ws[-1] != m:
                    ws.append(m)
            for i, ws in enumerate(self.frame_widths):
                self.register_buffer(f"frame_masks_{i}", (torch.arange(max(ws))[None] < torch.tensor(ws)[:, None]).float(),
                                     persistent=False)
        self.frame_betas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(len(ws))) for ws in self.frame_widths)
        self._build_cost_tables()

    @property
    def all_widths(self) -> list[list[int]]:
        """Width choices of every searched width: cell layers first, then frame layers."""
        return self.layer_widths + self.frame_widths

    # ---- parameters ---------------------------------------------------------------------------
    def arch_parameters(self):
        return [self.alpha, *self.betas, *self.frame_betas]

    def weight_parameters(self):
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # ---- width / op selections ----------------------------------------------------------------
    def width_selection(self, mode: str, tau: float = 1.0, fixed: list[int] | None = None):
        """One (K,) selection vector per layer (`select_widths`)."""
        return select_widths([*self.betas, *self.frame_betas], mode, tau, fixed)

    def forward(self, x, width_mode: str = "max", op_mode: str = "mix", tau: float = 1.0,
                fixed_widths: list[int] | None = None, fixed_ops: list[int] | None = None):
        wsels = self.width_selection(width_mode, tau, fixed_widths)
        if op_mode == "mix":
            probs = F.softmax(self.alpha, dim=-1)
        elif op_mode == "mix_detached":
            probs = F.softmax(self.alpha.detach(), dim=-1)
        n = len(self.layer_widths)
        masks = None
        if self.frame_widths:
            masks = [(sel.to(x.dtype) @ getattr(self, f"frame_masks_{k}")).view(1, -1, 1, 1)
                     for k, sel in enumerate(wsels[n:])]
        f = self.frame.encode(x, masks)
        h = f
        i = 0
        for _ in range(self.n_cells):
            cell_in = h
            for _ in range(self.n_layers):
                if op_mode == "argmax":
                    opsel = int(self.alpha[i].argmax())
                elif op_mode == "fixed":
                    opsel = fixed_ops[i]
                else:
                    opsel = probs[i]
                h = self.layers[i](h, wsels[i].to(h.dtype), opsel)
                i += 1
            h = cell_in + h
        return self.frame.decode(h, f, x, masks)

    # ---- cost ---------------------------------------------------------------------------------
    def _build_cost_tables(self):
        """tables[i][o, a, b] = cost of op o with input width a, output width b at layer i: MACs
        per cell pixel, or (a ms / MB budget) the layer's whole cost."""
        b = self.budget
        if b is not None and b.unit == "ms":  # time everything the tables below ask for, with a progress bar
            pieces = [layer_piece(self.template.task, op, a, w, i % self.n_layers == self.n_layers - 1, b.hw,
                                  self.template.unshuffle)
                      for i, (prev, ws) in enumerate(self._layer_inputs()) for op in self.op_names
                      for a in prev for w in ws]
            frame = frame_pieces(self.template, b.hw) if not self.frame_widths else [
                p for group in self._frame_piece_choices() for row in group
                for p in (row if isinstance(row, list) else [row])]
            b.table.ensure(pieces + frame + [add_piece(self.template.task, self.nf, b.hw, self.template.unshuffle)],
                           "latency table (AGD space)")
        tables, conversions = [], []
        for i, (prev, ws) in enumerate(self._layer_inputs()):
            tables.append(torch.tensor([[[float(self.op_cost(o, a, w, i)) for w in ws] for a in prev]
                                        for o in range(len(self.op_names))]))
            conversions.append([torch.tensor([[[float(self.op_cost(o, a, w, i, side)) for w in ws] for a in prev]
                                              for o in range(len(self.op_names))]) for side in ("in", "out")])
        self._tables = tables
        # an int8 layer's conversions (latency: quantize its input where the layer before is float,
        # dequantize its output where the next is; 0 for float operators and for other units)
        self._int8_ops = torch.tensor([OPS[o].bits == 8 for o in self.op_names])
        self._conversions = conversions if b is not None and b.unit == "ms" and bool(self._int8_ops.any()) else None
        if b is not None:
            self._build_frame_costs()

    def _layer_inputs(self):
        """(input width choices, output width choices) of every cell layer."""
        prev = [self.nf]
        for ws in self.layer_widths:
            yield prev, ws
            prev = ws if len(ws) > 1 or ws[0] != self.nf else [self.nf]

    def _frame_piece_choices(self) -> list:
        """The frame's pieces over its width choices, one group per frame piece in forward order:
        stem [s], stem->down [s][d], down->nf [d], nf->up0 [u0], up0->up1 [u0][u1], up1->RGB
        [u1] (each piece depends on at most two widths; the others stay at their first choice)."""
        t, hw = self.template, self.budget.hw
        s, d, u0, u1 = self.frame_widths

        def piece(k, stem=s[0], down=d[0], up0=u0[0], up1=u1[0]):
            return frame_pieces(t, hw, stem, down, up0, up1)[k]

        return [[piece(0, stem=a) for a in s], [[piece(1, stem=a, down=c) for c in d] for a in s],
                [piece(2, down=c) for c in d], [piece(3, up0=c) for c in u0],
                [[piece(4, up0=a, up1=c) for c in u1] for a in u0], [piece(5, up1=c) for c in u1]]

    def _build_frame_costs(self):
        """The frame's cost as tensors over its width choices (translation) or a constant (SR),
        with the cells' residual adds and, for latency, the per-call overhead counted once."""
        b, t = self.budget, self.template
        n_pieces = len(frame_pieces(t, b.hw)) + len(self.layer_widths) + self.n_cells
        const = self.n_cells * b.piece_cost(add_piece(t.task, self.nf, b.hw, t.unshuffle))
        if b.unit == "ms":
            const -= (n_pieces - 1) * b.table.overhead
        if not self.frame_widths:
            self._frame_const = const + sum(b.piece_cost(p) for p in frame_pieces(t, b.hw))
            return
        self._frame_const = const

        def costs(x):  # a piece, or a (nested) list of them -> their costs as nested lists
            return [costs(y) for y in x] if isinstance(x, list) else b.piece_cost(x)

        self._frame_costs = [torch.tensor(costs(group)) for group in self._frame_piece_choices()]

    def expected_cost(self) -> torch.Tensor:
        """Differentiable expected cost of the sampled student, in the budget's unit."""
        if self.budget is None:
            return self.expected_macs()
        probs = F.softmax(self.alpha, dim=-1)
        total = self._expected_layers(probs) + self._frame_const
        if not self.frame_widths:
            return total
        dev = self.alpha.device
        qs, qd, qu0, qu1 = (F.softmax(beta, dim=-1) for beta in self.frame_betas)
        c = [x.to(dev) for x in self._frame_costs]
        return (total + (qs * c[0]).sum() + qs @ c[1] @ qd + (qd * c[2]).sum() + (qu0 * c[3]).sum()
                + qu0 @ c[4] @ qu1 + (qu1 * c[5]).sum())

    def _expected_layers(self, probs) -> torch.Tensor:
        total = torch.tensor(0.0, device=self.alpha.device)
        q_prev = torch.ones(1, device=self.alpha.device)
        conv = self._conversions
        if conv is not None:  # P(layer i is int8); a cell's input and its residual add are float
            p8 = (probs * self._int8_ops.to(probs.device, probs.dtype)).sum(-1)
        for i, (t, beta) in enumerate(zip(self._tables, self.betas)):
            q = F.softmax(beta, dim=-1)
            e = torch.einsum("oab,a,b->o", t.to(q.device), q_prev, q)
            total = total + (probs[i] * e).sum()
            if conv is not None:  # independent choices: E[int8 here, float there] is a product
                first, last = i % self.n_layers == 0, i % self.n_layers == self.n_layers - 1
                float_before = 1.0 if first else 1.0 - p8[i - 1]
                float_after = 1.0 if last else 1.0 - p8[i + 1]
                e_in = torch.einsum("oab,a,b->o", conv[i][0].to(q.device), q_prev, q)
                e_out = torch.einsum("oab,a,b->o", conv[i][1].to(q.device), q_prev, q)
                total = total + float_before * (probs[i] * e_in).sum() + float_after * (probs[i] * e_out).sum()
            q_prev = q if len(self.layer_widths[i]) > 1 else torch.ones(1, device=q.device)
        return total

    def expected_macs(self, hw=None) -> torch.Tensor:
        """Differentiable expected MACs of the sampled student at an (LR) input of size hw (default:
        the budget's)."""
        hw = hw or self.cost_hw
        if self.budget is not None:
            raise ValueError("expected_macs needs the supernet's MACs tables (built without a ms/MB budget)")
        total = self._expected_layers(F.softmax(self.alpha, dim=-1))
        return self._expected_frame_macs(hw) + total * cells_area(self.template, hw)

    def _expected_frame_macs(self, hw):
        if not self.frame_widths:
            return frame_macs(self.template, hw)
        # independent choices: the expectation of each product is the product of expectations
        e = [(F.softmax(b, dim=-1) * torch.tensor(ws, dtype=b.dtype, device=b.device)).sum()
             for ws, b in zip(self.frame_widths, self.frame_betas)]
        t = self.template
        return translate_frame_macs(t.nf, *e, t.frame.up_kind, hw, t.frame.stem_k, t.frame.out_k)

    # ---- derive -------------------------------------------------------------------------------
    def choices(self):
        """Per layer: (op probabilities, width probabilities) as python lists."""
        probs = F.softmax(self.alpha.detach(), dim=-1)
        cells = [(probs[i].tolist(), F.softmax(b.detach(), dim=-1).tolist()) for i, b in enumerate(self.betas)]
        return cells + [([1.0], F.softmax(b.detach(), dim=-1).tolist()) for b in self.frame_betas]

    def spec_from_indices(self, op_idx: list[int], w_idx: list[int], meta=None) -> ArchSpec:
        cells, i = [], 0
        for _ in range(self.n_cells):
            cell = []
            for _ in range(self.n_layers):
                cell.append(LayerSpec(self.op_names[op_idx[i]], self.layer_widths[i][w_idx[i]]))
                i += 1
            cells.append(cell)
        spec = replace(self.template, cells=cells, meta=dict(meta or {}))
        if self.frame_widths and len(w_idx) > i:
            stem, down, up0, up1 = (ws[j] for ws, j in zip(self.frame_widths, w_idx[i:]))
            spec.frame = replace(spec.frame, stem=stem, down=[down], up=[up0, up1])
        return spec.validate()

    def argmax_indices(self):
        ops = [int(a.argmax()) for a in self.alpha.detach()]
        ws = [int(b.detach().argmax()) for b in [*self.betas, *self.frame_betas]]
        return ops, ws

    def indices_from_spec(self, spec: ArchSpec):
        ops, ws = [], []
        for i, (_, _, _, layer) in enumerate(spec.layers()):
            ops.append(self.op_names.index(layer.op))
            ws.append(self.layer_widths[i].index(layer.width))
        if self.frame_widths:
            f = spec.frame
            ws += [c.index(w) for c, w in zip(self.frame_widths, (f.stem, f.down[0], *f.up))]
        return ops, ws

    def op_cost(self, o: int, cin: int, cout: int, i: int = 0, part: str = "") -> float:
        """Cost of op o (cin -> cout) as cell layer i: MACs per pixel (int8 discounted), or the
        budget's piece cost; `part` "in" / "out": an int8 layer's conversion at a float neighbour
        (latency only; 0 otherwise)."""
        d = OPS[self.op_names[o]]
        if part and (d.bits != 8 or self.budget is None or self.budget.unit != "ms"):
            return 0.0
        if self.budget is not None:
            last = i % self.n_layers == self.n_layers - 1
            piece = layer_piece(self.template.task, self.op_names[o], cin, cout, last, self.budget.hw,
                                self.template.unshuffle)
            return self.budget.piece_cost(piece.conversion(part) if part else piece)
        return d.macs(cin, cout) * (self.int8_cost if d.bits == 8 else 1.0)

    def cost(self, spec: ArchSpec, hw=None) -> float:
        """The budget's cost of a spec from this space (MACs with int8 layers discounted, or the
        ms / MB budget's)."""
        from ..arch.cost import spec_cost

        if self.budget is not None:
            return self.budget.cost(spec)
        return spec_cost(spec, self.int8_cost, hw or self.cost_hw)

    def min_spec(self) -> ArchSpec:
        """The cheapest network of the space: every layer at its smallest width and cheapest op
        (under a latency budget, int8 layers whose conversions cost more than they save set back
        to float: an int8 op's own piece leaves its conversions out)."""
        ws = [0] * len(self.all_widths)
        spec = self.spec_from_indices([0] * len(self.layer_widths), ws)

        def cheapest(allowed):
            return [min(allowed, key=lambda o: self.op_cost(o, cin, layer.width, i))
                    for i, (_, _, cin, layer) in enumerate(spec.layers())]

        ops = cheapest(range(len(self.op_names)))
        if self._conversions is not None:  # the cheaper of: int8 where it pays, and all float
            floats = cheapest([o for o in range(len(self.op_names)) if not bool(self._int8_ops[o])])
            ops = min(drop_useless_int8(self, ops, ws), floats,
                      key=lambda x: self.cost(self.spec_from_indices(x, ws)))
        return self.spec_from_indices(ops, ws)

    def max_spec(self) -> ArchSpec:
        ws = [len(w) - 1 for w in self.all_widths]
        spec = self.spec_from_indices([0] * len(self.layer_widths), ws)
        ops = []
        for i, (_, _, cin, layer) in enumerate(spec.layers()):
            ops.append(max(range(len(self.op_names)), key=lambda o: self.op_cost(o, cin, layer.width, i)))
        return self.spec_from_indices(ops, ws)


def repair_to_budget(net: Supernet, op_idx, w_idx, budget: float, hw=None):
    """Greedily move layers to cheaper (op, width) choices until the spec fits `budget`.

    Each move picks the change with the smallest loss of log-probability per MAC saved, so the
    result stays as close as possible to what the architecture parameters prefer.
    """
    return _greedy_moves(net, op_idx, w_idx, hw, until=lambda c: c <= budget, sign=-1.0,
                         allowed=lambda c: True)


# An int8 layer must save at least this share of the student's predicted latency to stay: below
# it the saving is inside the table's noise (a 1/20 demo student kept an int8 conv predicted 0.2 %
# cheaper whose export measured 6 % dearer; BENCHMARKS.md, "int8 in a latency budget").
INT8_MIN_SAVING = 0.01


def drop_useless_int8(net: Supernet, op_idx, w_idx, hw=None) -> list[int]:
    """Set back to float every int8 layer that does not lower the predicted cost where it stands
    by at least INT8_MIN_SAVING, the largest saving first, until none is left (latency budgets: a
    narrow int8 conv can be slower than its float twin, and every float/int8 meeting converts the
    tensor). Only the precision changes: an int8 layer kept is one that makes the student faster."""
    op_idx = list(op_idx)
    twin = {o: net.op_names.index(OPS[name].base) for o, name in enumerate(net.op_names)
            if OPS[name].bits == 8 and OPS[name].base in net.op_names}
    cost = net.cost(net.spec_from_indices(op_idx, w_idx), hw)
    while True:
        best = None
        for i, o in enumerate(op_idx):
            if o in twin:
                trial = op_idx.copy()
                trial[i] = twin[o]
                c = net.cost(net.spec_from_indices(trial, w_idx), hw)
                if c <= cost * (1 + INT8_MIN_SAVING) and (best is None or c < best[0]):
                    best = (c, trial)
        if best is None:
            return op_idx
        cost, op_idx = best


def fill_to_band(net: Supernet, op_idx, w_idx, low: float, budget: float, hw=None, op_ok=None):
    """Greedily move layers to costlier choices until the spec reaches `low`, never past `budget`.

    The mirror of `repair_to_budget`, for a derived network below the band: when a search's
    choices move in lockstep (the label2image space: 19 width positions whose distillation
    gradients are a thousandth of the resource term's), the argmax jumps over the band from below
    it to above it, and without this every candidate was the space's floor (BENCHMARKS.md,
    "Label map -> image"). Each move picks the smallest loss of log-probability per MAC gained;
    `op_ok(o)` False keeps a layer from moving to operator o (e.g. an int8 twin that would only
    spend latency). No move narrows a layer: under a latency budget a narrower layer can cost
    more (see `widen_free`), and spending budget on less capacity is never the fill wanted."""
    return _greedy_moves(net, op_idx, w_idx, hw, until=lambda c: c >= low, sign=1.0,
                         allowed=lambda c: c <= budget, op_ok=op_ok, narrow_ok=False)


def widen_free(net: Supernet, op_idx, w_idx, hw=None) -> list[int]:
    """Width indices with every layer widened where the cost model prices the wider choice no
    dearer (`space.widen_while_free`; only widths move, never operators). Under a MACs or size
    budget nothing moves; the int8 searches at 1/80:ms took 5-, 8-, 11- and 13-wide layers that
    were both slower and narrower than 16 (BENCHMARKS.md, session 36)."""
    return widen_while_free(net.all_widths, w_idx, lambda ws: net.cost(net.spec_from_indices(op_idx, ws), hw))


def spend_on_capacity(net: Supernet, op_idx, w_idx, budget: float, op_ok=None):
    """Under a latency budget: move layers, one at a time, to the (operator, width) choices that
    add the most MACs per millisecond the table charges (moves that add MACs for no time first),
    while the predicted cost stays within `budget`. Why: the search's resource term prices a
    narrow layer cheaper, but ONNX Runtime's CPU kernels charge channels in blocks, so a derived
    network can spend its milliseconds on capacity it does not get (SRGAN x4 at 1/32:ms: 5-wide
    layers and 5-wide residual blocks, 1.9 GMACs at the latency of the 16-wide uniform network's
    4.4; a 5-wide residual block costs more than a 16-wide conv 3x3). MACs are the capacity proxy
    (`op_ok(o)` False keeps a layer from moving to operator o)."""
    def measure(state):
        spec = net.spec_from_indices(*state)
        return net.cost(spec), spec_macs(spec)

    def neighbours(state):
        return ((trial_o, trial_w) for _, _, _, trial_o, trial_w in _single_moves(net, *state, op_ok))

    return most_capacity((list(op_idx), list(w_idx)), neighbours, measure, budget)


def _single_moves(net, op_idx, w_idx, op_ok=None, narrow_ok=True, choices=None):
    """Every network one layer away: (layer, op, width, op indices, width indices), over
    `net.choices()` (cell layers: operators x widths; frame or SPADE positions: widths only, op 0).
    `op_ok(o)` False keeps a layer from moving to operator o; `narrow_ok` False: never to a
    narrower width."""
    n_ops = len(op_idx)
    for i, (pops, pws) in enumerate(choices if choices is not None else net.choices()):
        now = op_idx[i] if i < n_ops else 0
        for o in range(len(pops)):
            if o != now and op_ok is not None and not op_ok(o):
                continue
            for w in range(len(pws)):
                if (o, w) == (now, w_idx[i]) or (not narrow_ok and w < w_idx[i]):
                    continue
                trial_o, trial_w = list(op_idx), list(w_idx)
                if i < n_ops:
                    trial_o[i] = o
                trial_w[i] = w
                yield i, o, w, trial_o, trial_w


def _greedy_moves(net, op_idx, w_idx, hw, until, sign: float, allowed, op_ok=None, narrow_ok=True):
    """Move one layer at a time (cost change in the direction of `sign`, new cost `allowed`) until
    `until(cost)`, each time the move that loses the least log-probability per MAC moved
    (`narrow_ok` False: never to a narrower width)."""
    op_idx, w_idx = list(op_idx), list(w_idx)
    choices = net.choices()  # cell layers (op, width), then frame layers (width only: op list [1.0])
    n_ops = len(op_idx)

    def log_p(i, o, w):
        pops, pws = choices[i]
        return math.log(pops[o] + 1e-12) + math.log(pws[w] + 1e-12)

    cost = net.cost(net.spec_from_indices(op_idx, w_idx), hw)
    while not until(cost):
        best = None
        for i, o, w, trial_o, trial_w in _single_moves(net, op_idx, w_idx, op_ok, narrow_ok, choices):
            m = net.cost(net.spec_from_indices(trial_o, trial_w), hw)
            moved = sign * (m - cost)
            if moved <= 0 or not allowed(m):
                continue
            loss = log_p(i, op_idx[i] if i < n_ops else 0, w_idx[i]) - log_p(i, o, w)
            key = max(loss, 0.0) / moved
            if best is None or key < best[0]:
                best = (key, i, o, w, m)
        if best is None:
            break
        _, i, o, w, cost = best
        if i < n_ops:
            op_idx[i] = o
        w_idx[i] = w
    return op_idx, w_idx


def student_state_from_supernet(net: Supernet, op_idx: list[int]) -> dict:
    """Rename the chosen candidates' weights to the student's parameter names (unsliced; the
    student's `load_sliced` takes the leading slices)."""
    out = {}
    sd = net.state_dict()
    for k, v in sd.items():
        if k.startswith("layers."):
            _, i, _, o, rest = k.split(".", 4)
            i, o = int(i), int(o)
            if o != op_idx[i]:
                continue
            c, l = divmod(i, net.n_layers)
            if ".act_range." in f".{rest}":  # fake-quant state of an int8 candidate
                continue
            out[f"cells.{c}.layers.{l}.{rest.replace('parametrizations.weight.original', 'weight')}"] = v
        elif k.startswith("frame."):
            out[k[len("frame."):]] = v
    return out

"""Channels of the width space as units to cut: which conv writes and reads which position
(`ChannelMap`), the widest student with a gate per channel (`GatedStudent`), the threshold that
fits a budget, and exact extraction of the kept channels into a plain student. Shared by GAN
Slimming (gate magnitudes decide) and the magnitude-pruning baseline (filter norms decide).

Positions coupled by residual connections (`nf`: the head or encoder output, every cell's output,
the SR trunk) share one gate vector, so they are cut together. SR students have no affine norm,
so the gate multiplies the conv's output; translation students gate their instance norms' output.
"""

from __future__ import annotations

import bisect
import warnings
from dataclasses import field, replace

import torch
from torch import nn

from ..arch.build import build_student
from ..arch.cost import spec_macs
from ..arch.spec import ArchSpec
from ..errors import UserError
from .base import Method
from .space import WidthSpace, width_space


def _primes(n: int, start: int = 101) -> list[int]:
    out, k = [], start
    while len(out) < n:
        if all(k % d for d in range(2, int(k ** 0.5) + 1)):
            out.append(k)
        k += 1
    return out


class ChannelMap:
    """Which position of the space every conv reads and writes, and which modules carry gates.

    Found by building the student once with a distinct prime width per position and reading the
    layers' channel counts back, so it follows the build code instead of duplicating it."""

    def __init__(self, space: WidthSpace):
        self.space = space
        spade = space.template.spade  # primes above the label channels, so no width is mistaken for them
        probe = _primes(len(space), 101 + (spade.label_nc if spade is not None else 0))
        pos = {w: i for i, w in enumerate(probe)}
        student = build_student(space.spec(probe))
        self.convs: dict[str, tuple] = {}
        self.norms: dict[str, int | None] = {}
        for name, m in student.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if m.groups != 1:
                    raise UserError(f"GAN Slimming cannot prune grouped conv {name}")
                self.convs[name] = (pos.get(m.out_channels), pos.get(m.in_channels))
            elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)):
                self.norms[name] = pos.get(m.num_features)
        self.gate_on_norm = getattr(getattr(student, "style", None), "norm", "none") != "none"
        # a progressive SR upsampler's width is interleaved by PixelShuffle: it is never pruned
        self.prunable = [i for i, n in enumerate(space.names) if n != "up"]
        self.gated = {n: p for n, p in (self.norms.items() if self.gate_on_norm
                                        else ((n, io[0]) for n, io in self.convs.items())) if p is not None}


class GatedStudent(nn.Module):
    """The widest student with a gate vector per prunable position, applied by forward hooks."""

    def __init__(self, space: WidthSpace):
        super().__init__()
        self.space, self.map = space, ChannelMap(space)
        self.net = build_student(space.spec(space.max_config()))
        widest = space.max_config()
        self.gates = nn.ParameterList(nn.Parameter(torch.ones(widest[i])) if i in self.map.prunable
                                      else nn.Parameter(torch.ones(0), requires_grad=False) for i in range(len(space)))
        modules = dict(self.net.named_modules())
        for name, p in self.map.gated.items():
            if p in self.map.prunable:
                modules[name].register_forward_hook(self._gate(p))

    def _gate(self, p):
        def hook(_m, _inp, out):
            return out * self.gates[p].view(1, -1, 1, 1)
        return hook

    def forward(self, x):
        return self.net(x)

    def gate_parameters(self):
        return [g for g in self.gates if g.requires_grad]

    def weight_parameters(self):
        return list(self.net.parameters())

    @torch.no_grad()
    def proximal_step(self, threshold: float) -> None:
        """Soft threshold (the proximal operator of threshold * ||g||_1)."""
        for g in self.gate_parameters():
            g.copy_(torch.sign(g) * torch.clamp(g.abs() - threshold, min=0))

    def sparsity(self) -> float:
        gs = torch.cat([g.detach().flatten() for g in self.gate_parameters()])
        return float((gs == 0).float().mean())

    def live_spec(self) -> ArchSpec:
        return live_spec(self)


def channel_scores(student: GatedStudent) -> list[torch.Tensor]:
    """Gate magnitudes per position (empty for positions that are never cut)."""
    return [g.detach().abs() for g in student.gates]


def magnitude_scores(student: GatedStudent) -> list[torch.Tensor]:
    """Per position, each channel's rank by magnitude as a fraction in (0, 1] (1: the strongest), so
    one threshold cuts the same share of every position (why: methods/prune.py's module doc)."""
    cmap, space = student.map, student.space
    modules = dict(student.net.named_modules())
    filters = [torch.zeros(w) for w in space.max_config()]
    norms = [torch.zeros(w) for w in space.max_config()]
    for name, (out_p, _) in cmap.convs.items():
        if out_p is not None and out_p in cmap.prunable:
            w = modules[name].weight.detach().abs().cpu()
            filters[out_p] += w.mean(dim=(0, 2, 3) if isinstance(modules[name], nn.ConvTranspose2d) else (1, 2, 3))
    if cmap.gate_on_norm:
        for name, p in cmap.norms.items():
            weight = getattr(modules[name], "weight", None)
            if p is not None and p in cmap.prunable and weight is not None:
                norms[p] += weight.detach().abs().cpu()
    return [_ranks(g, f) for g, f in zip(norms, filters)]


def _ranks(primary: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
    """Ranks as fractions in (0, 1] (1: the strongest) by `primary`, ties broken by `tiebreak`."""
    n = primary.numel()
    order = sorted(range(n), key=lambda j: (float(primary[j]), float(tiebreak[j]), j))  # weakest first
    rank = torch.empty(n)
    rank[order] = torch.arange(1, n + 1, dtype=torch.float32) / max(n, 1)
    return rank


def rank_scores(student: GatedStudent) -> list[torch.Tensor]:
    """Each position's gates as ranks in (0, 1] (ties, as at zero, broken by filter magnitude): one
    threshold then keeps the same fraction of every position, its strongest gates, as the
    magnitude-pruning baseline does with filter norms (a global |g| cut gave the demo SR student
    nf 31 and inner widths 4-12 at 1/20; |g| times the norms of the weights writing and reading each
    channel, which a norm-free student's rescaling cannot move, gave the same)."""
    return [_ranks(g, m) for g, m in zip(channel_scores(student), magnitude_scores(student))]


def slimming_scores(student: GatedStudent) -> list[torch.Tensor]:
    """Gate magnitudes, with the channels whose gates the proximal step drove to zero ranked below
    every live one by their filters' magnitude rank. A fixed --rho can zero far more channels than
    the budget asks (57 % of the budget left at demo 1/5); with these scores the budget threshold
    regrows the strongest of them. Their zero gates fold into zero filters, so the extracted
    student computes what the gated one did, and fine-tuning grows the regrown channels."""
    gates = channel_scores(student)
    live = [float(v) for i in student.map.prunable for v in gates[i] if v > 0]
    below = min(live) / 2 if live else 1.0
    ranks = magnitude_scores(student)
    return [torch.where(g > 0, g, below * r) if g.numel() else g for g, r in zip(gates, ranks)]


def kept_channels(student: GatedStudent, threshold: float, scores=None) -> list[torch.Tensor]:
    """Indices kept per position: score > threshold (scores: gate magnitudes unless given), at
    least the strongest one (with a warning)."""
    scores = channel_scores(student) if scores is None else scores
    kept = []
    for i, sc in enumerate(scores):
        if i not in student.map.prunable:
            kept.append(torch.arange(student.space.max_config()[i]))
            continue
        idx = torch.nonzero(sc > threshold).flatten()
        if idx.numel() == 0:
            warnings.warn(f"the cut pruned every channel of {student.space.names[i]}; keeping its strongest one "
                          "(GAN Slimming: lower --rho to prune less)", stacklevel=2)
            idx = sc.argmax().view(1)
        kept.append(idx)
    return kept


def widths_of(kept) -> tuple[int, ...]:
    return tuple(int(k.numel()) for k in kept)


def threshold_for_budget(student: GatedStudent, budget, scores=None) -> float:
    """The smallest score threshold (gate magnitudes unless `scores` are given) whose pruned network
    fits `budget` (a budget.Budget; binary search: the cost falls monotonically as the threshold
    rises, for MACs and weights exactly, for a measured latency up to the table's noise)."""
    space = student.space
    scores = channel_scores(student) if scores is None else scores
    mags = sorted({0.0, *(float(v) for i in student.map.prunable for v in scores[i])})

    def cost(t):
        return budget.cost(space.spec(widths_of(kept_channels_quiet(student, t, scores))))

    if cost(mags[-1]) > budget.limit:
        raise UserError(f"even one channel per layer ({budget.fmt(cost(mags[-1]))}) exceeds the budget "
                        f"{budget}; raise --budget")
    i = bisect.bisect_left(range(len(mags)), True, key=lambda j: cost(mags[j]) <= budget.limit)
    return mags[i]


def kept_channels_quiet(student, t, scores=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kept_channels(student, t, scores)


@torch.no_grad()
def extract(student: GatedStudent, kept) -> tuple[nn.Module, object]:
    """A plain student of the kept widths with the gated network's weights (gates folded in)."""
    space, cmap = student.space, student.map
    spec = space.spec(widths_of(kept))
    plain = build_student(spec)
    src = dict(student.net.named_modules())
    gates = {i: student.gates[i].detach() for i in cmap.prunable}

    def sel(pos):
        return None if pos is None else kept[pos]

    for name, m in plain.named_modules():
        s = src.get(name)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            out_p, in_p = cmap.convs[name]
            w = s.weight
            o_dim, i_dim = (1, 0) if isinstance(m, nn.ConvTranspose2d) else (0, 1)
            if sel(out_p) is not None:
                w = w.index_select(o_dim, kept[out_p])
            if sel(in_p) is not None:
                w = w.index_select(i_dim, kept[in_p])
            b = None if s.bias is None else (s.bias if out_p is None else s.bias[kept[out_p]])
            if not cmap.gate_on_norm:
                # SR: the gated output is lrelu(g z) = |g| lrelu(sign(g) z) (positive homogeneity,
                # and the residual adds are linear), so the producer keeps only the sign and the
                # consumers take |g| on their input channel. Folding g into the producer instead left
                # gates of ~0.003 as weights of ~1e-4, which Adam then wrecked in one fine-tuning step
                # (a GS-32 SRGAN student fell from 31.8 to 15.5 dB).
                if out_p in gates:
                    sg = torch.sign(gates[out_p][kept[out_p]])
                    w = w * sg.view(-1, 1, 1, 1)
                    b = None if b is None else b * sg
                if in_p in gates and not isinstance(m, nn.ConvTranspose2d):
                    w = w * gates[in_p][kept[in_p]].abs().view(1, -1, 1, 1)
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) and m.weight is not None:
            p = cmap.norms[name]
            idx = kept[p] if p is not None else torch.arange(m.num_features)
            g = gates[p][idx] if (cmap.gate_on_norm and p in gates) else torch.ones(len(idx))
            m.weight.copy_(s.weight[idx] * g)
            m.bias.copy_(s.bias[idx] * g)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(s.running_mean[idx])
                m.running_var.copy_(s.running_var[idx])
    return plain, spec


@torch.no_grad()
def zero_cut_gates(student: GatedStudent, kept) -> None:
    """Set the gates of cut channels to zero (the masked network extraction must equal)."""
    for i in student.map.prunable:
        mask = torch.zeros_like(student.gates[i])
        mask[kept[i]] = 1
        student.gates[i].mul_(mask)


def live_spec(student: GatedStudent) -> ArchSpec:
    """The network that the non-zero gates keep (the floor of one channel counted)."""
    return student.space.spec(widths_of(kept_channels_quiet(student, 0.0)))


def live_macs(student: GatedStudent) -> int:
    return spec_macs(live_spec(student))


# ---- what every pruning method shares ---------------------------------------------------------
PRUNABLE_OPS = ("conv3x3", "conv1x1", "dil3x3")  # no internal skip / hidden width: channels cut cleanly


def op_option(flag: str):
    """The `op` field of a pruning method's options: the operator of every cell layer."""
    return field(default="conv3x3", metadata={"flag": flag, "choices": list(PRUNABLE_OPS),
                                              "help": "the operator of every cell layer of the space network"})


def start_option(flag: str, fallback: str):
    """The `init` field of a pruning method's options: what it starts from."""
    return field(default="teacher", metadata={
        "flag": flag, "choices": ["teacher", "graph", "space"],
        "help": "teacher: the pretrained teacher itself when its layout is expressible as a student (instance-norm "
                "cyclegan-resnet), else space, and the run says so; graph: the teacher's own layers, read as a graph "
                "(any traceable teacher; on SRGAN its skeleton made a worse student: BENCHMARKS.md); space: the "
                f"widest network of the space, {fallback}"})


def prunable_space(cfg, start=None) -> WidthSpace:
    """The widths a pruning method cuts: around the teacher's own layout when it starts from the
    teacher (`start`: its ArchSpec), else the width space of the run's options (`op` in every cell
    layer: the method's options)."""
    if start is not None and start.spade is not None:
        return WidthSpace(start, 0, 0, ratios=cfg.search.width_ratios)
    if start is not None:
        return WidthSpace(start, len(start.cells), len(start.cells[0]), start.cells[0][0].op, cfg.search.width_ratios)
    return width_space(cfg, cfg.method_options.op)


class PruningMethod(Method):
    """What GAN Slimming and magnitude pruning share: they cut the teacher itself when its layout
    is expressible as a student (their `init` option "teacher"), else the widest network of the
    width space, down to the budget, and log a position cut to its floor instead of warning."""

    init_flag = ""  # the method's --X-init flag, for messages

    def graph_refusal(self, cfg) -> str | None:
        """Why this run cannot cut a teacher read as a layer graph (None: it can)."""
        return f"{self.title} does not cut graphs"

    def fit_to_budget(self, ctx):
        """(sets ctx.start, or ctx.extra["graph"]) init "teacher": the teacher written as a student
        when its layout is expressible; init "graph": the teacher read as a graph of standard layers
        (teachers/graph_reader.py); otherwise, or when that fails, the run says why and works on the
        space network (its config records init "space")."""
        cfg = ctx.cfg
        init = cfg.method_options.init
        if init == "space":
            return cfg
        if init == "teacher":
            from ..teachers.as_student import teacher_as_student

            ctx.start = teacher_as_student(ctx.teacher)
            if ctx.start is not None:
                return cfg
            why = (f"only an instance-norm cyclegan-resnet layout is expressible as a student; {self.init_flag} graph "
                   "cuts the teacher's own layers")
        else:
            why = self.graph_refusal(cfg)
            if why is None:
                from ..teachers.graph_reader import GraphImportError, read_teacher

                try:
                    graph, weights = read_teacher(ctx.teacher)
                except GraphImportError as e:
                    why = f"it cannot be read as a graph of standard layers: {e}"
                else:
                    ctx.extra["graph"] = (graph, weights)
                    ctx.log(f"{self.title} starts from the teacher itself, read as a graph of {len(graph.ops)} layers")
                    return cfg
        if cfg.retrain.hints:
            raise UserError(f"--hints needs the student cut from the teacher read as a graph, but {self.title} "
                            f"cannot start from teacher {cfg.teacher} ({why}); leave --hints at 0")
        ctx.log(f"note: {self.title} cannot start from teacher {cfg.teacher} ({why}); using the widest network "
                "of the space instead")
        return replace(cfg, method_options=replace(cfg.method_options, init="space"))

    def space(self, ctx) -> WidthSpace:
        return prunable_space(ctx.cfg, ctx.start[0] if ctx.start else None)

    def check_budget(self, ctx) -> None:
        b = ctx.budget
        if "graph" in ctx.extra:
            from .graph_pruning import smallest_graph_spec

            lo = b.cost(smallest_graph_spec(ctx))
        else:
            space = self.space(ctx)
            lo = b.cost(space.spec(tuple(1 for _ in space.names)))
        if b.limit < lo:
            raise UserError(f"budget {b} is below the smallest network {self.title} can prune "
                            f"to (one channel per layer: {b.fmt(lo)} {b.where()}); raise --budget")

    @staticmethod
    def cut(ctx, student: GatedStudent, threshold: float, scores=None) -> list[torch.Tensor]:
        """kept_channels, with a position cut to its floor said plainly in the run's log."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kept = kept_channels(student, threshold, scores)
        for w in caught:
            ctx.log(f"warning: {w.message}")
        return kept

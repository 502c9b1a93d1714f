"""The space every method works in: the student frame (stem/head, cells, upsampler) with a
width per position, the uniform-width network at a budget, and the trunk narrowing and frame
floor that fit the space to a tight budget.

`WidthSpace` is the channel-width space with one operator in every cell layer (GAN Compression
searches it; GAN Slimming and the pruning baseline cut it down): SR positions are nf (head, every
cell's output, trunk), each inner cell layer, [up width]; translation positions are stem, down, nf
(the trunk at 1/4 resolution), each inner cell layer, up0, up1. A sub-network is named by its widths
in that order joined by "_" (GAN Compression's `16_16_32_16_32_32_16_16`); choices per position are
ratios of the widest width, the ratios AGD uses, so every method searches a comparable space.

`WidthSupernet` is the widest student with its layers made dynamic (`arch.dynamic`): choosing a
config sets each conv's active output width to the same-named conv's width in the plain student of
that config, so supernet(config) == extract(config) by construction (and by test).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..arch.build import build_student, load_sliced
from ..arch.cost import INT8_MAC_COST, spec_macs
from ..arch.dynamic import make_dynamic, out_widths, set_active_widths
from ..arch.ops import DEFAULT_OPS
from ..arch.spec import (SPADE_BLOCKS, SPADE_UP_BLOCKS, ArchSpec, LayerSpec, UpsamplerSpec,
                         frame_for_width, spade_spec, spade_spec_of, uniform_sr_spec, uniform_translate_spec)
from ..data.label_maps import label_channels
from ..errors import UserError
from ..rundir import omit_defaults
from ..log import info


ARCH_WEIGHT_DECAY = 1e-3  # DARTS' and AGD's L2 on the architecture parameters


@dataclass
class SpaceConfig:
    """The space every method searches or prunes in (the trunk width, cells, layers, operators,
    width ratios, frame, upsampler) and AGD's search schedule: the run config's `search` section."""

    nf: int = 32
    n_cells: int = 5
    n_layers: int = 5
    ops: tuple = DEFAULT_OPS
    width_ratios: tuple = (1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)
    upsampler: str = "pixelshuffle"
    up_width: int = 0
    skip: str = "bicubic"
    patch: int = 24
    batch: int = 8
    warmup_steps: int = 150
    search_steps: int = 300
    lr_weights: float = 5e-4
    lr_arch: float = 5e-3
    arch_weight_decay: float = ARCH_WEIGHT_DECAY
    tau_start: float = 2.0
    tau_end: float = 0.5
    band: float = 0.85
    # latency budgets: spend the derived network's milliseconds on MACs (agd_supernet.spend_on_capacity;
    # BENCHMARKS.md, "AGD in milliseconds at the uniform student's latency")
    spend_capacity: bool = True
    penalty_init: float = 0.01
    penalty_growth: float = 1.1
    select_after: float = 0.3
    eval_every: int = 10
    seed: int = 0
    int8_search: bool = False  # AGD also chooses int8 or fp32 per layer
    int8_cost: float = INT8_MAC_COST  # an int8 MAC's share of an fp32 MAC in the budget
    # translation: width ratios for the frame (stem, down, up layers); None: the same as the cells'
    # (adapt_trunk_width sets the uniform baseline's frame as the floor when left None)
    frame_ratios: tuple | None = None
    # translation: the trunk width whose CycleGAN proportions (w/4, w/2) are the frame's widest
    # choices; 0: nf. The frame floor raises it when the uniform baseline's frame is wider than nf's
    frame_nf: int = 0
    # SR: the LR input is pixel-unshuffled by this factor and the head, cells and trunk run at
    # 1/unshuffle of its side (arch.build.SRStudent)
    unshuffle: int = 1

    def to_dict(self):
        # options added later are left out at their defaults, so runs made before them still resume
        d = omit_defaults(asdict(self), {"frame_ratios": None, "frame_nf": 0, "int8_search": False, "unshuffle": 1,
                                         "arch_weight_decay": ARCH_WEIGHT_DECAY})
        if "int8_search" not in d:
            del d["int8_cost"]  # only meaningful with the precision search
        for k in ("ops", "width_ratios", "frame_ratios"):
            if k in d:
                d[k] = list(d[k])
        return d


def frame_template(cfg: SpaceConfig, task: str = "sr", scale: int = 4, label_nc: int = 0) -> ArchSpec:
    """The spec of everything around the searched cells (no cells yet); label2image: the widest
    SPADE student (GauGAN's proportions at ngf = nf, SPADE hidden 2 nf), `label_nc` input channels."""
    if task == "label2image":
        return spade_spec(label_nc, cfg.nf)
    if task == "translate":
        return ArchSpec("translate", 1, cfg.nf, [], skip="none",
                        frame=frame_for_width(cfg.frame_nf or cfg.nf, cfg.upsampler))
    return ArchSpec("sr", scale, cfg.nf, [], UpsamplerSpec(cfg.upsampler, cfg.up_width), skip=cfg.skip,
                    unshuffle=cfg.unshuffle)


def widen_while_free(widths: list[list[int]], idx: list[int], cost) -> list[int]:
    """Indices into `widths` (per position, narrow to wide) moved wider wherever `cost(indices)`
    does not rise, the widest gain first, until no such move is left. Under MACs or size a wider
    layer always costs more, so nothing moves; under a latency budget ONNX Runtime's channel-blocked
    kernels can price a narrower layer dearer (int8 conv 16 -> 5: 2.38 ms, 16 -> 16: 1.67 ms on the
    session-35 CPU), and more channels at no more latency is a change that cannot lose capacity."""
    idx = list(idx)
    current = cost(idx)
    while True:
        best = None
        for i, w, trial in _widenings(widths, idx):
            c = cost(trial)
            gain = widths[i][w] - widths[i][idx[i]]
            if c <= current and (best is None or (gain, -c) > best[0]):
                best = ((gain, -c), trial, c)
        if best is None:
            return idx
        _, idx, current = best


def _widenings(widths: list[list[int]], idx: list[int]):
    """(position, width index, indices) for every index list one position wider than `idx`."""
    for i, ws in enumerate(widths):
        for w in range(idx[i] + 1, len(ws)):
            trial = idx.copy()
            trial[i] = w
            yield i, w, trial


def most_capacity(state, neighbours, measure, limit: float):
    """`state` moved one step at a time to the neighbour (`neighbours(state)`: the states one move
    away) that adds the most MACs per unit of cost (moves that add MACs at no cost first), while
    the cost stays within `limit`; `measure(state) -> (cost, MACs)`. The capacity pass of AGD
    (operators and widths) and GAN Compression (widths). Under a latency budget this finds the most
    capacity a space can buy: ONNX Runtime prices channels in blocks, so on SRGAN x4 at 1/32:ms the
    --nf 28 width grid (9, 14, 19, ...) reaches 2.3 GMACs and the --nf 24 grid (8, 12, 16, ...) 4.3
    (BENCHMARKS.md, session 44)."""
    current, m_now = measure(state)
    while True:
        best = None
        for trial in neighbours(state):
            c, m = measure(trial)
            if m <= m_now or c > limit:
                continue
            key = (1, m - m_now) if c <= current else (0, (m - m_now) / (c - current))
            if best is None or key > best[0]:
                best = (key, trial, c, m)
        if best is None:
            return state
        _, state, current, m_now = best


def width_choices(nf: int, ratios) -> list[int]:
    """Distinct channel counts for the ratios of nf, ascending (at least 1 channel)."""
    return sorted({max(1, int(round(r * nf))) for r in ratios})


class WidthSpace:
    def __init__(self, template: ArchSpec, n_cells: int, n_layers: int, op: str = "conv3x3",
                 ratios=(1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)):
        self.template = replace(template, cells=[], meta={})
        self.n_cells, self.n_layers, self.op = n_cells, n_layers, op
        t = self.template
        names, widest = [], []
        if t.spade is not None:  # label2image: the trunk, each up block's output, each block's mid and hidden
            ups = SPADE_UP_BLOCKS
            names = (["trunk"] + [f"{b}.out" for b in ups] + [f"{b}.mid" for b in SPADE_BLOCKS]
                     + [f"{b}.hidden" for b in SPADE_BLOCKS])
            widest = ([t.spade.fc] + [b[0] for b in t.spade.blocks[-len(ups):]] + [b[1] for b in t.spade.blocks]
                      + [b[2] for b in t.spade.blocks])
        else:
            names, widest = self._cell_positions(t, n_cells, n_layers)
        self.names = names
        self.choices = []
        for w in widest:
            ch = width_choices(w, ratios)
            if ch[-1] != w:
                ch.append(w)
            self.choices.append(ch)

    @staticmethod
    def _cell_positions(t: ArchSpec, n_cells: int, n_layers: int) -> tuple[list[str], list[int]]:
        """(names, widest widths) of the SR and translation positions."""
        names, widest = [], []
        if t.task == "translate":
            names += ["stem", "down"]
            widest += [t.frame.stem, t.frame.down[0]]
        names.append("nf")
        widest.append(t.nf)
        for c in range(n_cells):
            for li in range(n_layers - 1):
                names.append(f"cell{c}.layer{li}")
                widest.append(t.nf)
        if t.task == "translate":
            names += ["up0", "up1"]
            widest += list(t.frame.up)
        elif t.upsampler.kind == "progressive":
            names.append("up")
            widest.append(t.upsampler.width)
        return names, widest

    # ---- configs ----------------------------------------------------------------------------
    def __len__(self):
        return len(self.names)

    def max_config(self) -> tuple[int, ...]:
        return tuple(c[-1] for c in self.choices)

    def min_config(self) -> tuple[int, ...]:
        return tuple(c[0] for c in self.choices)

    def _indices(self, config) -> list[int]:
        """Widths -> each position's index in its choices (the greedy passes move indices)."""
        return [ch.index(w) for ch, w in zip(self.choices, config)]

    def _config(self, idx) -> tuple[int, ...]:
        """Indices -> widths: `_indices` reversed."""
        return tuple(ch[k] for ch, k in zip(self.choices, idx))

    def widen_free(self, config, cost) -> tuple[int, ...]:
        """`config` with every position widened where `cost(config)` does not rise
        (`widen_while_free`): GAN Compression's evolution scores only such configs under a latency
        budget."""
        idx = widen_while_free(self.choices, self._indices(config), lambda ix: cost(self._config(ix)))
        return self._config(idx)

    def spend_on_capacity(self, config, cost, limit: float) -> tuple[int, ...]:
        """`config` widened position by position for the most MACs per unit of `cost(config)`
        while the cost stays within `limit` (`most_capacity`)."""
        at = self._config
        idx = most_capacity(self._indices(config),
                            lambda ix: (trial for _, _, trial in _widenings(self.choices, ix)),
                            lambda ix: (cost(at(ix)), spec_macs(self.spec(at(ix)))), limit)
        return at(idx)

    def fill_to(self, config, cost, low: float, limit: float, score) -> tuple[int, ...]:
        """`config` widened one position at a time, each time to the widening the `score(config)`
        (higher is better) ranks first among those within `limit`, until `cost` reaches `low`. Why:
        random configs sit in the middle of a space, and when the whole space fits the budget the
        evolution's local moves do not climb out of it (SRGAN x4 at 1/5 of the MACs, three seeds:
        winners of 9.8-12.3 of 18.4 GMACs, no config over 15 G ever scored, though the supernet's
        score rose with MACs, correlation 0.78-0.82 over the ~700 configs scored)."""
        idx, at = self._indices(config), self._config
        while cost(at(idx)) < low:
            fits = [trial for _, _, trial in _widenings(self.choices, idx) if cost(at(trial)) <= limit]
            if not fits:
                break
            idx = max(fits, key=lambda ix: score(at(ix)))
        return at(idx)

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        """Uniform per position."""
        return tuple(rng.choice(c) for c in self.choices)

    @staticmethod
    def format(config) -> str:
        return "_".join(str(int(w)) for w in config)

    def parse(self, text: str) -> tuple[int, ...]:
        """Config string -> widths, refusing anything outside the space with the position's name
        and its allowed values."""
        parts = str(text).strip().split("_")
        if len(parts) != len(self.names):
            raise UserError(f"config {text!r} has {len(parts)} widths but this space has {len(self.names)} "
                            f"positions ({', '.join(self.names)})")
        out = []
        for i, (p, name, ch) in enumerate(zip(parts, self.names, self.choices)):
            try:
                w = int(p)
            except ValueError:
                w = None
            if w not in ch:
                raise UserError(f"config {text!r}: position {i} ({name}) is {p!r}; allowed values: "
                                f"{', '.join(map(str, ch))}")
            out.append(w)
        return tuple(out)

    # ---- config <-> spec ---------------------------------------------------------------------
    def spec(self, config, meta: dict | None = None) -> ArchSpec:
        t = self.template
        vals = dict(zip(self.names, config))
        if t.spade is not None:
            sp = t.spade
            return replace(spade_spec_of(sp.label_nc, vals["trunk"], [vals[f"{b}.out"] for b in SPADE_UP_BLOCKS],
                                         [vals[f"{b}.mid"] for b in SPADE_BLOCKS],
                                         [vals[f"{b}.hidden"] for b in SPADE_BLOCKS], sp.norm, sp.ks),
                           meta=dict(meta or {})).validate()
        nf = vals["nf"]
        cells = [[LayerSpec(self.op, vals[f"cell{c}.layer{li}"]) for li in range(self.n_layers - 1)]
                 + [LayerSpec(self.op, nf)] for c in range(self.n_cells)]
        spec = replace(t, nf=nf, cells=cells, meta=dict(meta or {}))
        if t.task == "translate":
            spec.frame = replace(t.frame, stem=vals["stem"], down=[vals["down"]], up=[vals["up0"], vals["up1"]])
        elif "up" in vals:
            spec.upsampler = UpsamplerSpec(t.upsampler.kind, vals["up"])
        return spec.validate()

    def config_of(self, spec: ArchSpec) -> tuple[int, ...]:
        """The config naming `spec` (which must come from this space)."""
        return self.parse(self.format(self.widths_in(spec)))

    def widths_in(self, spec: ArchSpec) -> list[int]:
        """`spec`'s width at every position, whether or not it is one of the space's choices."""
        vals = {"nf": spec.nf}
        if spec.spade is not None:
            vals = {"trunk": spec.spade.fc}
            for b, (out, mid, hid) in zip(SPADE_BLOCKS, spec.spade.blocks):
                vals[f"{b}.out"], vals[f"{b}.mid"], vals[f"{b}.hidden"] = out, mid, hid
        elif spec.task == "translate":
            vals.update(stem=spec.frame.stem, down=spec.frame.down[0], up0=spec.frame.up[0], up1=spec.frame.up[1])
        elif "up" in self.names:
            vals["up"] = spec.upsampler.width
        for c, cell in enumerate(spec.cells):
            for li, layer in enumerate(cell[:-1]):
                vals[f"cell{c}.layer{li}"] = layer.width
        try:
            return [vals[n] for n in self.names]
        except KeyError as e:
            raise UserError(f"spec does not fit this space (missing {e})") from None

    def macs(self, config) -> int:
        return spec_macs(self.spec(config))

    def pieces(self, hw) -> list:
        """Every piece (arch.pieces) a network of this space can contain at input size hw. A piece
        depends on at most two positions' widths, so varying every pair of positions over its
        choices, the others widest, meets them all."""
        from ..arch.pieces import spec_pieces

        top = list(self.max_config())
        seen = {}
        for i in range(len(self.names)):
            for j in range(i + 1, len(self.names)):
                for a in self.choices[i]:
                    for b in self.choices[j]:
                        c = list(top)
                        c[i], c[j] = a, b
                        for p in spec_pieces(self.spec(tuple(c)), hw):
                            seen.setdefault(p.key, p)
        return list(seen.values())


class WidthSupernet(nn.Module):
    """The widest student, dynamic. `set_config` picks the sub-network the next forward runs."""

    def __init__(self, space: WidthSpace):
        super().__init__()
        self.space = space
        self.net = make_dynamic(build_student(space.spec(space.max_config())))
        self._widths: dict[tuple, dict] = {}
        self.config = space.max_config()

    def set_config(self, config) -> None:
        config = tuple(config)
        if config not in self._widths:
            with torch.random.fork_rng():  # building the plain student draws initial weights
                self._widths[config] = out_widths(build_student(self.space.spec(config)))
            if len(self._widths) > 4096:
                self._widths.pop(next(iter(self._widths)))
        set_active_widths(self.net, self._widths[config])
        self.config = config

    def forward(self, x):
        return self.net(x)

    def extract(self, config) -> nn.Module:
        """A plain student of `config` whose weights are the supernet's leading slices."""
        student = build_student(self.space.spec(config))
        load_sliced(student, self.net.state_dict())
        return student


def width_space(cfg, op: str) -> WidthSpace:
    """The width space of a run's options (its frame, cells and ratios) with `op` in every cell layer."""
    s = cfg.search
    return WidthSpace(frame_template(s, cfg.task, cfg.scale, label_channels(cfg)), s.n_cells, s.n_layers, op, s.width_ratios)


# ---- fitting the space to a budget ----------------------------------------------------------
def uniform_spec_for_budget(cfg, budget) -> ArchSpec:
    """The uniform-width baseline: same skeleton, every layer conv 3x3 at one width w (nf = w),
    w the largest that fits the budget (a budget.Budget, in any unit)."""
    s = cfg.search

    def at_width(w):
        if cfg.task == "label2image":  # GauGAN's proportions scaled together (SPADE hidden 2 ngf)
            return spade_spec(label_channels(cfg), w)
        if cfg.task == "translate":  # CycleGAN's proportions scaled together (ngf = w / 4)
            return uniform_translate_spec(w, s.n_cells, s.n_layers, frame=frame_for_width(w, s.upsampler))
        return uniform_sr_spec(cfg.scale, w, s.n_cells, s.n_layers, "conv3x3",
                               upsampler=UpsamplerSpec(s.upsampler, s.up_width), skip=s.skip, unshuffle=s.unshuffle)

    best = None
    for w in range(1, 257):
        spec = at_width(w)
        if not budget.fits(spec):
            break
        best = spec
    if best is None:
        raise UserError(f"budget {budget} is below the smallest uniform network "
                        f"({budget.fmt(budget.cost(at_width(1)))} {budget.where()}); raise --budget")
    best.meta = {"method": "uniform", **budget_meta(budget, best)}
    return best


def budget_meta(budget, spec: ArchSpec) -> dict:
    """What a derived spec records about its budget: MACs always; the limit and cost in the
    budget's unit when that is not MACs."""
    if budget.unit == "MACs":
        return {"budget_macs": int(budget.limit), "macs": int(spec_macs(spec))}
    return {"budget": budget.to_dict(), "cost": float(budget.cost(spec)), "macs": int(spec_macs(spec))}


def smaller_space_hint(cfg, budget, smallest) -> str:
    """The widest trunk (--nf) whose smallest network fits the budget, as a concrete suggestion.
    `smallest(cfg, nf)`: the method's smallest network (an ArchSpec) at trunk width nf."""
    for nf in range(cfg.search.nf - 1, 3, -1):
        if budget.fits(smallest(cfg, nf)):
            return f"e.g. --nf {nf}, or fewer --cells/--layers, or cheaper --ops such as conv1x1"
    return "fewer --cells/--layers, or cheaper --ops such as conv1x1"


def uniform_frame_ratios(width_ratios, uniform_width: int, nf: int) -> tuple[tuple, int]:
    """Translation AGD: (frame width ratios, frame_nf) such that the narrowest frame on offer
    (stem, down, up layers) is the uniform baseline's (width `uniform_width` at the budget), and
    the widest is the CycleGAN proportions of max(nf, uniform_width). Searched freely (the cells'
    ratios), the frame went to 2-8 channels at full resolution in every seed, and those students
    were the weakest (BENCHMARKS.md, "frame floor")."""
    top = max(nf, uniform_width)
    r = round(max(uniform_width / top, min(width_ratios)), 4)  # never below the cells' own floor
    return (r,) + tuple(x for x in width_ratios if x > r), (top if top > nf else 0)


def adapt_trunk_width(cfg, budget, floor=None, frame_floor: bool = False, log=info, capacity=None):
    """The run's config fitted to the budget (a budget.Budget). With `frame_floor` (translation AGD
    without --frame-widths), the frame's narrowest choices are the uniform baseline's
    (uniform_frame_ratios) at each trunk width tried. With `floor(cfg, nf)` (the method's smallest
    network as an ArchSpec, priced by the budget; methods that
    search down from a trunk width) and `cfg.auto_nf`, the widest trunk (a multiple of 4, at most the
    configured nf) whose smallest network lies below the band the search aims at ([band * budget,
    budget]): above it every derived network is forced to the narrowest widths. The benchmarks picked
    nf by hand at 1/20 (SRGAN: 24 for 32; demo translation teacher: 40 for 64); this rule gives 28 and 40.

    Under a latency budget with `capacity(cfg, nf)` (the MACs of the most capacity the method's
    space at trunk width nf can buy within the budget, or None), a trunk that must narrow goes to
    the width (nf itself included) whose space buys the most MACs instead: a narrow layer is not
    cheaper in milliseconds unless its width saves a channel block. At SRGAN x4 1/32:ms the band
    rule's --nf 28 grid (9, 14, 19, 23, 28; 14 costs more than 16) capped GAN Compression at 2.3
    GMACs where --nf 24's reaches 4.3, and at 1/53:ms with --widths 1 it took AGD from nf 16
    (2.2 GMACs within the budget) to nf 8 (0.9 G, -0.46 dB Set5)."""
    uniform_width = None  # the frame floor's width; none without a floor or a uniform network in budget
    if frame_floor and cfg.task == "translate" and cfg.search.frame_ratios is None:
        try:
            uniform_width = uniform_spec_for_budget(cfg, budget).nf
        except UserError:  # the budget check says what fits
            pass
    floored = uniform_width is not None

    def at(nf: int):
        s = replace(cfg.search, nf=nf)
        if floored:
            ratios, frame_nf = uniform_frame_ratios(cfg.search.width_ratios, uniform_width, nf)
            s = replace(s, frame_ratios=ratios, frame_nf=frame_nf)
        return replace(cfg, search=s)

    nf0 = cfg.search.nf
    start = at(nf0) if floored else cfg
    if not cfg.auto_nf or floor is None:
        return start
    floor0 = budget.cost(floor(start, nf0))
    share = cfg.search.band
    if floor0 <= share * budget.limit:
        return start
    if budget.unit == "ms" and capacity is not None:
        chosen = _trunk_with_most_capacity(budget, floor, capacity, at, nf0, start, floor0, log)
        if chosen is not None:
            return chosen
    for nf in _narrower_trunks(nf0):
        smallest = budget.cost(floor(at(nf), nf))
        if smallest <= share * budget.limit:
            log(f"note: at --nf {nf0} the smallest network of the space is {budget.fmt(floor0)}, "
                f"{floor0 / budget.limit:.0%} of the budget {budget}, which leaves the search no "
                f"room; using --nf {nf} (smallest network {budget.fmt(smallest)}). Give --nf to choose yourself.")
            return at(nf)
    return start  # nothing narrower helps: the budget check explains


def _narrower_trunks(nf0: int) -> range:
    """The trunk widths tried below nf0: the multiples of 4 under it, widest first, down to 8."""
    return range((nf0 - 1) // 4 * 4, 7, -4)


def _trunk_with_most_capacity(budget, floor, capacity, at, nf0: int, start, floor0: float, log):
    """adapt_trunk_width under a latency budget: of nf0 and the multiples of 4 below it whose
    smallest network fits, the trunk whose space buys the most MACs (the widest of equals); None
    when no width's capacity is known (the band rule then decides)."""
    best = None
    for nf in [nf0, *_narrower_trunks(nf0)]:
        c = start if nf == nf0 else at(nf)
        if (floor0 if nf == nf0 else budget.cost(floor(c, nf))) > budget.limit:
            continue
        macs = capacity(c, nf)
        if macs is not None and (best is None or macs > best[0]):
            best = (macs, nf, c)
    if best is None:
        return None
    macs, nf, c = best
    if nf != nf0:
        log(f"note: under the latency budget {budget} the --nf {nf} space buys the most capacity "
            f"({macs / 1e9:.2f} GMACs within the budget; widths that save no channel block cost as much "
            f"as wider ones); using --nf {nf}. Give --nf to choose yourself.")
    return c

"""GAN Compression's search space and once-for-all supernet: channel widths of a fixed skeleton.

The skeleton is the same student frame AGD uses (`frame_template`), with one operator in every
cell layer (conv 3x3 by default: for translation, a cell of two of them is CycleGAN's residual
block). What is searched is the width of each position:

  SR:         nf (head, every cell's output, trunk), then each inner cell layer, [up width]
  translate:  stem, down, nf (the trunk at 1/4 resolution), each inner cell layer, up0, up1

A sub-network is named by a config string of those widths in that order, joined by "_" (GAN
Compression's `16_16_32_16_32_32_16_16`). Choices per position are ratios of the widest width
(the same ratios AGD uses, so the two methods search comparable spaces).

The supernet is the widest student with its layers made dynamic (`arch.dynamic`); choosing a
config sets each conv's active output width to the width of the same-named conv in the plain
student of that config, so supernet(config) == extract(config) by construction (and by test).
"""

from __future__ import annotations

import random
from dataclasses import replace

import torch
from torch import nn

from ..arch.build import build_student, load_sliced
from ..arch.cost import spec_macs
from ..arch.dynamic import make_dynamic, out_widths, set_active_widths
from ..arch.spec import ArchSpec, LayerSpec, UpsamplerSpec
from ..errors import UserError
from .agd_supernet import width_choices


class OFASpace:
    def __init__(self, template: ArchSpec, n_cells: int, n_layers: int, op: str = "conv3x3",
                 ratios=(1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)):
        self.template = replace(template, cells=[], meta={})
        self.n_cells, self.n_layers, self.op = n_cells, n_layers, op
        t = self.template
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
        self.names = names
        self.choices = []
        for w in widest:
            ch = width_choices(w, ratios)
            if ch[-1] != w:
                ch.append(w)
            self.choices.append(ch)

    # ---- configs ----------------------------------------------------------------------------
    def __len__(self):
        return len(self.names)

    def max_config(self) -> tuple[int, ...]:
        return tuple(c[-1] for c in self.choices)

    def min_config(self) -> tuple[int, ...]:
        return tuple(c[0] for c in self.choices)

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
        vals = {"nf": spec.nf}
        if spec.task == "translate":
            vals.update(stem=spec.frame.stem, down=spec.frame.down[0], up0=spec.frame.up[0], up1=spec.frame.up[1])
        elif "up" in self.names:
            vals["up"] = spec.upsampler.width
        for c, cell in enumerate(spec.cells):
            for li, layer in enumerate(cell[:-1]):
                vals[f"cell{c}.layer{li}"] = layer.width
        try:
            return self.parse(self.format(vals[n] for n in self.names))
        except KeyError as e:
            raise UserError(f"spec does not fit this space (missing {e})") from None

    def macs(self, config) -> int:
        return spec_macs(self.spec(config))


class OFASupernet(nn.Module):
    """The widest student, dynamic. `set_config` picks the sub-network the next forward runs."""

    def __init__(self, space: OFASpace):
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

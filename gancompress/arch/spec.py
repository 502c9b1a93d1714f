"""ArchSpec: a student architecture written as data.

Every method (AGD, GAN Compression, GAN Slimming, baselines) ends in an `ArchSpec`. It is a small,
versioned, JSON-serialisable description that `build_student` turns into a plain `nn.Module`, so an
architecture can be read, diffed, costed and rebuilt without the code that searched it.

SR skeleton (AGD's): head conv 3x3 (3 -> nf) -> cells, each a chain of layers with a residual
connection around the cell -> trunk conv 3x3 (nf -> nf) + global residual from the head -> upsampler.
Each layer has an operator name (see `ops.OPS`) and an output width in channels. The last layer of
every cell outputs `nf` channels so the cell's residual add lines up.

Translation skeleton (AGD's, CycleGAN-like; `frame` holds the widths outside the cells): 7x7 stem
(3 -> stem) at full resolution, two stride-2 3x3 convs (stem -> down[0] -> nf), the cells at 1/4
resolution, two x2 upsampling layers (nf -> up[0] -> up[1]; transposed conv or nearest resize +
conv 3x3), 7x7 output conv to RGB. Instance norm and ReLU throughout (see `ops.OpStyle`).

Label-map students (`task` "label2image", `spade` set; `cells` empty): GauGAN's generator layout
(arch/spade.py): `fc` (3x3 conv of the label map at 1/32 size) -> 7 SPADE residual blocks
(head_0, G_middle_0, G_middle_1, up_0..up_3, a x2 nearest up-sampling before all but head_0 and
G_middle_1) -> conv_img 3x3 -> RGB. Each block has its own output, middle (conv_0) and SPADE
hidden widths; a learned 1x1 shortcut where its input and output widths differ.

Graph students (`graph` set; `cells` empty): a teacher read as a graph of standard layers and
pruned (teachers/graph_reader.py, arch/graph.py, arch/graph_channels.py); `graph` is its GraphSpec as a dict, and the
builder runs it as a GraphNet.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UserError
from ..fileio import atomic_write_text

SPEC_VERSION = 1
SR_SCALES = (2, 3, 4)
UPSAMPLERS = ("pixelshuffle", "progressive")
SKIPS = ("bicubic", "none")
UNSHUFFLES = (1, 2, 4)
TASKS = ("sr", "translate", "label2image")
SPADE_BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
SPADE_UP_BEFORE = (False, True, False, True, True, True, True)  # GauGAN's "normal": 5 up-samplings
# the up blocks change width in GauGAN, so their shortcut is a learned 1x1 conv; the first three keep
# it (identity). Fixed by the layout, not the widths, so every width choice has the same modules
SPADE_LEARNED_SHORTCUT = (False, False, False, True, True, True, True)
# the blocks with their own output width; the others keep the trunk's (their input's)
SPADE_UP_BLOCKS = tuple(b for b, learned in zip(SPADE_BLOCKS, SPADE_LEARNED_SHORTCUT) if learned)


def spade_block_outs(trunk, up_outs) -> list:
    """Every block's output width: the trunk's for the identity-shortcut blocks, then the up blocks'."""
    return [trunk] * (len(SPADE_BLOCKS) - len(SPADE_UP_BLOCKS)) + list(up_outs)
SPADE_NORMS = ("batch", "instance")
UP_KINDS = ("deconv", "resize")
FRAME_KERNELS = (1, 3, 5, 7, 9)
PADDINGS = ("reflect", "zeros")


@dataclass
class LayerSpec:
    op: str
    width: int


@dataclass
class UpsamplerSpec:
    """How the trunk features become the HR image.

    `pixelshuffle` (ESPCN style): one conv 3x3 nf -> 3*s^2 then PixelShuffle(s); the cheapest.
    `progressive` (SRResNet/ESRGAN style): per x2 (or x3) stage conv 3x3 -> 4*width, PixelShuffle(2),
    LeakyReLU, then a final conv 3x3 width -> 3 at HR.
    """

    kind: str = "pixelshuffle"
    width: int = 0


@dataclass
class FrameSpec:
    """Widths of the translation skeleton's fixed-position layers (everything but the cells)."""

    stem: int
    down: list[int]  # the first stride-2 conv's width; the second maps to nf
    up: list[int]  # the two x2 upsampling layers' widths
    up_kind: str = "deconv"  # deconv: ConvTranspose2d 3x3 s2 | resize: nearest x2 + conv 3x3
    # kernel sides of the full-resolution stem and output convs (CycleGAN: 7; Johnson's
    # style-transfer nets: 9), so a student can draw at the scale its teacher draws
    stem_k: int = 7
    out_k: int = 7
    # padding of the two stride-2 convs: reflect, or zeros as CycleGAN's released generator pads
    # them (a teacher of that layout becomes a student exactly: teachers/as_student.py)
    down_pad: str = "reflect"


@dataclass
class SpadeSpec:
    """The label -> image student's widths. `blocks[i]` = [out, mid, hidden] of SPADE_BLOCKS[i]:
    its output width, conv_0's width, and the hidden width of its SPADE layers (`mlp_shared`)."""

    label_nc: int  # one-hot input channels (classes, plus the instance-edge channel if any)
    fc: int  # fc's width: the first block's input
    blocks: list[list[int]]
    norm: str = "batch"  # SPADE's parameter-free norm (GauGAN: synchronized batch norm)
    ks: int = 3  # SPADE's kernel side

    def widths_in(self) -> list[int]:
        return [self.fc] + [b[0] for b in self.blocks[:-1]]


@dataclass
class ArchSpec:
    task: str
    scale: int
    nf: int
    cells: list[list[LayerSpec]]
    upsampler: UpsamplerSpec = field(default_factory=UpsamplerSpec)
    skip: str = "bicubic"  # global residual: output = network + bicubic-upscaled input ("none": off)
    bits: int = 32
    meta: dict = field(default_factory=dict)
    version: int = SPEC_VERSION
    frame: FrameSpec | None = None  # translation only
    graph: dict | None = None  # a pruned teacher's layer graph (GraphSpec.to_dict), instead of cells
    spade: SpadeSpec | None = None  # label2image only
    # SR: the LR input is pixel-unshuffled by this factor before the head, so the head, cells and
    # trunk run at 1/unshuffle of its side (SRStudent)
    unshuffle: int = 1

    @classmethod
    def from_graph(cls, task: str, scale: int, graph, meta: dict | None = None) -> "ArchSpec":
        """A graph student: `graph` is a GraphSpec (or its dict)."""
        g = graph if isinstance(graph, dict) else graph.to_dict()
        return cls(task=task, scale=scale, nf=0, cells=[], skip="none", meta=dict(meta or {}), graph=g).validate()

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> "ArchSpec":
        from .ops import OPS

        if self.task not in TASKS:
            raise UserError(f"spec task {self.task!r} is not supported; known tasks: {TASKS}")
        if self.unshuffle not in UNSHUFFLES or (self.unshuffle > 1 and (self.task != "sr" or self.graph is not None)):
            raise UserError(f"unshuffle must be one of {UNSHUFFLES}, and above 1 only for a cell-based SR "
                            f"student; got {self.unshuffle}")
        if self.graph is not None:
            return self._validate_graph()
        if self.nf < 1:
            raise UserError(f"spec nf must be >= 1, got {self.nf}")
        if self.task == "label2image" or self.spade is not None:
            return self._validate_spade()
        if self.task == "translate":
            self._validate_frame()
        elif self.scale not in SR_SCALES:
            raise UserError(f"unsupported scale x{self.scale}: supported scales are {SR_SCALES}")
        if self.task == "sr" and self.upsampler.kind not in UPSAMPLERS:
            raise UserError(f"unknown upsampler {self.upsampler.kind!r}; choose one of {UPSAMPLERS}")
        if self.skip not in SKIPS or (self.task == "translate" and self.skip != "none"):
            raise UserError(f"unknown global skip {self.skip!r}; choose one of {SKIPS}")
        if self.unshuffle > 1 and self.upsampler.kind != "pixelshuffle":
            raise UserError(f"unshuffle {self.unshuffle} needs the pixelshuffle upsampler (got {self.upsampler.kind})")
        if self.task == "sr" and self.upsampler.kind == "progressive" and self.upsampler.width < 1:
            raise UserError("a progressive upsampler needs width >= 1")
        for ci, cell in enumerate(self.cells):
            if not cell:
                raise UserError(f"cell {ci} of the spec has no layers")
            for li, layer in enumerate(cell):
                if layer.op not in OPS:
                    raise UserError(
                        f"cell {ci} layer {li}: unknown operator {layer.op!r}; known: {sorted(OPS)}"
                    )
                if layer.width < 1:
                    raise UserError(f"cell {ci} layer {li}: width must be >= 1, got {layer.width}")
            if cell[-1].width != self.nf:
                raise UserError(
                    f"cell {ci}: its last layer must output nf={self.nf} channels (got {cell[-1].width}) "
                    "so the cell's residual connection lines up"
                )
        return self

    def _validate_graph(self) -> "ArchSpec":
        from .graph import GraphSpec, check_graph

        try:
            check_graph(GraphSpec.from_dict(self.graph))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"malformed graph in the spec ({type(e).__name__}: {str(e)[:200]})") from None
        if self.cells or self.bits != 32 or self.skip != "none":
            raise UserError("a graph spec has no cells, no int8 layers and no global skip")
        return self

    def _validate_spade(self) -> "ArchSpec":
        sp = self.spade
        if self.task != "label2image" or sp is None:
            raise UserError("a label2image spec needs a 'spade' section, and only label2image specs have one")
        if self.cells or self.scale != 1 or self.skip != "none" or self.bits != 32:
            raise UserError("a label2image spec has no cells, scale 1, no global skip and 32-bit weights")
        if len(sp.blocks) != len(SPADE_BLOCKS) or any(len(b) != 3 for b in sp.blocks):
            raise UserError(f"spade.blocks needs {len(SPADE_BLOCKS)} [out, mid, hidden] triples "
                            f"({', '.join(SPADE_BLOCKS)}), got {sp.blocks}")
        if min([sp.label_nc, sp.fc, *(w for b in sp.blocks for w in b)]) < 1:
            raise UserError(f"spade widths must be >= 1, got label_nc {sp.label_nc}, fc {sp.fc}, blocks {sp.blocks}")
        trunk = [b[0] for b, learned in zip(sp.blocks, SPADE_LEARNED_SHORTCUT) if not learned]
        if any(w != sp.fc for w in trunk):
            raise UserError(f"head_0, G_middle_0 and G_middle_1 add their input to their output (identity shortcut): "
                            f"their output widths must equal fc's {sp.fc}, got {trunk}")
        if sp.norm not in SPADE_NORMS:
            raise UserError(f"spade.norm must be one of {SPADE_NORMS}, got {sp.norm!r}")
        if sp.ks not in (1, 3, 5):
            raise UserError(f"spade.ks must be 1, 3 or 5, got {sp.ks}")
        return self

    def _validate_frame(self):
        f = self.frame
        if self.scale != 1:
            raise UserError(f"a translation spec has scale 1, got {self.scale}")
        if f is None:
            raise UserError("a translation spec needs a 'frame' (stem, down and up widths)")
        if f.up_kind not in UP_KINDS:
            raise UserError(f"unknown up_kind {f.up_kind!r}; choose one of {UP_KINDS}")
        if len(f.down) != 1 or len(f.up) != 2:
            raise UserError(f"frame needs 1 'down' width and 2 'up' widths, got {f.down} and {f.up}")
        if min([f.stem, *f.down, *f.up]) < 1:
            raise UserError(f"frame widths must be >= 1, got stem {f.stem}, down {f.down}, up {f.up}")
        if f.down_pad not in PADDINGS:
            raise UserError(f"frame down_pad must be one of {PADDINGS}, got {f.down_pad!r}")
        if f.stem_k not in FRAME_KERNELS or f.out_k not in FRAME_KERNELS:
            raise UserError(f"frame kernel sides must be one of {FRAME_KERNELS}, got stem_k {f.stem_k}, out_k {f.out_k}")

    # ---- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["cells"] = [[[l["op"], l["width"]] for l in cell] for cell in d["cells"]]
        if d["unshuffle"] == 1:  # such specs read exactly as before the field existed
            del d["unshuffle"]
        if d["graph"] is None:  # specs without a graph read exactly as before the field existed
            del d["graph"]
        else:
            del d["upsampler"]
        if d["spade"] is None:  # specs of the other tasks read exactly as before the field existed
            del d["spade"]
        else:
            del d["upsampler"]
        if d["frame"] is None:  # SR specs read exactly as before the field existed
            del d["frame"]
        else:
            del d["upsampler"]
            for k, default in (("stem_k", 7), ("out_k", 7), ("down_pad", "reflect")):
                if d["frame"][k] == default:  # such frames read exactly as before the fields existed
                    del d["frame"][k]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchSpec":
        if not isinstance(d, dict):
            raise UserError(f"malformed architecture spec (a JSON object is expected, got {type(d).__name__})")
        try:
            version = int(d.get("version", SPEC_VERSION))
            if version > SPEC_VERSION:
                raise UserError(
                    f"spec version {version} is newer than this gancompress understands "
                    f"({SPEC_VERSION}); upgrade gancompress"
                )
            cells = [[LayerSpec(str(op), int(w)) for op, w in cell] for cell in d["cells"]]
            up = d.get("upsampler", {}) or {}
            fr = d.get("frame")
            frame = None if fr is None else FrameSpec(int(fr["stem"]), [int(v) for v in fr["down"]],
                                                      [int(v) for v in fr["up"]], str(fr.get("up_kind", "deconv")),
                                                      int(fr.get("stem_k", 7)), int(fr.get("out_k", 7)),
                                                      str(fr.get("down_pad", "reflect")))
            sp = d.get("spade")
            spade = None if sp is None else SpadeSpec(int(sp["label_nc"]), int(sp["fc"]),
                                                      [[int(v) for v in b] for b in sp["blocks"]],
                                                      str(sp.get("norm", "batch")), int(sp.get("ks", 3)))
            spec = cls(
                task=str(d["task"]),
                scale=int(d["scale"]),
                nf=int(d["nf"]),
                cells=cells,
                upsampler=UpsamplerSpec(str(up.get("kind", "pixelshuffle")), int(up.get("width", 0))),
                skip=str(d.get("skip", "none")),  # a spec without the field has no global skip
                bits=int(d.get("bits", 32)),
                meta=dict(d.get("meta", {})),
                version=version,
                frame=frame,
                graph=d.get("graph"),
                spade=spade,
                unshuffle=int(d.get("unshuffle", 1)),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise UserError(f"malformed architecture spec ({type(e).__name__}: {str(e)[:200]})") from None
        return spec.validate()

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, or nesting too deep to parse
            raise UserError(f"architecture spec is not valid JSON: {str(e)[:200]}") from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ArchSpec":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"spec file {p} not found")
        try:
            return cls.from_json(p.read_bytes().decode("utf-8", errors="replace"))
        except UserError as e:
            raise UserError(f"{p}: {e}") from None

    # ---- conveniences ---------------------------------------------------------------------------
    def layers(self):
        """Yield (cell index, layer index, input width, LayerSpec) in forward order."""
        for ci, cell in enumerate(self.cells):
            cin = self.nf
            for li, layer in enumerate(cell):
                yield ci, li, cin, layer
                cin = layer.width

    def summary(self) -> str:
        """One line per cell, e.g. `cell 0: rb:16 conv1x1:21 conv3x3:32`."""
        if self.graph is not None:
            from .graph import GraphSpec

            return GraphSpec.from_dict(self.graph).summary()
        if self.spade is not None:
            sp = self.spade
            lines = [f"label2image, {sp.label_nc} label channels, fc {sp.fc}, {sp.norm} norm, SPADE kernel {sp.ks}"]
            lines += [f"  {name}: out {b[0]}, mid {b[1]}, hidden {b[2]}" for name, b in zip(SPADE_BLOCKS, sp.blocks)]
            return "\n".join(lines)
        if self.task == "translate":
            f = self.frame
            lines = [f"translate, nf={self.nf}, stem={f.stem}, down={f.down[0]}, up={f.up[0]},{f.up[1]} "
                     f"({f.up_kind}), stem/out kernels {f.stem_k}/{f.out_k}"]
            lines += [f"  cell {ci}: " + " ".join(f"{l.op}:{l.width}" for l in cell)
                      for ci, cell in enumerate(self.cells)]
            return "\n".join(lines)
        lines = [f"SR x{self.scale}, nf={self.nf}, upsampler={self.upsampler.kind}"
                 + (f"({self.upsampler.width})" if self.upsampler.kind == "progressive" else "")
                 + f", global skip={self.skip}"
                 + (f", input unshuffled by {self.unshuffle}" if self.unshuffle > 1 else "")]
        for ci, cell in enumerate(self.cells):
            lines.append(f"  cell {ci}: " + " ".join(f"{l.op}:{l.width}" for l in cell))
        return "\n".join(lines)


def frame_side(hw: tuple[int, int], unshuffle: int = 1) -> tuple[int, int]:
    """The side an SR student's head, cells and trunk run at for an LR input of size hw: 1/unshuffle
    of it, rounded up (the student edge-pads the input to whole unshuffled pixels)."""
    return -(-hw[0] // unshuffle), -(-hw[1] // unshuffle)


def uniform_sr_spec(scale: int, nf: int, n_cells: int, n_layers: int, op: str = "conv3x3",
                    width: int | None = None, upsampler: UpsamplerSpec | None = None,
                    skip: str = "bicubic", unshuffle: int = 1) -> ArchSpec:
    """Every layer the same operator and width (the last of each cell at nf): baselines and tests."""
    w = nf if width is None else width
    cells = [[LayerSpec(op, w) for _ in range(n_layers - 1)] + [LayerSpec(op, nf)] for _ in range(n_cells)]
    return ArchSpec("sr", scale, nf, cells, upsampler or UpsamplerSpec(), skip=skip, unshuffle=unshuffle).validate()


def frame_for_width(nf: int, up_kind: str = "deconv", stem_k: int = 7, out_k: int = 7) -> FrameSpec:
    """CycleGAN's proportions around a trunk of width nf: stem nf/4, down nf/2, up nf/2 and nf/4."""
    q, h = max(1, round(nf / 4)), max(1, round(nf / 2))
    return FrameSpec(q, [h], [h, q], up_kind, stem_k, out_k)


def uniform_translate_spec(nf: int, n_cells: int, n_layers: int, op: str = "conv3x3",
                           width: int | None = None, frame: FrameSpec | None = None) -> ArchSpec:
    """Translation spec with every layer the same operator and width (the last of each cell at nf)."""
    w = nf if width is None else width
    cells = [[LayerSpec(op, w) for _ in range(n_layers - 1)] + [LayerSpec(op, nf)] for _ in range(n_cells)]
    return ArchSpec("translate", 1, nf, cells, skip="none", frame=frame or frame_for_width(nf)).validate()


SPADE_MULTS = (16, 16, 16, 8, 4, 2, 1)  # GauGAN's block output widths in units of ngf


def spade_spec(label_nc: int, ngf: int, hidden: int | None = None, mids: list[int] | None = None,
               hiddens: list[int] | None = None, norm: str = "batch", ks: int = 3) -> ArchSpec:
    """GauGAN's proportions at width ngf: block outputs 16,16,16,8,4,2,1 x ngf, fc 16 ngf, each
    conv_0 min(in, out) wide (as GauGAN), SPADE hidden `hidden` (default 2 ngf: GauGAN's 128 at 64)."""
    outs = [m * ngf for m in SPADE_MULTS]
    return spade_spec_of(label_nc, 16 * ngf, outs[3:], mids, hiddens or [hidden or 2 * ngf] * len(outs), norm, ks)


def spade_spec_of(label_nc: int, trunk: int, up_outs: list[int], mids: list[int] | None, hiddens: list[int],
                  norm: str = "batch", ks: int = 3) -> ArchSpec:
    """A label2image spec from its free widths: the trunk (fc, head_0, G_middle_0/1), the four up
    blocks' outputs, and each block's mid (default min(in, out)) and SPADE hidden width."""
    outs = spade_block_outs(trunk, up_outs)
    ins = [trunk] + outs[:-1]
    mids = mids or [min(i, o) for i, o in zip(ins, outs)]
    blocks = [[o, m, h] for o, m, h in zip(outs, mids, hiddens)]
    return ArchSpec("label2image", 1, max(1, trunk // 16), [], skip="none",
                    spade=SpadeSpec(label_nc, trunk, blocks, norm, ks)).validate()

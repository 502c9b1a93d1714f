"""Intermediate-feature distillation (GAN Compression): named teacher layers, matched to named
student layers through learnable 1x1 mapping convs (student width -> teacher width).

Layers are always addressed by module path (`block4`, `model.14`), never by index into a list of
modules. Zoo teachers come with theirs (`feature_layers()`); a `module:` teacher takes
`--teacher-layers`; black boxes (TorchScript, torch.export, ONNX) cannot be hooked, and the caller
falls back to output distillation.

Matching rule: the student's feature points are its encoder output and each cell's output
(`head` or `down.1`, `cells.0` ...). k teacher layers go, in order, to k points spread evenly over that
list from first to last (3 layers on a 5-cell SR student: head, cells.2, cells.4). Both sides are
then at the same resolution, so a 1x1 conv is all the mapping needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.dynamic import DynamicConv2d
from ..errors import UserError

BLACK_BOX_KINDS = ("torchscript", "export", "onnx")


def student_points(task: str, n_cells: int) -> list[str]:
    """Module paths of the student's feature points, in forward order (label2image: its SPADE
    blocks, named as the teacher's)."""
    if task == "label2image":
        from ..arch.spec import SPADE_BLOCKS

        return list(SPADE_BLOCKS)
    return ["down.1" if task == "translate" else "head"] + [f"cells.{i}" for i in range(n_cells)]


def match_points(n_teacher: int, points: list[str]) -> list[str]:
    if n_teacher == 1:
        return [points[-1]]
    return [points[int(j * (len(points) - 1) / (n_teacher - 1) + 0.5)] for j in range(n_teacher)]


def hookable(teacher) -> bool:
    return teacher.kind_name not in BLACK_BOX_KINDS and isinstance(teacher.model, nn.Module) \
        and not isinstance(teacher.model, torch.jit.ScriptModule)


def resolve_teacher_layers(teacher, requested: list[str] | None) -> tuple[dict[str, str], str]:
    """(label -> module path, note). An empty dict means output distillation only; the note says why."""
    if not hookable(teacher):
        return {}, (f"teacher {teacher.source} is a black box ({teacher.kind_name}): feature "
                    "distillation is unavailable, falling back to output distillation")
    names = dict(teacher.model.named_modules())
    if requested:
        for path in requested:
            if path not in names or not path:
                avail = [n for n in names if n]
                shown = ", ".join(avail[:60]) + (f" ... ({len(avail) - 60} more)" if len(avail) > 60 else "")
                raise UserError(f"--teacher-layers: teacher {teacher.source} has no layer {path!r}; "
                                f"available names: {shown}")
        return {p: p for p in requested}, ""
    if teacher.feature_layers:
        return dict(teacher.feature_layers), ""
    return {}, (f"teacher {teacher.source} has no named feature layers: feature distillation is off; pass "
                "--teacher-layers PATH[,PATH...] (module names inside the teacher) to turn it on")


class _Enough(Exception):
    """Raised by the last tap to cut a teacher's forward pass short."""


class FeatureTaps:
    """Forward hooks that keep the outputs of named submodules from the last forward pass.

    `run_until_taps(fn, x)` stops the forward pass once every tap has fired: distillation needs
    only the teacher's trunk features (its output is cached), and an SR teacher spends most of
    its MACs after the trunk, at high resolution (70 % for SRGAN x4)."""

    def __init__(self, module: nn.Module, paths: list[str]):
        self.paths = list(paths)
        self.out: dict[str, torch.Tensor] = {}  # insertion order = the order the layers ran in
        self._stop = False
        self._handles = [module.get_submodule(p).register_forward_hook(self._keep(p)) for p in self.paths]

    def _keep(self, path):
        def hook(_m, _inp, output):
            self.out[path] = output[0] if isinstance(output, (tuple, list)) else output
            if self._stop and len(self.out) == len(self.paths):
                raise _Enough
        return hook

    def run_until_taps(self, fn, x) -> list[torch.Tensor]:
        # forget what other calls of the module left (the teacher also labels training views): only
        # this input's features may count, and a stale full set would stop the run at once
        self.out = {}
        self._stop = True
        try:
            fn(x)
        except _Enough:
            pass
        finally:
            self._stop = False
        return self.take()

    def take(self) -> list[torch.Tensor]:
        feats = [self.out[p] for p in self.paths]
        self.out = {}
        return feats

    def close(self):
        for h in self._handles:
            h.remove()


def probe_features(module: nn.Module, paths: list[str], x: torch.Tensor, forward=None) -> dict[str, tuple]:
    """path -> output shape (C, H, W) of each named layer, in the order the layers run, found by
    one no-grad pass of `forward` (default: the module itself; a Teacher for a teacher's model)."""
    taps = FeatureTaps(module, paths)
    try:
        with torch.no_grad():
            (forward or module)(x)
        return {p: tuple(f.shape[1:]) for p, f in taps.out.items()}
    finally:
        taps.close()


def usable_teacher_layers(teacher, layers: dict[str, str], x: torch.Tensor, hw: tuple, explicit: bool):
    """Teacher layers in forward order whose output has the student's feature resolution `hw`
    (e.g. an SR teacher's HR-side layers cannot be matched to the LR trunk). Returns (paths, note);
    a layer the user named explicitly at another resolution is an error."""
    shapes = probe_features(teacher.model, list(layers.values()), x, forward=teacher)
    bad = [p for p, sh in shapes.items() if tuple(sh[1:]) != tuple(hw)]
    if bad and explicit:
        p = bad[0]
        raise UserError(f"--teacher-layers: {p} outputs {shapes[p][1]}x{shapes[p][2]} features for a "
                        f"{x.shape[-2]}x{x.shape[-1]} input, but the student's are {hw[0]}x{hw[1]}; name layers "
                        "of the teacher's trunk (at the student's trunk resolution)")
    missing = [p for p in layers.values() if p not in shapes]
    if missing and explicit:
        raise UserError(f"--teacher-layers: {missing[0]} does not run in the teacher's forward pass")
    keep = [p for p in shapes if p not in bad]
    dropped = bad + missing
    note = f"skipped teacher layers {', '.join(dropped)}: another resolution" if dropped else ""
    return keep, note


def same_name_layers(teacher, layers: dict[str, str], student: nn.Module, x: torch.Tensor, explicit: bool):
    """(teacher paths, student paths, note): teacher layers matched to the student's module of the
    same name (a SPADE student's blocks are named as GauGAN's), kept where both give features of
    the same size; a layer the user named that cannot be matched is an error."""
    names = dict(student.named_modules())
    wanted = [p for p in layers.values() if p in names]
    t_shapes = probe_features(teacher.model, wanted, x, forward=teacher)
    s_shapes = probe_features(student, wanted, x)
    keep = [p for p in t_shapes if p in s_shapes and t_shapes[p][1:] == s_shapes[p][1:]]
    dropped = [p for p in layers.values() if p not in keep]
    if dropped and explicit:
        raise UserError(f"--teacher-layers: {dropped[0]} has no student block of the same name and size; name "
                        "SPADE blocks (head_0, G_middle_0, G_middle_1, up_0 ... up_3)")
    return keep, keep, (f"skipped teacher layers {', '.join(dropped)}: no student block of that name and size"
                        if dropped else "")


class FeatureMapper(nn.Module):
    """One 1x1 conv per matched pair, from the widest student width to the teacher's width; a
    narrower sub-network uses the leading input slice (dynamic), like the supernet itself."""

    def __init__(self, student_widths: list[int], teacher_widths: list[int]):
        super().__init__()
        self.maps = nn.ModuleList(DynamicConv2d(s, t, 1) for s, t in zip(student_widths, teacher_widths))

    def forward(self, student_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(f) for m, f in zip(self.maps, student_feats)]

    def loss(self, student_feats, teacher_feats) -> torch.Tensor:
        """Sum over pairs of MSE(map(S), T) / mean(T^2): relative, so one weight works whatever
        the teacher's activation scale. (Plain MSE let the CycleGAN demo teacher's trunk features,
        mean square 5-7, outweigh the output loss ten to one, and its students reached 13 dB PSNR
        to the teacher; SRGAN's are 0.1, so lambda_distill 0.1 here matches the plain-MSE weight 1
        measured on it.) Shapes must agree exactly (a mismatch is a matching bug: it raises)."""
        total = 0.0
        for mapped, t in zip(self(student_feats), teacher_feats):
            if mapped.shape != t.shape:
                raise RuntimeError(f"mapped student feature {tuple(mapped.shape)} != teacher feature {tuple(t.shape)}")
            total = total + F.mse_loss(mapped, t) / (t.detach().pow(2).mean() + 1e-8)
        return total

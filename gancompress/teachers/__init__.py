"""Teachers: the big generator a student learns to imitate, loaded from whatever the user has.

`load_teacher("KIND:PATH")` returns a frozen `Teacher` whose `forward` always takes and returns
RGB in [0, 1], whatever range the wrapped model uses, so the rest of the toolkit never has to
care where a teacher came from. Kinds: the zoo architectures (`srgan`, `esrgan`, `srresnet`,
rebuilt from a checkpoint), black boxes (`torchscript`, `export`, `onnx`,
`module:pkg.mod:factory=WEIGHTS`) and modules handed over in Python (`python:<fingerprint>`,
teachers/in_memory.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..fileio import save_safetensors_atomic
from .generic import (
    OnnxModule,
    clean_state_dict,
    load_exported,
    load_module_factory,
    load_onnx,
    load_torchscript,
    load_weights_file,
)
from .in_memory import is_module_ref, registered_module
from .trust import require_trust
from .zoo import ZOO, RRDBNet, SRGAN, SRResNet, ZooEntry

__all__ = [
    "Teacher", "load_teacher", "save_zoo_teacher", "known_kinds", "DEMO_TEACHER",
    "ZOO", "ZooEntry", "SRGAN", "RRDBNet", "SRResNet", "OnnxModule",
    "load_weights_file", "clean_state_dict",
]

DEMO_TEACHER = Path(__file__).resolve().parents[1] / "assets" / "sr_teacher_x4.safetensors"
DEMO_TRANSLATE_TEACHER = Path(__file__).resolve().parents[1] / "assets" / "translate_teacher.safetensors"
DEMO_LABEL2IMAGE_TEACHER = Path(__file__).resolve().parents[1] / "assets" / "label2image_teacher.safetensors"
_DEMOS = {"demo": ("esrgan", DEMO_TEACHER, "sr"), "demo-translate": ("cyclegan-resnet", DEMO_TRANSLATE_TEACHER, "translate"),
          "demo-label2image": ("spade", DEMO_LABEL2IMAGE_TEACHER, "label2image")}

_BLACK_BOX = {"torchscript": load_torchscript, "export": load_exported, "onnx": load_onnx}
KIND_ALIASES = {"pt2": "export", "jit": "torchscript", "ts": "torchscript",
            "rrdbnet": "esrgan", "msrresnet": "srresnet", "cyclegan": "cyclegan-resnet",
            "resnet": "cyclegan-resnet", "pix2pix": "pix2pix-unet", "unet": "pix2pix-unet"}
_EXTENSIONS = {".onnx": "onnx", ".pt2": "export", ".ts": "torchscript", ".jit": "torchscript",
               ".torchscript": "torchscript"}
# A KIND prefix is a bare word; anything else before a colon (a folder, a Windows drive) is path.
_KIND_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]+$")


def known_kinds() -> list[str]:
    """Kinds accepted in `KIND:PATH`, for error messages and `--help`."""
    return [*ZOO, *_BLACK_BOX, "module:pkg.mod:factory"]


def _kinds_text() -> str:
    return ", ".join(known_kinds())


class Teacher(nn.Module):
    """A frozen teacher that speaks [0, 1] RGB on both sides.

    `forward` maps the input into the model's `value_range`, runs it and maps the output back,
    without clamping (so distillation losses see the model's real output and gradients can flow
    when `differentiable`). `predict` is the clamped, no-grad version for evaluation and export.
    Teachers stay in eval mode: `.train()` is ignored so a parent module switching to training
    cannot turn on BatchNorm statistics updates in a model we must not change.
    """

    def __init__(self, model: Any, *, kind: str, source: str, scale: int,
                 value_range: tuple[float, float] = (0.0, 1.0), differentiable: bool = True,
                 feature_layers: dict[str, str] | None = None, num_params: int | None = None):
        super().__init__()
        self.model = model  # registered as a submodule when it is an nn.Module
        self.kind_name = kind  # the registry key (ZOO or a black-box kind), for code to compare
        self.kind = kind  # for people: the key, and how the teacher was loaded
        self.source = source
        self.scale = int(scale)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.differentiable = bool(differentiable)
        self.scale_inferred = False
        self.info: dict = {}  # inferred hyper-parameters of zoo teachers
        # Module paths relative to `self.model`, for feature distillation hooks.
        self.feature_layers = dict(feature_layers or {})
        self._num_params = num_params
        self.in_channels = 3  # a label-map teacher (task label2image): its one-hot channels
        self.map_input = True  # False: the input is a label map, never moved into value_range
        if isinstance(model, nn.Module):
            for p in model.parameters():
                p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "Teacher":
        # Set the flags directly: exported programs (torch.export) raise on .eval()/.train().
        for m in self.modules():
            m.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        unit = (lo, hi) == (0.0, 1.0)
        if not unit and self.map_input:
            x = x * (hi - lo) + lo
        y = self.model(x)
        if isinstance(y, (tuple, list)):  # some exports return (image, extras...)
            y = y[0]
        return y if unit else (y - lo) / (hi - lo)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference output clamped to [0, 1] (no autograd, eval mode)."""
        self.eval()
        return self(x).clamp_(0.0, 1.0)

    def num_params(self) -> int | None:
        """Parameter count of the wrapped model, or None when it cannot be known (e.g. ONNX)."""
        if self._num_params is not None:
            return self._num_params
        if isinstance(self.model, nn.Module):
            n = sum(p.numel() for p in self.model.parameters())
            return n or None
        return None

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, source={self.source!r}, scale={self.scale}, "
                f"value_range={self.value_range}, differentiable={self.differentiable}")


# --------------------------------------------------------------------------- parsing
def _parse_ref(ref: str) -> tuple[str, str]:
    """Split `KIND:PATH` (or a bare PATH) into (kind, target); module refs keep `pkg.mod:fn=W`."""
    head, sep, rest = ref.partition(":")
    is_drive = os.name == "nt" and len(head) == 1
    if sep and _KIND_RE.match(head) and not is_drive:
        kind = KIND_ALIASES.get(head.lower(), head.lower())
        if kind == "module":
            return kind, rest
        if kind not in ZOO and kind not in _BLACK_BOX:
            raise UserError(f"unknown teacher kind {head!r} in {ref!r}; known kinds: {_kinds_text()}")
        if not rest:
            raise UserError(f"teacher {ref!r} names no file; write it as {kind}:PATH")
        return kind, rest
    path = _user_path(ref)
    if not _is_file(path) and ref.lower() in (*ZOO, *_BLACK_BOX, *KIND_ALIASES, "module"):
        raise UserError(f"teacher {ref!r} names a kind but no file; write it as {ref}:PATH")
    if not _is_file(path):
        raise UserError(f"teacher file not found: {ref}; give an existing file, as KIND:PATH "
                        f"where the extension does not say the kind (kinds: {_kinds_text()})")
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"cannot tell the teacher kind of {ref!r} from its extension "
                        f"{path.suffix or '(none)'}; write it as KIND:PATH, e.g. esrgan:{ref} "
                        f"(kinds: {_kinds_text()})")
    return kind, ref


def _user_path(ref: str) -> Path:
    try:
        return Path(ref).expanduser()
    except RuntimeError:  # ~name of an unknown user
        return Path(ref)


def _is_file(path: Path) -> bool:
    """Path.is_file, but False for names the OS refuses (too long, NUL bytes, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _check_value_range(value_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError) as exc:
        raise UserError(f"value range {value_range!r} must be two numbers (lo, hi), "
                        "e.g. (-1, 1)") from exc
    if not hi > lo:
        raise UserError(f"value range {value_range!r} must have hi > lo, e.g. (-1, 1)")
    return lo, hi


def _probe_scale(teacher: Teacher, input_shape: list | None, device) -> tuple[int, str]:
    """Infer a black box's upscaling factor from the output/input size of a small probe."""
    shape = [1, 3, 16, 16]
    if input_shape and len(input_shape) == 4:  # respect dimensions the file pins
        shape = [d if isinstance(d, int) else s for d, s in zip(input_shape, shape)]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen).to(device)
    try:
        with torch.no_grad():
            y = teacher(x)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"could not infer the scale of teacher {teacher.source} by running a "
                        f"{'x'.join(map(str, shape))} input ({first}); pass the scale explicitly "
                        "(--scale)") from exc
    h, w = shape[2], shape[3]
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[-2] % h or y.shape[-1] % w \
            or y.shape[-2] // h != y.shape[-1] // w or y.shape[-2] < h:
        got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserError(f"teacher {teacher.source} maps a {shape} input to {got}, not an integer "
                        "upscaling; pass the scale explicitly (--scale)")
    return y.shape[-2] // h, f"{h}x{w}"


# --------------------------------------------------------------------------- loading
def load_teacher(ref: str, *, scale: int | None = None, value_range: tuple | None = None,
                 weights: str | None = None, device: str | torch.device = "cpu",
                 trust_code: bool = False) -> Teacher:
    """Load a frozen teacher from `KIND:PATH`, a bare PATH with a telling extension, or `demo`.

    Zoo kinds infer their scale from the checkpoint (a given `scale` must agree); black boxes
    use `scale` or infer it from a probe run. `value_range` defaults to (0, 1). TorchScript and
    module teachers, and .pt2 programs with pickled members, run code when loaded: they need
    `trust_code` (the CLI's --trust-teacher-code; see teachers/trust.py).
    """
    if scale is not None and (not isinstance(scale, int) or isinstance(scale, bool) or scale < 1):
        raise UserError(f"scale {scale!r} must be an integer >= 1")
    if value_range is not None:
        value_range = _check_value_range(value_range)

    if is_module_ref(ref):  # a module handed over in Python (teachers/in_memory.py)
        teacher, hints = _python_teacher(ref, weights, scale, value_range), {}
    else:
        teacher, hints = _file_teacher(ref, scale, value_range, weights, trust_code)
        if hints is None:  # a zoo teacher: its scale is known
            return teacher.to(device)

    teacher = teacher.to(device)
    if scale is None:
        found, probe = _probe_scale(teacher, hints.get("input_shape"), device)
        teacher.scale = found
        teacher.scale_inferred = True
        teacher.kind = f"{teacher.kind} (scale x{found} inferred from a {probe} probe)"
    return teacher


def _python_teacher(ref: str, weights, scale, value_range) -> Teacher:
    import copy

    if weights is not None:
        raise UserError(f"weights={weights!r} cannot be loaded into a Python module teacher; load "
                        "them into the module before passing it")
    model = copy.deepcopy(registered_module(ref))  # freezing it must not touch the user's module
    return Teacher(model, kind="python", source=f"{type(model).__name__} ({ref})", scale=scale or 1,
                   value_range=value_range or (0.0, 1.0))


def _file_teacher(ref: str, scale, value_range, weights, trust_code) -> tuple[Teacher, dict | None]:
    """(teacher, probe hints) from a file reference; hints None for a zoo teacher (scale known)."""
    if ref in _DEMOS:
        kind, path, task = _DEMOS[ref]
        if not path.is_file():
            raise UserError(f"bundled demo teacher missing: {path}; run `gancompress train-teacher --task "
                            f"{task}` to create it, or pass a teacher as KIND:PATH")
        target = str(path)
    else:
        kind, target = _parse_ref(ref)

    if kind == "module":
        require_trust("module", target, trust_code)
        spec, eq, path = target.partition("=")
        if eq:
            if weights is not None and weights != path:
                raise UserError(f"teacher {ref!r} names weights {path!r} and weights={weights!r} "
                                "was also given; give only one")
            weights = path
        model, hints = load_module_factory(spec, weights)
        teacher = Teacher(model, kind="module", source=f"{spec}={weights}" if weights else spec,
                          scale=scale or 1, value_range=value_range or (0.0, 1.0))
    else:
        if weights is not None:
            raise UserError(f"weights={weights!r} is only used with module:pkg.mod:factory "
                            f"teachers; for {kind} put the file in the reference ({kind}:PATH)")
        if not _is_file(_user_path(target)):
            raise UserError(f"teacher file not found: {target} (from {ref!r}); check the path")
        if kind in ZOO:
            entry = ZOO[kind]
            model, info = entry.from_state_dict(load_weights_file(target), source=target)
            if scale is not None and scale != info["scale"]:
                raise UserError(f"teacher {target} is a x{info['scale']} {kind} model but scale "
                                f"{scale} was requested; pass --scale {info['scale']} or another "
                                "checkpoint")
            layers = model.feature_layers() if hasattr(model, "feature_layers") else entry.layer_names
            teacher = Teacher(model, kind=kind, source=target, scale=info["scale"],
                              value_range=value_range or entry.value_range, feature_layers=layers)
            teacher.info = info
            if entry.task == "label2image":
                teacher.in_channels, teacher.map_input = int(info["in_channels"]), False
            return teacher, None
        if kind == "torchscript":
            require_trust(kind, target, trust_code)
        model, hints = load_exported(target, trust_code) if kind == "export" else _BLACK_BOX[kind](target)
        teacher = Teacher(model, kind=kind, source=target, scale=scale or 1,
                          value_range=value_range or (0.0, 1.0),
                          differentiable=not isinstance(model, OnnxModule))
    return teacher, hints


def save_zoo_teacher(module: nn.Module, path: str | os.PathLike) -> Path:
    """Write a model's state dict as safetensors, atomically (temp file + os.replace), so an
    interrupted save never leaves a truncated teacher that fails later in a confusing way."""
    if isinstance(module, Teacher):
        module = module.model
    kind = next((name for name, e in ZOO.items() if type(module) is e.builder), None)
    metadata = {"format": "pt", **({"gancompress_kind": kind} if kind else {})}
    return save_safetensors_atomic(module.state_dict(), path, metadata)

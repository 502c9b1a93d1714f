"""Black-box teacher loaders and the safe weights-file reader they share with the zoo.

A teacher only has to map images to images, so besides the zoo architectures we accept whatever a
user can hand us without our code: a TorchScript file, a `torch.export` program (.pt2), an ONNX
model (run by onnxruntime) or `package.module:factory` plus a weights file.

Weights are read without unpickling arbitrary objects (`weights_only=True` or safetensors): a
checkpoint downloaded from the internet must not be able to run code on the user's machine.

Every loader returns `(model, hints)`; `hints` may hold `input_shape` (a list of ints or None per
dimension) when the file pins a shape, so scale inference can probe with a size the model accepts.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError, warn

# Checkpoint wrappers seen in the wild, in order of preference (BasicSR stores the EMA weights,
# which are the better ones, under `params_ema` next to `params`).
CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model")

_RESAVE_HINT = (
    "re-save it from trusted code as a plain state dict with "
    "`torch.save(model.state_dict(), path)` (or as .safetensors)"
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _require_file(path: str | Path, what: str = "teacher file") -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{what} not found: {p}; check the path")
    return p


# --------------------------------------------------------------------------- state dicts
def clean_state_dict(obj: Any, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Turn a loaded checkpoint into a flat `{name: tensor}` dict.

    Unwraps the usual containers (`params_ema`, `params`, `state_dict`, `model`), drops non-tensor
    entries (epoch counters and the like) and strips the `module.` prefix that DataParallel/DDP add.
    """
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise UserError(
            f"{source} holds a {type(obj).__name__}, not a state dict; {_RESAVE_HINT}"
        )
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        while key.startswith("module."):
            key = key[len("module."):]
        tensors[key] = value
    if not tensors:
        raise UserError(
            f"{source} contains no tensors (top-level keys: {_fmt_keys(list(obj.keys()))}); "
            f"{_RESAVE_HINT}"
        )
    return tensors


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file safely: `.safetensors` directly, anything else with weights_only=True."""
    p = _require_file(path, "weights file")
    if p.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(p), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise UserError(f"cannot read {p} as safetensors ({_first_line(exc)}); "
                            "check that the file is complete") from exc
    else:
        try:
            with warnings.catch_warnings():
                # torch warns before refusing TorchScript archives; our message covers it.
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, zip errors...
            if isinstance(exc, pickle.UnpicklingError):
                # torch's own text suggests weights_only=False, which we must not do.
                reason = "it holds pickled Python objects (e.g. a whole model), not only tensors"
            else:
                reason = _first_line(exc).split(". ")[0]
            raise UserError(
                f"{p} is not a plain tensor checkpoint ({reason}); {_RESAVE_HINT}; "
                "a TorchScript file loads as torchscript:PATH"
            ) from exc
    return clean_state_dict(obj, str(p))


def _fmt_keys(keys: list, limit: int = 5) -> str:
    if not keys:
        return "none"
    shown = ", ".join(str(k) for k in keys[:limit])
    more = f", ... ({len(keys)} total)" if len(keys) > limit else ""
    return f"[{shown}{more}]"


def _ignorable(key: str) -> bool:
    # Old checkpoints predate BatchNorm's step counter; it does not affect eval-mode outputs.
    return key.endswith("num_batches_tracked")


ZOO_KINDS: list[str] = []  # filled by teachers/zoo.py


def fitted(module: nn.Module, sd, source: str, what: str) -> nn.Module:
    """`module` with the checkpoint `sd` loaded, or a UserError that names the mismatch."""
    hint = f"check the teacher kind (zoo kinds: {', '.join(ZOO_KINDS)}) or load it as a black box"
    load_state_dict_checked(module, sd, source=source, what=what, hint=hint)
    return module


def load_state_dict_checked(
    module: nn.Module, sd: Mapping[str, torch.Tensor], *, source: str, what: str, hint: str = ""
) -> None:
    """Load `sd` strictly, but fail with a UserError that lists missing/unexpected keys.

    torch's own error is a wall of text; users need the first few names of each kind and the file.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd and not _ignorable(k)]
    unexpected = [k for k in sd if k not in expected and not _ignorable(k)]
    wrong_shape = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {_fmt_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_fmt_keys(unexpected)}")
        if wrong_shape:
            parts.append(f"shape mismatches (file vs model) {_fmt_keys(wrong_shape, 3)}")
        msg = f"{source} does not fit {what}: " + "; ".join(parts)
        raise UserError(f"{msg}; {hint}" if hint else msg)
    module.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)


# --------------------------------------------------------------------------- loaders
def load_torchscript(path: str | Path) -> tuple[nn.Module, dict]:
    """Load a TorchScript archive (torch.jit.save output) onto the CPU."""
    p = _require_file(path)
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript; the user chose this format, so don't nag them.
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot load {p} as TorchScript ({_first_line(exc)}); save it with "
                        "torch.jit.save(torch.jit.trace(model, x), path) or pick another kind") from exc
    return model, {}


def load_exported(path: str | Path, trust_code: bool = False) -> tuple[nn.Module, dict]:
    """Load a `torch.export` program (.pt2) and return its callable module. The archive is inspected
    first (`trust.load_pt2_checked`): one that would unpickle or run code is refused unless trusted."""
    from .trust import load_pt2_checked

    p = _require_file(path)
    if not zipfile.is_zipfile(p):  # checked here: torch.export.load logs a traceback first
        raise UserError(f"{p} is not a torch.export program (.pt2 files are zip archives); save "
                        "one with torch.export.save(torch.export.export(model, (x,)), path)")
    try:
        program = load_pt2_checked(p, trust_code)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot load {p} as a torch.export program ({_first_line(exc)}); save it "
                        "with torch.export.save(torch.export.export(model, (x,)), path)") from exc
    hints: dict = {}
    example = getattr(program, "example_inputs", None)
    try:
        args = example[0] if example is not None else ()
        if len(args) == 1 and isinstance(args[0], torch.Tensor):
            # Sizes marked dynamic at export time would also accept other shapes, but the
            # example shape is always accepted, which is all the scale probe needs.
            hints["input_shape"] = list(args[0].shape)
    except (TypeError, IndexError):
        pass
    return program.module(), hints


class OnnxModule(nn.Module):
    """An ONNX model run by onnxruntime on the CPU, behind a torch-style `forward`.

    Not differentiable: gradients cannot flow through onnxruntime, so outputs are plain tensors
    without autograd history and `differentiable` is False (methods that need teacher gradients
    must check it). Inputs on another device are copied to the CPU and the output is moved back.
    """

    differentiable = False

    def __init__(self, path: str | Path, num_threads: int | None = None):
        super().__init__()
        import numpy as np
        import onnxruntime as ort

        p = _require_file(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        opts.log_severity_level = 3  # errors only: ORT's info lines are noise for users
        try:
            self.session = ort.InferenceSession(str(p), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"cannot load ONNX model {p} ({_first_line(exc)}); check that it is a "
                            "complete .onnx file (external data files must sit next to it)") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise UserError(f"ONNX model {p} has {len(inputs)} inputs {names}; a teacher must take "
                            "exactly one image tensor (N,3,H,W)")
        self.path = str(p)
        self.input_name = inputs[0].name
        # Symbolic dimensions come back as strings (or None): keep only the fixed ones.
        self.input_shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self._np_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        self.output_name = self.session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.input_shape
        if len(shape) != x.dim() or any(d is not None and d != s for d, s in zip(shape, x.shape)):
            pretty = ["?" if d is None else d for d in shape]
            raise UserError(
                f"ONNX model {self.path} takes input shape {pretty} but got {list(x.shape)}; "
                "re-export it with dynamic batch/height/width axes or feed that size"
            )
        array = x.detach().to("cpu", torch.float32).contiguous().numpy().astype(self._np_dtype)
        out = self.session.run([self.output_name], {self.input_name: array})[0]
        return torch.from_numpy(out.copy()).to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"path={self.path!r}, input_shape={self.input_shape}"


def load_onnx(path: str | Path) -> tuple[nn.Module, dict]:
    """Wrap an ONNX file in an `OnnxModule`."""
    module = OnnxModule(path)
    return module, {"input_shape": module.input_shape}


def load_module_factory(spec: str, weights: str | Path | None = None) -> tuple[nn.Module, dict]:
    """Build a model by calling `pkg.mod:factory()` and load a weights file into it.

    For teachers whose architecture lives in the user's own code: we import it rather than
    unpickling a whole model object.
    """
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise UserError(f"module teacher {spec!r} must look like module:pkg.mod:factory=WEIGHTS")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UserError(f"cannot import {mod_name!r} for teacher module:{spec} ({exc}); install the "
                        "package or add its folder to PYTHONPATH") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise UserError(f"{mod_name!r} has no attribute {attr!r} (teacher module:{spec}); "
                            "name a function or class that builds the model") from exc
    if not callable(obj):
        raise UserError(f"{mod_name}:{attr} is not callable; name a function or class that "
                        "builds the model with no arguments")
    try:
        model = obj()
    except Exception as exc:  # noqa: BLE001 - user code; report it in one line
        raise UserError(f"{mod_name}:{attr}() failed ({type(exc).__name__}: {_first_line(exc)}); "
                        "the factory must build the model with no arguments") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"{mod_name}:{attr}() returned {type(model).__name__}, not a torch.nn.Module")
    if weights is None:
        warn(f"teacher module:{spec} has no weights file; using the factory's own initialization "
             f"(give one as module:{spec}=WEIGHTS)")
    else:
        sd = load_weights_file(weights)
        load_state_dict_checked(model, sd, source=str(weights), what=f"{mod_name}:{attr}()",
                                hint="check that the weights belong to this factory's model")
    return model, {}

"""Saving, loading and exporting students.

A student on disk is two files: `student.safetensors` (weights, no pickle) and `spec.json` (the
architecture as data). `load_student(path)` rebuilds it in one call from either file or the folder
holding them. ONNX export has dynamic height/width and is checked against PyTorch before it is kept.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..arch.build import build_student
from ..arch.spec import ArchSpec
from ..errors import UserError
from ..fileio import save_safetensors_atomic

WEIGHTS_NAME = "student.safetensors"
SPEC_NAME = "spec.json"


def save_student(model: torch.nn.Module, spec: ArchSpec, folder: str | os.PathLike) -> Path:
    """Write weights (safetensors, atomically) and the spec; returns the weights path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = save_safetensors_atomic(model.state_dict(), folder / WEIGHTS_NAME,
                                   {"format": "gancompress-student", "spec": spec.to_json()})
    spec.save(folder / SPEC_NAME)
    return path


def _resolve(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        for cand in (p / WEIGHTS_NAME, p / "student" / WEIGHTS_NAME):
            if cand.is_file():
                return cand, cand.parent / SPEC_NAME
        raise UserError(f"no {WEIGHTS_NAME} in {p}: is it a finished run directory? "
                        f"(run `gancompress compress ... --out {p}` to make one)")
    if p.suffix == ".json":
        return p.with_name(WEIGHTS_NAME), p
    if not p.is_file():
        raise UserError(f"student file {p} not found")
    return p, p.with_name(SPEC_NAME)


def load_student(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, ArchSpec]:
    """Load a student from a run directory (or a CompressResult), its student folder,
    `student.safetensors` or `spec.json`."""
    weights, spec_path = _resolve(getattr(path, "run_dir", path))
    if not weights.is_file():
        raise UserError(f"student weights {weights} not found next to {spec_path}")
    if spec_path.is_file():
        spec = ArchSpec.load(spec_path)
    else:  # the spec is also embedded in the safetensors metadata
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
        if "spec" not in meta:
            raise UserError(f"{weights} has no spec.json beside it and no embedded spec")
        spec = ArchSpec.from_json(meta["spec"])
    model = build_student(spec)
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types
        raise UserError(f"cannot read {weights}: {e}") from None
    check_state_fits(model, state, weights)
    model.load_state_dict(state)
    return model.to(device).eval(), spec


def check_state_fits(model: torch.nn.Module, state: dict, source) -> None:
    """A checkpoint that does not fit the architecture gets one line listing what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}" + (" ..." if len(unexpected) > 5 else ""))
        if shape:
            k = shape[0]
            parts.append(f"shape mismatch at {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise UserError(f"{source} does not fit the architecture: " + "; ".join(parts)
                        + " (was it saved for a different spec.json?)")


def io_names(model) -> tuple[str, str]:
    """ONNX input and output names: `lr` -> `sr` (super-resolution and translation students, as
    before), `labels` -> `image` for a label2image student (its input is the one-hot label map,
    N x classes x H x W float, H and W multiples of 32; output RGB in [0, 1])."""
    return ("labels", "image") if getattr(model, "label_nc", None) else ("lr", "sr")


def input_grid(model) -> int:
    """The multiple every input side must be (32 for a label2image student, else 1)."""
    return 32 if getattr(model, "label_nc", None) else 1


def example_input(model, hw, seed: int = 0) -> torch.Tensor:
    """A random input the model accepts: an RGB image, or a one-hot map of random blobs of
    `label_nc` classes (a realistic input: one class per pixel, regions bigger than a pixel)."""
    g = torch.Generator().manual_seed(seed)
    c = getattr(model, "label_nc", None)
    if not c:
        return torch.rand(1, int(getattr(model, "in_channels", 3)), *hw, generator=g)
    coarse = torch.randint(0, c, (1, 1, max(1, hw[0] // 8), max(1, hw[1] // 8)), generator=g).float()
    ids = torch.nn.functional.interpolate(coarse, size=tuple(hw), mode="nearest")[0, 0].long()
    return torch.nn.functional.one_hot(ids, c).permute(2, 0, 1)[None].float()


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, example_hw=(32, 32), opset: int = 17,
                atol: float = 1e-4) -> float:
    """Export with dynamic H, W; run it in ONNX Runtime at two sizes and compare with PyTorch.

    Returns the max absolute difference; raises if it exceeds `atol` or if either side gives a
    non-finite value (the file is then not written). The model is exported and checked in memory
    and written atomically only once it passed, so a failure never leaves a file behind.
    """
    import io

    import numpy as np
    import onnxruntime as ort

    from ..fileio import atomic_write_bytes

    path = Path(path)
    model = model.eval().cpu()
    name_in, name_out = io_names(model)
    grid = input_grid(model)
    if grid > 1:  # sizes the model accepts: multiples of its coarsest grid
        example_hw = (max(grid, example_hw[0] // grid * grid), max(grid, example_hw[1] // grid * grid))
    x = example_input(model, example_hw)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, input_names=[name_in], output_names=[name_out],
                          dynamic_axes={name_in: {0: "n", 2: "h", 3: "w"}, name_out: {0: "n", 2: "H", 3: "W"}},
                          opset_version=opset, dynamo=False)
    data = buf.getvalue()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    second = (example_hw[0] + 7, example_hw[1] + 13) if grid == 1 else (example_hw[0] + grid, example_hw[1] + 2 * grid)
    for hw in (example_hw, second):
        xi = example_input(model, hw, seed=hw[0])
        with torch.no_grad():
            ref = model(xi).numpy()
        got = sess.run(None, {name_in: xi.numpy()})[0]
        for who, out in (("PyTorch", ref), ("ONNX Runtime", got)):
            if not np.isfinite(out).all():
                raise UserError(f"the student gives non-finite values (NaN/inf) under {who} on a {hw[0]}x{hw[1]} "
                                f"input: its weights are broken (a diverged training); {path} was not written")
        worst = max(worst, float(np.abs(got - ref).max()))
    if not worst <= atol:
        raise UserError(f"ONNX export of the student differs from PyTorch by {worst:.2e} (> {atol}); "
                        f"{path} was not written (report this model's spec.json as a bug)")
    atomic_write_bytes(path, data)
    return worst


def onnx_runner(path: str | os.PathLike, threads: int | None = None):
    """A callable torch-tensor -> torch-tensor running the ONNX model on CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.detach().cpu().numpy()})[0])

    return run

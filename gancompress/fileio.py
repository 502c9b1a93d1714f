"""Atomic file writes: a temporary file in the same folder, then a rename, so an interrupt never
leaves half a file where a finished one is expected (checkpoints, specs, weights)."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_safetensors_atomic(tensors: dict, path, metadata: dict | None = None) -> Path:
    """Write CPU-contiguous copies of `tensors` as safetensors, readable by everyone (0644)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone(): safetensors refuses tensors that share storage
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(data, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # safetensors writes 0600; model files are meant to be shared
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path

"""Atomic, durable file writes: a temporary file in the same folder, fsync'ed, then a rename and an
fsync of the folder, so an interrupt (or a power cut) never leaves half a file where a finished
one is expected (checkpoints, specs, weights, images).

Every file the package writes goes through `atomic_writer`: a failed write removes its temporary
file and raises an `OSError` that names the final path (the CLI turns it into one `error:` line with
the fix, see `errors.os_error_message`). Temporary files are named `.NAME.tmpPID`; a process killed
with SIGKILL cannot remove its own, so `remove_stale_temp_files` clears them when a run directory
is opened again.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

TEMP_RE = re.compile(r"^\..+\.tmp\d+$")


def cache_root() -> Path:
    """Where gancompress keeps what it measures once and reuses across runs (Inception features of
    real images, latency tables): GANCOMPRESS_CACHE, else $XDG_CACHE_HOME/gancompress, else
    ~/.cache/gancompress."""
    base = os.environ.get("GANCOMPRESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gancompress")
    return Path(base)


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _open_tmp(tmp: Path):
    """Open the temporary file (one place, so tests can make the disk 'full' here)."""
    return open(tmp, "wb")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (best effort: some file systems refuse a dir fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _named(e: OSError, path: Path) -> OSError:
    """The same error, naming the file the user knows (not our temporary name)."""
    if e.errno is None:
        return e
    err = OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))
    return err


@contextlib.contextmanager
def atomic_writer(path, mode: int | None = None):
    """`with atomic_writer(p) as f: f.write(...)`: `p` appears complete or not at all."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = _open_tmp(tmp)
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise _named(e, path) from None
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    with atomic_writer(path, mode) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_safetensors_atomic(tensors: dict, path, metadata: dict | None = None) -> Path:
    """Write CPU-contiguous copies of `tensors` as safetensors, readable by everyone (0644)."""
    from safetensors.torch import save

    path = Path(path)
    # clone(): safetensors refuses tensors that share storage
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    # serialised in memory, written by atomic_writer: one write path, OS errors that name the file
    atomic_write_bytes(path, save(data, metadata=metadata), mode=0o644)  # model files are meant to be shared
    return path


def torch_save_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the `.NAME.tmpPID` files under `folder` that a killed process (or a full disk) left
    behind; returns them. Only call it while holding the folder's run lock (rundir.py): a live
    writer's temporary file would go too."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.rglob(".*.tmp*"):
        if TEMP_RE.match(p.name) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def load_run_tensors(path) -> dict:
    """A safetensors file the run wrote itself (targets, search weights): a damaged one (a disk
    error, a hand edit) is one UserError naming it, not a safetensors traceback."""
    from safetensors.torch import load_file

    from .errors import UserError

    try:
        return load_file(str(path))
    except OSError:
        raise
    except Exception as e:  # safetensors raises its own error types
        raise UserError(f"{path} is damaged ({type(e).__name__}: {e}); re-run the same command with --force to "
                        "redo the run from the start (or restore the file)") from None

"""Runs are directories: resolved config, per-stage outputs and a record of finished stages.

A re-run with the same config resumes (finished stages are skipped, an interrupted loop continues
from its last checkpoint); a re-run with a different config is refused unless `force`, which
clears the old stage files first. Nothing is overwritten silently.

A run that writes (`create=True`) holds an exclusive lock on RUN/.lock (`fcntl.flock`) until
`release_run_locks()` or until its process ends: the OS releases it even after `kill -9`, so a
stale lock file never blocks a resume, while a second live run on the same folder (a resume, or a
`--force` beside it) is refused with the PID that holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from .errors import UserError
from .fileio import atomic_write_text, remove_stale_temp_files

CONFIG = "config.json"
STATE = "stages.json"
LOCK = ".lock"

_held: dict[str, int] = {}  # run folder (resolved) -> fd of its lock file, held by this process


def _lock_holder(lock_file: Path) -> str:
    for _ in range(20):  # the holder writes its PID right after locking
        try:
            text = lock_file.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def lock_run(path: str | Path) -> None:
    """Take the run folder's exclusive lock for this process (a no-op when it already holds it)."""
    import fcntl

    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    lock_file = path / LOCK
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{path} is in use by another gancompress process (PID {_lock_holder(lock_file)}); "
                        "wait for it to finish (or stop it), or use another --out") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd


def release_run_locks(keep: set | frozenset = frozenset()) -> None:
    """Release every run lock this process holds, except those of the folders in `keep`."""
    for key in [k for k in _held if k not in keep]:
        fd = _held.pop(key)
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def run_locks_scope():
    """Release, on leaving, the run locks taken inside (those held before stay held)."""
    before = frozenset(_held)
    try:
        yield
    finally:
        release_run_locks(keep=before)


@contextlib.contextmanager
def locked_run(path: str | Path):
    """Hold the lock of an existing run folder for the duration (re-entrant within a process)."""
    with run_locks_scope():
        lock_run(path)
        yield


def _read_json(f: Path) -> dict:
    try:
        d = json.loads(f.read_text())
    except ValueError as e:
        raise UserError(f"{f} is damaged ({e}); delete it to start over there, or use another --out") from None
    if not isinstance(d, dict):
        raise UserError(f"{f} is damaged (not a JSON object); delete it to start over there, or use another --out")
    return d


class RunDir:
    def __init__(self, path: str | Path, config: dict, force: bool = False, create: bool = True):
        self.path = Path(path)
        self.config = config
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} exists and is not a folder; choose another path")
        if create:  # before looking at anything: a live run there is refused, naming its PID
            lock_run(self.path)
        cfg_file = self.path / CONFIG
        if cfg_file.is_file():
            old = _read_json(cfg_file)
            if not same_config(old, config):
                if not force:
                    diff = sorted(k for k in set(_comparable(old)) | set(_comparable(config))
                                  if _comparable(old).get(k) != _comparable(config).get(k))
                    raise UserError(
                        f"{self.path} holds a run made with a different config (differs in: "
                        f"{', '.join(diff[:6])}); use another --out, re-run with the same options to "
                        "resume, or add --force to start over there")
                if create:
                    self._clear()
        elif self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir()) and not force:
            raise UserError(f"{self.path} is not empty and is not a gancompress run; choose another --out "
                            "or add --force")
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
            for p in remove_stale_temp_files(self.path):
                if not config.get("quiet"):
                    from .log import info

                    info(f"removed {p}, left by an interrupted write")
            atomic_write_text(cfg_file, json.dumps(config, indent=1, sort_keys=True) + "\n")

    def _clear(self):
        for child in self.path.iterdir():
            if child.name == LOCK:
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    # ---- stages ---------------------------------------------------------------------------------
    def _state(self) -> dict:
        f = self.path / STATE
        return _read_json(f) if f.is_file() else {}

    def done(self, stage: str) -> bool:
        return stage in self._state()

    def mark(self, stage: str, info: dict | None = None) -> None:
        st = self._state()
        st[stage] = info or {}
        atomic_write_text(self.path / STATE, json.dumps(st, indent=1) + "\n")

    def stage_info(self, stage: str) -> dict:
        return self._state().get(stage, {})

    def close(self) -> None:
        """Release this run's lock (also released when the process ends)."""
        key = str(self.path.resolve())
        release_run_locks(keep=frozenset(k for k in _held if k != key))

    def __truediv__(self, name: str) -> Path:
        return self.path / name


# keys that do not change results: they may differ between a run and its resumption
_VOLATILE = {"quiet", "device", "threads", "force", "out"}


def read_run_config(run) -> dict:
    """A run directory's config.json ({} when there is none: a bare student folder)."""
    f = Path(run) / CONFIG
    return json.loads(f.read_text()) if f.is_file() else {}


def omit_defaults(d: dict, added: dict) -> dict:
    """The config-versioning rule, one for every config section: an option added after the first
    release (`added`: name -> its default) is written to config.json only when it differs from its
    default. A run directory written before the option existed ran with the default, so it still
    matches (same_config) and resumes."""
    for k, default in added.items():
        if k in d and d[k] == default:
            del d[k]
    return d


def same_config(a: dict, b: dict) -> bool:
    """Whether two run configs give the same results (device, quiet etc. may differ)."""
    return _comparable(json.loads(json.dumps(a))) == _comparable(json.loads(json.dumps(b)))


def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in _VOLATILE}

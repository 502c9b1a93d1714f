"""Runs are directories: resolved config, per-stage outputs and a record of finished stages.

A re-run with the same config resumes (finished stages are skipped, an interrupted loop continues
from its last checkpoint); a re-run with a different config is refused unless `force`, which
clears the old stage files first. Nothing is overwritten silently.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .arch.spec import atomic_write_text
from .errors import UserError

CONFIG = "config.json"
STATE = "stages.json"


class RunDir:
    def __init__(self, path: str | Path, config: dict, force: bool = False, create: bool = True):
        self.path = Path(path)
        self.config = config
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} exists and is not a folder; choose another path")
        cfg_file = self.path / CONFIG
        if cfg_file.is_file():
            old = json.loads(cfg_file.read_text())
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
        elif self.path.is_dir() and any(self.path.iterdir()) and not force:
            raise UserError(f"{self.path} is not empty and is not a gancompress run; choose another --out "
                            "or add --force")
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cfg_file, json.dumps(config, indent=1, sort_keys=True) + "\n")

    def _clear(self):
        for child in self.path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    # ---- stages ---------------------------------------------------------------------------------
    def _state(self) -> dict:
        f = self.path / STATE
        return json.loads(f.read_text()) if f.is_file() else {}

    def done(self, stage: str) -> bool:
        return stage in self._state()

    def mark(self, stage: str, info: dict | None = None) -> None:
        st = self._state()
        st[stage] = info or {}
        atomic_write_text(self.path / STATE, json.dumps(st, indent=1) + "\n")

    def stage_info(self, stage: str) -> dict:
        return self._state().get(stage, {})

    def __truediv__(self, name: str) -> Path:
        return self.path / name


# keys that do not change results: they may differ between a run and its resumption
_VOLATILE = {"quiet", "device", "threads", "force", "out"}


def same_config(a: dict, b: dict) -> bool:
    """Whether two run configs give the same results (device, quiet etc. may differ)."""
    return _comparable(json.loads(json.dumps(a))) == _comparable(json.loads(json.dumps(b)))


def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in _VOLATILE}

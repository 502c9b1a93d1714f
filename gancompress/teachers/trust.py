"""Which teacher files can run code when loaded, and the check that keeps them from doing so unasked.

The trust model (README, "Reliability"):
* zoo checkpoints (`.pth` read with weights_only=True, `.safetensors`) and ONNX models hold data
  only: they load without asking;
* TorchScript archives and `module:pkg.mod:factory` teachers are code by design (a TorchScript
  program runs its own ops, a module teacher imports Python): they load only with
  `--trust-teacher-code` (`trust_code=True` in Python);
* a `torch.export` program (.pt2) is data unless it carries pickled members: `torch.export.load`
  unpickles weights and constants marked `use_pickle`, unpickles custom and opaque objects,
  retries sample inputs with `weights_only=False` when the safe load fails, loads AOTInductor
  shared libraries, and falls back to an older format made of `torch.load` pickles. Before loading,
  `inspect_pt2` reads the archive and lists every such member; an archive with none is loaded from
  the very bytes that were inspected (no second read of the file), one with any is refused unless
  trusted.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import UserError

TRUST_FLAG = "--trust-teacher-code"
TRUST_HINT = (f"pass {TRUST_FLAG} (Python: trust_code=True) only if you trust where the file came "
              "from, or give the teacher as weights (a zoo KIND:PATH checkpoint) or as ONNX")

# members of a current (pt2 archive) torch.export file, relative to its top folder; anything else
# (AOTInductor libraries, the old pickled format, unknown folders) is reported as possibly code
_DATA_FILES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_DATA_DIRS = ("models/", "data/weights/", "data/constants/", "data/sample_inputs/", "extra/", ".data/")
_PICKLED_CONSTANT_PREFIXES = ("custom_obj_", "opaque_obj_")


def require_trust(kind: str, source: str, trust_code: bool) -> None:
    """Refuse a code-by-design teacher (TorchScript, module:) unless the user said they trust it."""
    if trust_code:
        return
    what = {"torchscript": "a TorchScript program: loading it runs the program's own code",
            "module": "Python code: loading it imports and runs that module"}[kind]
    raise UserError(f"teacher {kind}:{source} is {what}; {TRUST_HINT}")


def _pickled_members(z: zipfile.ZipFile) -> list[str]:
    names = z.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or not any(n.endswith("/archive_format") for n in names):
        return [f"{n} (not in the current .pt2 layout: the older format is read with torch.load)"
                for n in names if n.endswith(".pt")] or ["(archive layout: not a current torch.export .pt2)"]
    top = tops.pop() + "/"
    found = []
    for name in names:
        rel = name[len(top):]
        if rel.endswith("/") or rel in _DATA_FILES:
            continue
        if not rel.startswith(_DATA_DIRS):
            found.append(f"{name} (not a data member)")
        elif rel.startswith("data/sample_inputs/"):
            try:  # torch retries with weights_only=False when this fails: it must succeed here
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.load(io.BytesIO(z.read(name)), weights_only=True)
            except Exception:  # noqa: BLE001 - any failure means torch would unpickle it unsafely
                found.append(f"{name} (sample inputs that are not plain tensors)")
        elif rel.endswith("_config.json") and rel.startswith(("data/weights/", "data/constants/")):
            try:
                config = json.loads(z.read(name)).get("config", {})
            except (ValueError, AttributeError):
                found.append(f"{name} (unreadable payload config)")
                continue
            for key, meta in config.items():
                path = str(meta.get("path_name", ""))
                if meta.get("use_pickle") or path.startswith(_PICKLED_CONSTANT_PREFIXES):
                    found.append(f"{top}{rel.rsplit('/', 1)[0]}/{path} ({key}: pickled)")
    return found


def inspect_pt2(path: str | Path) -> tuple[bytes, list[str]]:
    """(the archive's bytes, its members that `torch.export.load` would unpickle or execute)."""
    data = Path(path).read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return data, _pickled_members(z)
    except zipfile.BadZipFile:
        raise UserError(f"{path} is not a torch.export program (.pt2 files are zip archives); save one "
                        "with torch.export.save(torch.export.export(model, (x,)), path)") from None


def load_pt2_checked(path: str | Path, trust_code: bool):
    """torch.export.load, after `inspect_pt2` found nothing that runs code (or the user trusts it)."""
    data, pickled = inspect_pt2(path)
    if pickled and not trust_code:
        shown = "; ".join(pickled[:3]) + (f"; ... ({len(pickled)} in all)" if len(pickled) > 3 else "")
        raise UserError(f"teacher {path} carries members that torch.export.load would unpickle or run as "
                        f"code ({shown}); re-save it with torch.export.save from a plain nn.Module, or "
                        f"{TRUST_HINT}")
    return torch.export.load(io.BytesIO(data))

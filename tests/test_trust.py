"""Teachers that would run code when loaded are refused unless the user trusts them (teachers/trust.py).

The crafted .pt2 archives below carry a pickle whose unpickling creates a marker file: each test
first shows that plain `torch.export.load` does create it (so the archive really is hostile), then
that gancompress refuses the file and the marker never appears."""

import io
import json
import pickle
import zipfile

import pytest
import torch
from torch import nn

from gancompress.cli import main
from gancompress.errors import UserError
from gancompress.teachers import load_teacher
from gancompress.teachers.trust import inspect_pt2


class _Marker:
    """Unpickling this object creates the file `path` (what an attacker's payload would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _clean_pt2(path):
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)).eval()
    dim = torch.export.Dim("h", min=4, max=512)
    ep = torch.export.export(model, (torch.rand(1, 3, 16, 16),), dynamic_shapes=({2: dim, 3: dim},))
    torch.export.save(ep, str(path))
    return model


def _rewrite(src, dst, change):
    """Copy the zip `src` to `dst`, passing each (name, bytes) through `change`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name, data = change(info.filename, zin.read(info.filename))
            zout.writestr(name, data)


def _evil_weight(src, dst, marker):
    """Weight 0 marked use_pickle and replaced by a payload (torch loads it with weights_only=False)."""
    payload = io.BytesIO()
    torch.save(_Marker(marker), payload)

    def change(name, data):
        if name.endswith("model_weights_config.json"):
            cfg = json.loads(data)
            first = next(iter(cfg["config"].values()))
            first["use_pickle"] = True
            return name, json.dumps(cfg).encode()
        if name.endswith("data/weights/weight_0"):
            return name, payload.getvalue()
        return name, data

    _rewrite(src, dst, change)


def _evil_sample_inputs(src, dst, marker):
    """Sample inputs that fail the safe load: torch retries them with weights_only=False."""
    def change(name, data):
        if "data/sample_inputs/" in name:
            return name, pickle.dumps(_Marker(marker))
        return name, data

    _rewrite(src, dst, change)


@pytest.mark.parametrize("craft", [_evil_weight, _evil_sample_inputs], ids=["pickled-weight", "sample-inputs"])
def test_hostile_pt2_is_refused_and_runs_nothing(tmp_path, craft, capsys):
    clean = tmp_path / "clean.pt2"
    _clean_pt2(clean)
    evil = tmp_path / "evil.pt2"
    craft(clean, evil, tmp_path / "proof")
    try:  # the archive is really hostile: torch's own loader runs the payload
        torch.export.load(str(evil))
    except Exception:  # noqa: BLE001 - the payload returns a file object, not a tensor
        pass
    assert (tmp_path / "proof").exists()

    craft(clean, evil, tmp_path / "marker")
    assert inspect_pt2(evil)[1], "the inspection must list the pickled member"
    with pytest.raises(UserError, match="--trust-teacher-code"):
        load_teacher(f"export:{evil}", scale=1)
    code = main(["profile", f"export:{evil}", "--scale", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "unpickle" in err and "--trust-teacher-code" in err and "Traceback" not in err
    assert not (tmp_path / "marker").exists()


def test_clean_pt2_loads_without_trust(tmp_path):
    path = tmp_path / "clean.pt2"
    model = _clean_pt2(path)
    assert inspect_pt2(path)[1] == []
    teacher = load_teacher(f"export:{path}", scale=1)
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(x))


def test_code_teachers_need_trust(tmp_path, capsys, monkeypatch):
    path = tmp_path / "t.ts"
    torch.jit.script(nn.Identity()).save(str(path))
    with pytest.raises(UserError, match="TorchScript program.*--trust-teacher-code"):
        load_teacher(f"torchscript:{path}", scale=1)
    assert load_teacher(f"torchscript:{path}", scale=1, trust_code=True).scale == 1
    (tmp_path / "gc_trust_mod.py").write_text("import torch\ndef build():\n    return torch.nn.Identity()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="Python code.*--trust-teacher-code"):
        load_teacher("module:gc_trust_mod:build", scale=1)
    code = main(["profile", f"torchscript:{path}", "--scale", "1", "--size", "16", "--repeats", "1"])
    assert code == 2 and "--trust-teacher-code" in capsys.readouterr().err
    code = main(["profile", f"torchscript:{path}", "--scale", "1", "--size", "16", "--repeats", "1",
                 "--trust-teacher-code"])
    assert code == 0

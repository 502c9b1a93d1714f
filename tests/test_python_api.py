"""The Python API as a user holding objects would use it: an nn.Module teacher, images in memory,
a CompressResult back, resume by fingerprint."""

import json

import pytest
import torch
from torch import nn

TINY = dict(nf=8, cells=2, layers=2, search_patch=8, search_batch=2, warmup_steps=3, search_steps=6,
            retrain_steps=10, patch=8, batch=2, budget="1/4", latency_size=32, latency_repeats=1, quiet=True,
            init_steps=3)


class TinyUpscaler(nn.Module):
    """A user's own x4 SR generator class (not a zoo layout): conv -> pixel shuffle."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(64, 48, 3, padding=1), nn.PixelShuffle(4))

    def forward(self, x):
        return self.body(x) + nn.functional.interpolate(x, scale_factor=4, mode="bilinear")


@pytest.fixture(scope="module")
def photos():
    from gancompress.data.bundled import bundled_photographs, bundled_tiny

    train = [im for _, im in bundled_tiny(2, 96)]  # float (3, H, W) in [0, 1]
    ev = [(name, (im[:, :96, :96] * 255).round().to(torch.uint8)) for name, im in bundled_photographs("eval")[:2]]
    return train, ev


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCOMPRESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_module_teacher_and_images_in_memory_end_to_end(tmp_path, cache, photos):
    from gancompress import CompressResult, compress, load_student, profile

    torch.manual_seed(0)
    teacher = TinyUpscaler()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    train, ev = photos
    res = compress(teacher=teacher, train_data=train, eval_data=ev, out=str(tmp_path / "run"), **TINY)
    assert isinstance(res, CompressResult) and res.run_dir == tmp_path / "run"
    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["teacher"].startswith("python:")  # named by its fingerprint
    assert cfg["train_data"].startswith(str(cache))  # the images, written once as PNGs
    assert res["images"] == 2 and res["student_macs"] < res["teacher_macs"]
    x = torch.rand(1, 3, 12, 12)
    assert res.student(x).shape == (1, 3, 48, 48)
    student, spec = load_student(res)
    assert spec.to_json() == res.spec.to_json()
    # the user's module is not frozen or changed by being a teacher
    assert all(p.requires_grad for p in teacher.parameters()) and teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    p = profile(teacher, size=16, repeats=1)
    assert p["macs"] > 0 and p["params"] == sum(q.numel() for q in teacher.parameters())
    assert teacher.training  # profiled on a copy


def test_module_teacher_run_resumes_and_refuses_another_module(tmp_path, cache, photos, monkeypatch):
    from gancompress import compress, evaluate_run
    from gancompress.errors import UserError
    from gancompress.teachers import in_memory

    torch.manual_seed(0)
    teacher = TinyUpscaler()
    train, ev = photos
    out = str(tmp_path / "run")
    kw = dict(train_data=train, eval_data=ev, out=out, **TINY)
    import gancompress.pipeline as pipeline

    real = pipeline.retrain_stage

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "retrain_stage", killed)
    with pytest.raises(KeyboardInterrupt):
        compress(teacher=teacher, **kw)
    monkeypatch.setattr(pipeline, "retrain_stage", real)
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert "search" in stages and "retrain" not in stages
    in_memory._REGISTRY.clear()  # as a new process: the same module is handed over again
    same = TinyUpscaler()
    same.load_state_dict(teacher.state_dict())
    spec_file = tmp_path / "run" / "search" / "spec.json"
    searched = spec_file.stat().st_mtime_ns
    res = compress(teacher=same, **kw)  # resumes: the search is not run again
    assert res["images"] == 2 and spec_file.stat().st_mtime_ns == searched
    other = TinyUpscaler()  # other weights: another fingerprint, a different config
    with pytest.raises(UserError, match="different config"):
        compress(teacher=other, **kw)
    # a new process without the module: a one-line error saying how to give it
    in_memory._REGISTRY.clear()
    with pytest.raises(UserError, match="pass the same module again"):
        evaluate_run(out, ev)
    r = evaluate_run(out, ev, teacher=same)
    assert r["images"] == 2 and r["psnr_to_teacher"] == pytest.approx(res["psnr_to_teacher"], abs=1e-6)
    from gancompress import evaluate_student

    r2 = evaluate_student(res.student, same, ev)  # any student module against any teacher module, outside a run
    assert r2["psnr_to_teacher"] == pytest.approx(r["psnr_to_teacher"], abs=1e-6)


def test_keyword_options_are_the_cli_names(tmp_path):
    from gancompress.cli_options import config_from_options
    from gancompress.errors import UserError

    cfg = config_from_options(retrain_steps=7, method="slim", budget="1/5", widths=(0.5, 1.0), out="x")
    with pytest.raises(UserError, match="give out="):
        config_from_options(budget="1/5")
    assert cfg.retrain.steps == 7 and cfg.method == "slim" and cfg.search.width_ratios == (0.5, 1.0)
    with pytest.raises(UserError, match="did you mean retrain_steps"):
        config_from_options(retrain_step=7, out="x")


@pytest.mark.parametrize("bad, match", [
    ([torch.rand(3, 8, 8) * 2], "float images must be in"),
    ([torch.rand(4, 8, 8)], "1 or 3 channels"),
    ([torch.zeros(3, 8, 8, dtype=torch.int32)], "dtype"),
    (["not an image"], "give a tensor"),
    ([], "empty"),
    (5, "iterable of images"),
])
def test_bad_images_in_memory_are_one_line_errors(cache, bad, match):
    from gancompress.data.in_memory import images_to_folder
    from gancompress.errors import UserError

    with pytest.raises(UserError, match=match):
        images_to_folder(bad)


def test_images_in_memory_fingerprint_folder(cache):
    import numpy as np
    from PIL import Image

    from gancompress.data.images import load_folder
    from gancompress.data.in_memory import images_to_folder

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 10, 12, generator=g)
    hwc = (np.random.default_rng(0).random((9, 7, 3)) * 255).astype(np.uint8)
    items = [a, hwc, Image.fromarray(hwc), ("named.jpg", a), (a, 3)]  # (image, label) as from a Dataset
    f1 = images_to_folder(items)
    assert images_to_folder(items) == f1  # same pixels, same folder
    assert images_to_folder([a * 0.5]) != f1
    loaded = dict(load_folder(f1))
    assert sorted(loaded) == ["00000.png", "00001.png", "00002.png", "00004.png", "named.png"]
    assert torch.allclose(loaded["00000.png"], a, atol=0.5 / 255 + 1e-6)  # rounded to 8 bits, no more
    assert torch.equal((loaded["00001.png"] * 255).round().to(torch.uint8), torch.from_numpy(hwc).permute(2, 0, 1))

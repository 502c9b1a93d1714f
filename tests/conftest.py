"""Shared fixtures: a tiny teacher and tiny image folders made from the bundled photographs."""

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _default_log_level():
    """Every test starts at the library's INFO level: a CLI call with -q earlier in the session sets
    the "gancompress" logger to WARNING for the whole process, which hid later tests' messages."""
    from gancompress.log import set_verbosity

    set_verbosity()
    yield


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> str:
    """A small randomly initialised ESRGAN-layout x4 teacher, saved like a user's checkpoint."""
    from gancompress.teachers import RRDBNet, save_zoo_teacher

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "rrdb_tiny.safetensors"
    save_zoo_teacher(RRDBNet(nf=8, nb=1, gc=4, scale=4), path)
    return f"esrgan:{path}"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[str, str]:
    """(train folder, eval folder): two 96 px bundled training crops; two held-out eval crops."""
    from gancompress.data.bundled import bundled_photographs, bundled_tiny
    from gancompress.data.images import save_image

    root = tmp_path_factory.mktemp("data")
    for name, im in bundled_tiny(2, 96):
        save_image(im, root / "train" / f"{name}.png")
    for name, im in bundled_photographs("eval")[:2]:
        h, w = im.shape[-2:]
        save_image(im[:, h // 2 - 48:h // 2 + 48, w // 2 - 48:w // 2 + 48], root / "eval" / f"{name}.png")
    return str(root / "train"), str(root / "eval")


def tiny_config(teacher, train, evald, out, **kw):
    from gancompress.config import CompressConfig
    from gancompress.distill.train import TrainConfig
    from gancompress.methods.space import SpaceConfig

    search = SpaceConfig(nf=8, n_cells=2, n_layers=2, patch=8, batch=2, warmup_steps=3, search_steps=6,
                             eval_every=2)
    retrain = TrainConfig(steps=10, patch=8, batch=2)
    args = dict(teacher=teacher, train_data=train, eval_data=evald, budget="1/4", search=search,
                retrain=retrain, out=str(out), latency_size=32, latency_repeats=1, quiet=True, init_steps=5)
    args.update(kw)
    return CompressConfig(**args)


def interrupted_fit(tmp_path, stop_at_batch: int):
    """A tiny SR fit run whole (`model_a`) and the same fit stopped by KeyboardInterrupt at batch
    `stop_at_batch` (checkpoint `tmp_path/b.ckpt`); `fresh()` makes the objects a new process would
    build to resume it. For the resume tests."""
    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_sr_spec
    from gancompress.data.patches import PatchSampler
    from gancompress.distill.train import TrainConfig, fit_pixels

    torch.manual_seed(0)
    pairs = [(torch.rand(3, 16, 16), torch.rand(3, 64, 64)), (torch.rand(3, 20, 16), torch.rand(3, 80, 64))]
    cfg = TrainConfig(steps=120, patch=8, batch=2)

    def fresh():
        torch.manual_seed(1)
        return build_student(uniform_sr_spec(4, 4, 1, 2)), PatchSampler(pairs, 8, 4, 2, seed=3)

    model_a, sampler_a = fresh()
    fit_pixels(model_a, sampler_a, cfg, tmp_path / "a.ckpt", "a", quiet=True)
    model_b, sampler_b = fresh()
    real, calls = sampler_b.next_batch, {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == stop_at_batch:
            raise KeyboardInterrupt
        return real()

    sampler_b.next_batch = flaky
    try:
        fit_pixels(model_b, sampler_b, cfg, tmp_path / "b.ckpt", "b", quiet=True)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the fit was not interrupted")
    return model_a, fresh, cfg

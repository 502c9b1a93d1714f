"""`--init wide` (methods/wide_start.py): a derived network's retrain starts from the strongest
filters of its distilled wide twin."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_config
from gancompress.arch.build import build_student
from gancompress.arch.spec import ArchSpec, LayerSpec
from gancompress.config import CompressConfig, validate_options
from gancompress.errors import UserError
from gancompress.methods.space import SpaceConfig, frame_template
from gancompress.methods.wide_start import strongest, wide_space, wide_start


def _spec(cells, nf=8):
    t = frame_template(SpaceConfig(nf=nf, n_cells=len(cells), n_layers=len(cells[0])), "sr", 4)
    return replace(t, nf=nf, cells=[[LayerSpec(op, w) for op, w in cell] for cell in cells]).validate()


def _cfg(**kw):
    return CompressConfig(search=SpaceConfig(nf=8, n_cells=2, n_layers=3), init="wide", init_steps=0, quiet=True, **kw)


def test_strongest_keeps_each_positions_top_scores_in_their_order():
    scores = [torch.tensor([0.1, 0.9, 0.5, 0.7]), torch.tensor([0.3, 0.2]), torch.empty(0)]
    kept = strongest(scores, [2, 1, 3], prunable=[0, 1], widest=(4, 2, 5))
    assert kept[0].tolist() == [1, 3] and kept[1].tolist() == [0]
    assert kept[2].tolist() == [0, 1, 2]  # a position never cut keeps its leading channels


def test_the_start_is_the_twins_strongest_filters_at_the_derived_widths():
    spec = _spec([[("conv3x3", 3), ("resblock", 5), ("conv3x3", 8)], [("conv3x3@int8", 6), ("conv1x1", 2),
                                                                        ("resblock", 8)]])
    cfg = _cfg()
    state = wide_start(SimpleNamespace(cfg=cfg, log=lambda m: None), spec)
    student = build_student(spec)
    student.load_state_dict(state)  # strict: the derived layout exactly, int8 twin included

    from gancompress.methods.channels import GatedStudent

    torch.manual_seed(cfg.seed)  # the twin wide_start cut (no distillation steps)
    twin = GatedStudent(wide_space(cfg, spec))
    assert twin.space.max_config() == (8, 8, 8, 8, 8)
    name = next(n for n, m in student.named_modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 3)
    w = dict(twin.net.named_modules())[name].weight  # cell0.layer0 has one writer; it reads nf (widest: all kept)
    top = torch.sort(torch.topk(w.abs().mean(dim=(1, 2, 3)), 3).indices).values
    assert torch.equal(dict(student.named_modules())[name].weight, w[top])


def test_refusals_name_the_layer_or_the_method():
    with pytest.raises(UserError, match=r"cell1\.layer0 \(sep3x3"):
        wide_space(_cfg(), _spec([[("conv3x3", 4), ("conv3x3", 8)], [("sep3x3", 4), ("conv3x3", 8)]]))
    with pytest.raises(UserError, match="wider than the space at cell0.layer0"):
        wide_space(_cfg(), _spec([[("conv3x3", 12), ("conv3x3", 8)]]))
    for method in ("prune", "slim"):
        with pytest.raises(UserError, match=f"does not apply to --method {method}"):
            validate_options(_cfg(method=method))
    validate_options(_cfg(method="agd"))


def test_the_default_start_is_wide_for_agd_on_sr_only():
    assert CompressConfig().init == "wide" and CompressConfig(method="agd", task="sr").init == "wide"
    assert CompressConfig(method="uniform").init == "supernet" and CompressConfig(task="translate").init == "supernet"
    assert CompressConfig(search=SpaceConfig(ops=("conv3x3", "irb"))).init == "supernet"  # irb cannot be cut
    assert CompressConfig(init="supernet").init == "supernet"
    # the twin's steps are written only where they matter: other runs made before the option still resume
    assert "init_steps" not in CompressConfig(method="uniform").to_dict()
    assert CompressConfig().to_dict()["init"] == "wide" and "init_steps" not in CompressConfig().to_dict()
    assert CompressConfig(init_steps=40).to_dict()["init_steps"] == 40


def test_uniform_with_a_wide_start_end_to_end(tiny_teacher, tiny_data, tmp_path):
    from gancompress.api import compress

    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", method="uniform", init="wide", init_steps=4)
    cfg.search.nf = 12  # the space's widest, wider than the uniform network at 1/4 (width 9)
    m = compress(cfg)
    run = tmp_path / "run"
    assert m["within_budget"] and (run / "search" / "wide_train.ckpt").is_file()
    saved = json.loads((run / "config.json").read_text())
    assert saved["init"] == "wide" and saved["init_steps"] == 4
    assert ArchSpec.load(run / "search" / "spec.json").nf < 12  # the twin (nf 12) was wider: channels were cut

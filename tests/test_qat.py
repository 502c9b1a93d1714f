"""Quantization-aware retraining (`--qat`): the convs the int8 export quantizes train on the int8
grid, the rest stay float, and the run ends with its int8 export."""

import json

import pytest
import torch
from torch import nn

from conftest import tiny_config
from gancompress.arch.build import build_student
from gancompress.arch.spec import uniform_sr_spec, uniform_translate_spec
from gancompress.errors import UserError
from gancompress.quant.fake import INT8_WEIGHT_QMAX, enable_export_qat, enable_fake_quant, strip_fake_quant


def _on_int8_grid(w: torch.Tensor, axis: int = 0) -> bool:
    """Every output channel is an integer multiple of max|w| / 64 (the int8 export's per-channel weight grid)."""
    dims = [d for d in range(w.dim()) if d != axis]
    scale = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / INT8_WEIGHT_QMAX
    q = w / scale
    return bool((q - q.round()).abs().max() < 1e-3)


def test_sr_qat_quantizes_every_conv_but_the_bicubic_skip():
    net = build_student(uniform_sr_spec(4, 8, 2, 2))
    names = enable_export_qat(net, "sr")
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert names and "upsampler" in " ".join(names) and not any(n.startswith("skip") for n in names)
    assert set(names) == {n for n in convs if not n.startswith("skip")}
    assert enable_fake_quant(net, 8) == [n for n in convs if n.startswith("skip")]  # a quantized conv stays once
    net(torch.rand(1, 3, 8, 8))  # ranges seen in training mode
    strip_fake_quant(net)
    mods = dict(net.named_modules())
    assert all(_on_int8_grid(mods[n].weight.detach()) for n in names)


def test_translate_qat_keeps_the_output_conv_and_transposed_convs_float():
    net = build_student(uniform_translate_spec(8, 2, 2))
    names = enable_export_qat(net, "translate")
    mods = dict(net.named_modules())
    transposed = [n for n, m in mods.items() if isinstance(m, nn.ConvTranspose2d)]
    assert transposed and names == [n for n, m in mods.items() if isinstance(m, nn.Conv2d)
                                    and not isinstance(m, nn.ConvTranspose2d) and n != "out"]


def test_a_qat_run_trains_on_the_int8_grid_and_ends_with_its_int8_export(tiny_teacher, tiny_data, tmp_path):
    from gancompress.api import compress
    from gancompress.export.student import load_student

    out = tmp_path / "run"
    cfg = tiny_config(tiny_teacher, *tiny_data, out)
    cfg.retrain.qat = True
    m = compress(cfg)
    assert json.loads((out / "config.json").read_text())["retrain"]["qat"] is True
    q = json.loads((out / "int8.json").read_text())
    assert m["int8"]["int8_vs_fp32"] == q["int8_vs_fp32"] and (out / "student" / "student_int8.onnx").is_file()
    model, spec = load_student(out)
    convs = {n: mod for n, mod in model.named_modules() if isinstance(mod, nn.Conv2d)}
    assert all(_on_int8_grid(c.weight.detach()) for n, c in convs.items() if not n.startswith("skip"))
    # the trained convs are not on the grid by chance: a freshly built student's are not
    assert not _on_int8_grid(next(c for n, c in build_student(spec).named_modules()
                                  if isinstance(c, nn.Conv2d) and n.startswith("cells")).weight.detach())


def test_qat_options_from_the_cli_and_the_api(tmp_path):
    from gancompress.cli_options import config_from_options

    assert config_from_options(out=str(tmp_path / "a"), qat=True).retrain.qat
    assert not config_from_options(out=str(tmp_path / "b")).retrain.qat


def test_qat_refuses_label2image_with_the_way_out(tmp_path):
    from gancompress.cli_options import config_from_options
    from gancompress.config import validate_options

    cfg = config_from_options(out=str(tmp_path / "a"), task="label2image", qat=True)
    with pytest.raises(UserError, match="export RUN --int8"):
        validate_options(cfg)


def test_qat_and_the_precision_search_are_one_or_the_other(tmp_path):
    from gancompress.cli_options import config_from_options
    from gancompress.config import validate_options

    cfg = config_from_options(out=str(tmp_path / "a"), qat=True, search_int8=True)
    with pytest.raises(UserError, match="use one of them"):
        validate_options(cfg)

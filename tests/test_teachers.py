"""Teachers: zoo architectures, hyper-parameter inference, black-box loaders and their errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from gancompress.errors import UserError
from gancompress.teachers import (
    DEMO_TEACHER,
    RRDBNet,
    SRGAN,
    SRResNet,
    ZOO,
    Teacher,
    load_teacher,
    save_zoo_teacher,
)
from gancompress.teachers.zoo import basicsr_key_to_esrgan, esrgan_key_to_basicsr

SHARED = Path(__file__).resolve().parents[2] / "shared"
X = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial statistics so a dropped buffer would change the output."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _tiny(kind: str, scale: int = 4) -> nn.Module:
    torch.manual_seed(0)
    if kind == "srgan":
        return _randomize_bn(SRGAN(scale=scale, nf=8, n_blocks=2))
    if kind == "esrgan":
        return RRDBNet(nf=8, nb=1, gc=4, scale=scale).eval()
    return SRResNet(nf=8, nb=2, scale=scale).eval()


# ----------------------------------------------------------------------------- zoo shapes
@pytest.mark.parametrize("kind", ["srgan", "esrgan", "srresnet"])
@pytest.mark.parametrize("scale", [2, 4])
def test_zoo_output_shape(kind, scale):
    with torch.no_grad():
        y = _tiny(kind, scale)(X)
    assert y.shape == (1, 3, 12 * scale, 12 * scale)


def test_rrdbnet_x4_shape_and_srresnet_x3():
    with torch.no_grad():
        assert RRDBNet(nf=8, nb=1, gc=4)(X).shape == (1, 3, 48, 48)
        assert SRResNet(nf=8, nb=1, scale=3)(X).shape == (1, 3, 36, 36)
        # BasicSR's x2 layout: pixel-unshuffled input, two upsampling stages.
        assert RRDBNet(nf=8, nb=1, gc=4, scale=2, unshuffle=2)(X).shape == (1, 3, 24, 24)


def test_srgan_output_in_unit_range_and_layer_names():
    model = _tiny("srgan")
    with torch.no_grad():
        y = model(X)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    names = dict(model.named_modules())
    for layer in model.feature_layers().values():
        assert layer in names
    std = SRGAN(scale=4)
    for layer in ZOO["srgan"].layer_names.values():
        assert layer in dict(std.named_modules())


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["srgan", "esrgan", "srresnet"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_zoo_round_trip_infers_hyper_parameters(tmp_path, kind, scale, suffix):
    model = _tiny(kind, scale)
    path = tmp_path / f"teacher{suffix}"
    if suffix == ".safetensors":
        save_zoo_teacher(model, path)
    else:
        torch.save(model.state_dict(), path)
    teacher = load_teacher(f"{kind}:{path}")
    assert teacher.scale == scale and teacher.kind == kind
    assert teacher.info["nf"] == 8
    assert teacher.info["nb"] == (1 if kind == "esrgan" else 2)
    if kind == "esrgan":
        assert teacher.info["gc"] == 4
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher.num_params() == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(teacher(X), model(X), rtol=0, atol=1e-6)


def test_rrdbnet_unshuffle_variant_round_trip(tmp_path):
    torch.manual_seed(0)
    model = RRDBNet(nf=8, nb=1, gc=4, scale=2, unshuffle=2).eval()
    path = save_zoo_teacher(model, tmp_path / "x2.safetensors")
    teacher = load_teacher(f"esrgan:{path}")
    assert teacher.scale == 2 and teacher.info["unshuffle"] == 2
    with torch.no_grad():
        torch.testing.assert_close(teacher(X), model(X), rtol=0, atol=1e-6)


def test_containers_and_module_prefix_are_unwrapped(tmp_path):
    model = _tiny("srresnet", 2)
    wrapped = {"params_ema": {f"module.{k}": v for k, v in model.state_dict().items()},
               "params": {"junk": torch.zeros(1)}, "iter": 5}
    torch.save(wrapped, tmp_path / "net_g.pth")
    teacher = load_teacher(f"srresnet:{tmp_path / 'net_g.pth'}")
    with torch.no_grad():
        torch.testing.assert_close(teacher(X), model(X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("wrapped_convs", [False, True])
def test_esrgan_original_key_names_round_trip(tmp_path, wrapped_convs):
    model = _tiny("esrgan", 4)
    sd = model.state_dict()
    original = {basicsr_key_to_esrgan(k, wrapped_convs): v for k, v in sd.items()}
    assert "trunk_conv.weight" in original and "HRconv.weight" in original
    assert "upconv2.weight" in original
    rdb_key = "RRDB_trunk.0.RDB2.conv3" + (".0" if wrapped_convs else "") + ".weight"
    assert rdb_key in original
    assert {esrgan_key_to_basicsr(k) for k in original} == set(sd)
    torch.save(original, tmp_path / "RRDB_ESRGAN_x4.pth")
    teacher = load_teacher(f"esrgan:{tmp_path / 'RRDB_ESRGAN_x4.pth'}")
    assert teacher.scale == 4 and teacher.info["layout"] == "esrgan-original"
    with torch.no_grad():
        torch.testing.assert_close(teacher(X), model(X), rtol=0, atol=1e-6)


def test_esrgan_old_arch_names_load(tmp_path):
    model = _tiny("esrgan", 4)  # nb=1: the trunk conv is model.1.sub.1
    positions = {"conv_first": "model.0", "conv_body": "model.1.sub.1", "conv_up1": "model.3",
                 "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    old = {}
    for k, v in model.state_dict().items():
        layer, param = k.rsplit(".", 1)
        if layer.startswith("body."):
            _, i, rdb, conv = layer.split(".")
            old[f"model.1.sub.{i}.RDB{rdb[-1]}.{conv}.0.{param}"] = v
        else:
            old[f"{positions[layer]}.{param}"] = v
    torch.save(old, tmp_path / "old.pth")
    teacher = load_teacher(f"esrgan:{tmp_path / 'old.pth'}")
    with torch.no_grad():
        torch.testing.assert_close(teacher(X), model(X), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- shared SRGAN
@pytest.mark.parametrize("scale", [4, 2])
def test_shared_srgan_checkpoint(scale):
    path = SHARED / "teachers" / f"srgan_x{scale}.pth"
    if not path.is_file():
        pytest.skip(f"shared SRGAN teacher not available at {path} (only in the dev checkout)")
    teacher = load_teacher(f"srgan:{path}")
    assert teacher.scale == scale and teacher.info["nb"] == 5 and teacher.info["nf"] == 64
    if scale == 4:
        assert abs(teacher.num_params() - 0.734e6) / 0.734e6 < 0.01
    y = teacher.predict(X)
    assert y.shape == (1, 3, 12 * scale, 12 * scale)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


# ----------------------------------------------------------------------------- black boxes
class _TinySR(nn.Module):
    """conv -> PixelShuffle(2): the smallest thing that upscales."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.conv(x))


def _tiny_sr() -> nn.Module:
    torch.manual_seed(0)
    return _TinySR().eval()


def _assert_same(teacher: Teacher, model: nn.Module, x=X):
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(x), rtol=0, atol=1e-5)


def test_torchscript_round_trip_and_scale_probe(tmp_path):
    model = _tiny_sr()
    path = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(model, X), str(path))
    teacher = load_teacher(f"torchscript:{path}", scale=2, trust_code=True)
    assert teacher.kind == "torchscript" and teacher.scale == 2 and teacher.differentiable
    _assert_same(teacher, model)
    bare = load_teacher(str(path), trust_code=True)  # kind from the extension, scale from a probe
    assert bare.scale == 2 and bare.scale_inferred and "inferred" in bare.kind
    _assert_same(bare, model, torch.rand(1, 3, 9, 7))


def test_export_pt2_round_trip(tmp_path):
    model = _tiny_sr()
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(model, (X,)), str(path))
    teacher = load_teacher(f"export:{path}")  # static 12x12 program: probe uses its example shape
    assert teacher.scale == 2
    _assert_same(teacher, model)
    teacher.train()  # exported modules refuse .train(); Teacher must stay frozen regardless
    assert not teacher.training


def test_onnx_round_trip(tmp_path):
    model = _tiny_sr()
    path = tmp_path / "tiny.onnx"
    kwargs = dict(input_names=["lr"], output_names=["sr"],
                  dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "H", 3: "W"}})
    try:
        torch.onnx.export(model, (X,), str(path), dynamo=False, **kwargs)
    except TypeError:  # torch without the `dynamo` switch
        torch.onnx.export(model, (X,), str(path), **kwargs)
    teacher = load_teacher(str(path))
    assert teacher.scale == 2 and not teacher.differentiable and teacher.num_params() is None
    _assert_same(teacher, model)
    _assert_same(teacher, model, torch.rand(2, 3, 5, 9))
    assert not teacher(X.clone().requires_grad_()).requires_grad


def test_module_factory_round_trip(tmp_path, monkeypatch):
    (tmp_path / "gc_tiny_teacher_mod.py").write_text(textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    weights = tmp_path / "w.pth"
    torch.save(model.state_dict(), weights)
    teacher = load_teacher(f"module:gc_tiny_teacher_mod:build={weights}", scale=2, trust_code=True)
    _assert_same(teacher, model)
    teacher = load_teacher("module:gc_tiny_teacher_mod:build", weights=str(weights), trust_code=True)
    assert teacher.scale == 2
    _assert_same(teacher, model)
    save_zoo_teacher(model, tmp_path / "w.safetensors")
    _assert_same(load_teacher(f"module:gc_tiny_teacher_mod:build={tmp_path / 'w.safetensors'}",
                              trust_code=True),
                 model)


def test_value_range_mapping_and_predict_clamps(tmp_path):
    class Signed(nn.Module):  # a [-1, 1] model that doubles its input
        def forward(self, x):
            assert float(x.min()) >= -1.0
            return x * 2.0

    path = tmp_path / "signed.ts"
    torch.jit.save(torch.jit.script(Signed()), str(path))
    teacher = load_teacher(f"torchscript:{path}", scale=1, value_range=(-1, 1), trust_code=True)
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    # [0,1] -> [-1,1]: -1, -0.5, 0, 1; doubled: -2, -1, 0, 2; back to [0,1]: -0.5, 0, 0.5, 1.5
    expected = torch.tensor([-0.5, 0.0, 0.5, 1.5]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    torch.testing.assert_close(teacher(x), expected)
    torch.testing.assert_close(teacher.predict(x), expected.clamp(0, 1))


# ----------------------------------------------------------------------------- errors
def test_unknown_kind():
    with pytest.raises(UserError, match="unknown teacher kind 'stylegan'.*known kinds: srgan"):
        load_teacher("stylegan:/nowhere.pth")


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError, match="not found.*nope.pth"):
        load_teacher(f"esrgan:{missing}")
    with pytest.raises(UserError, match="not found.*nope.onnx"):
        load_teacher(str(tmp_path / "nope.onnx"))


def test_bare_path_with_unknown_extension(tmp_path):
    path = tmp_path / "g.pth"
    torch.save(_tiny("esrgan").state_dict(), path)
    with pytest.raises(UserError, match="cannot tell the teacher kind.*KIND:PATH.*esrgan"):
        load_teacher(str(path))


def test_mismatched_state_dict_lists_keys(tmp_path):
    path = tmp_path / "srgan_weights.pth"
    torch.save(_tiny("srgan").state_dict(), path)
    with pytest.raises(UserError) as err:
        load_teacher(f"esrgan:{path}")
    msg = str(err.value)
    assert "srgan_weights.pth" in msg and "missing keys [conv_first.weight" in msg
    assert "unexpected keys [block1.0.weight" in msg


def test_zoo_scale_disagreement(tmp_path):
    path = save_zoo_teacher(_tiny("srresnet", 2), tmp_path / "x2.safetensors")
    with pytest.raises(UserError, match="x2 srresnet model but scale 4"):
        load_teacher(f"srresnet:{path}", scale=4)


def test_pickled_model_is_refused(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(_TinySR(), path)  # a pickled object, not a state dict
    with pytest.raises(UserError, match=r"not a plain tensor checkpoint.*state_dict\(\)"):
        load_teacher(f"srresnet:{path}")


def test_demo_teacher_missing_message():
    if DEMO_TEACHER.is_file():
        teacher = load_teacher("demo")
        assert teacher.kind == "esrgan" and teacher.scale == 4
    else:
        with pytest.raises(UserError, match="bundled demo teacher missing.*train-teacher --task sr"):
            load_teacher("demo")


def test_shape_mismatch_is_reported(tmp_path):
    sd = _tiny("srresnet", 2).state_dict()
    sd["conv_hr.weight"] = torch.zeros(8, 8, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(UserError, match=r"bad.pth does not fit.*shape mismatches.*conv_hr.weight"):
        load_teacher(f"srresnet:{tmp_path / 'bad.pth'}")


def test_kind_without_path_and_weights_misuse(tmp_path):
    with pytest.raises(UserError, match="names a kind but no file; write it as esrgan:PATH"):
        load_teacher("esrgan")
    path = save_zoo_teacher(_tiny("srresnet", 2), tmp_path / "x2.safetensors")
    with pytest.raises(UserError, match="only used with module:"):
        load_teacher(f"srresnet:{path}", weights=str(path))


def test_onnx_fixed_shape_error(tmp_path):
    model = _tiny_sr()
    path = tmp_path / "fixed.onnx"
    try:
        torch.onnx.export(model, (X,), str(path), dynamo=False)
    except TypeError:
        torch.onnx.export(model, (X,), str(path))
    teacher = load_teacher(f"onnx:{path}")  # probe uses the pinned 12x12 shape
    assert teacher.scale == 2
    with pytest.raises(UserError, match=r"fixed.onnx takes input shape \[1, 3, 12, 12\].*dynamic"):
        teacher(torch.rand(1, 3, 8, 8))

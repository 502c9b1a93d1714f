"""GAN Compression (`--method ofa`): dynamic layers, config strings, supernet extraction, feature
mapping, evolutionary search (budget, determinism, resume) and the method end to end."""

import json
import random

import pytest
import torch
from torch import nn

from conftest import tiny_config
from gancompress.arch.dynamic import (DynamicBatchNorm2d, make_dynamic, recalibrate_batchnorm,
                                      set_active_widths)
from gancompress.errors import UserError
from gancompress.methods.space import SpaceConfig, frame_template
from gancompress.methods.evolution import EvolutionConfig, evolve
from gancompress.methods.once_for_all import OFAConfig
from gancompress.methods.space import WidthSpace, WidthSupernet


def _copy_slice(dst: nn.Module, src: nn.Module):
    with torch.no_grad():
        for (n, p), (_, q) in zip(dst.state_dict().items(), src.state_dict().items()):
            if p.dim():
                p.copy_(q[tuple(slice(0, d) for d in p.shape)])


@pytest.mark.parametrize("make_wide, make_narrow, cin, active", [
    (lambda: nn.Conv2d(12, 10, 3, padding=1), lambda: nn.Conv2d(5, 7, 3, padding=1), 5, 7),
    (lambda: nn.Conv2d(12, 10, 3, padding=1, padding_mode="reflect"),
     lambda: nn.Conv2d(5, 7, 3, padding=1, padding_mode="reflect"), 5, 7),
    (lambda: nn.Conv2d(12, 10, 3, stride=2, padding=1, dilation=1), lambda: nn.Conv2d(4, 3, 3, stride=2, padding=1), 4, 3),
    (lambda: nn.Conv2d(12, 12, 3, padding=1, groups=12), lambda: nn.Conv2d(6, 6, 3, padding=1, groups=6), 6, None),
    (lambda: nn.ConvTranspose2d(12, 10, 3, 2, 1, 1), lambda: nn.ConvTranspose2d(5, 4, 3, 2, 1, 1), 5, 4),
    (lambda: nn.InstanceNorm2d(12, affine=True), lambda: nn.InstanceNorm2d(5, affine=True), 5, None),
])
def test_dynamic_layer_equals_a_fresh_narrow_layer_with_copied_weights(make_wide, make_narrow, cin, active):
    torch.manual_seed(0)
    wide, narrow = make_wide(), make_narrow()
    with torch.no_grad():
        for p in wide.parameters():
            p.normal_()
    _copy_slice(narrow, wide)
    dyn = make_dynamic(nn.Sequential(wide))
    set_active_widths(dyn, {"0": active})
    x = torch.randn(2, cin, 9, 11)
    assert torch.allclose(dyn(x), narrow(x), atol=1e-5)


def test_dynamic_batchnorm_slices_statistics_and_recalibrates():
    torch.manual_seed(0)
    net = make_dynamic(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)))
    assert isinstance(net[1], DynamicBatchNorm2d)
    set_active_widths(net, {"0": 5})
    batches = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    assert recalibrate_batchnorm(net, batches) == 1
    feats = torch.cat([net[0](b) for b in batches])
    assert torch.allclose(net[1].running_mean[:5], feats.mean((0, 2, 3)), atol=1e-5)
    net.eval()
    narrow = nn.BatchNorm2d(5).eval()
    narrow.load_state_dict({k: (v[:5] if v.dim() else v) for k, v in net[1].state_dict().items()})
    h = net[0](batches[0])
    assert torch.allclose(net[1](h), narrow(h), atol=1e-5)


def _space(task="sr", op="conv3x3", **kw):
    cfg = SpaceConfig(**{"nf": 16, "n_cells": 2, "n_layers": 3, **kw})
    scale = 4 if task == "sr" else 1
    if task == "translate":
        cfg.upsampler = "deconv"
    return WidthSpace(frame_template(cfg, task, scale), cfg.n_cells, cfg.n_layers, op, cfg.width_ratios)


def test_config_string_round_trip_and_errors():
    space = _space()
    rng = random.Random(0)
    for _ in range(20):
        c = space.sample(rng)
        assert space.parse(space.format(c)) == c
        assert space.config_of(space.spec(c)) == c
    with pytest.raises(UserError, match=r"position 2 \(cell0.layer1\) is '7'; allowed values: 5, 8, 11, 13, 16"):
        space.parse("16_8_7_8_8")
    with pytest.raises(UserError, match="has 3 widths but this space has 5 positions"):
        space.parse("16_8_8")


@pytest.mark.parametrize("task, op", [("sr", "conv3x3"), ("sr", "irb"), ("sr", "resblock"), ("translate", "conv3x3")])
def test_supernet_equals_the_extracted_student(task, op):
    torch.manual_seed(0)
    space = _space(task, op)
    net = WidthSupernet(space)
    with torch.no_grad():  # move norms away from identity so slicing mistakes would show
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rng = random.Random(1)
    x = torch.rand(2, 3, 16, 16)
    for c in [space.max_config(), space.min_config()] + [space.sample(rng) for _ in range(4)]:
        net.set_config(c)
        student = net.extract(c)
        assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in net.parameters()) or \
            c == space.max_config()
        assert torch.allclose(net(x), student(x), atol=1e-5), space.format(c)


def test_mapping_layers_fit_every_sampled_config():
    from gancompress.methods.once_for_all import Objective
    from gancompress.teachers import RRDBNet, Teacher

    torch.manual_seed(0)
    teacher = Teacher(RRDBNet(nf=8, nb=2, gc=4, scale=4), kind="esrgan", source="tiny", scale=4,
                      feature_layers=RRDBNet(nf=8, nb=2, gc=4).feature_layers())
    space = _space()
    net = WidthSupernet(space)
    obj = Objective(OFAConfig(lambda_gan=0.1), nn.L1Loss(), teacher, teacher.feature_layers, net.net, "sr", space.n_cells,
                    torch.rand(1, 3, 8, 8), 32, "cpu")
    assert obj.use_features and "conv_hr" not in obj.t_paths  # the HR layer cannot match the LR trunk
    taps = obj.attach(net.net)
    rng = random.Random(0)
    x = torch.rand(2, 3, 8, 8)
    t_feats = obj.teacher_features(x)
    for _ in range(10):
        net.set_config(space.sample(rng))
        out = net(x)
        loss, logs = obj.generator_loss(out, torch.rand_like(out), taps, t_feats)
        assert torch.isfinite(loss) and "feat" in logs


class _ToySpace:
    """A 4-position space whose 'MACs' are the sum of widths and whose score prefers big widths at
    even positions: cheap enough to run evolutions many times."""

    choices = [[1, 2, 3, 4]] * 4

    def sample(self, rng):
        return tuple(rng.choice(c) for c in self.choices)

    def format(self, c):
        return "_".join(map(str, c))

    def macs(self, c):
        return sum(c)

    def min_config(self):
        return (1, 1, 1, 1)


def _within(limit):
    return lambda c: sum(c) <= limit


def _toy_score(c):
    return 2 * c[0] + 2 * c[2] + 0.1 * c[1] + 0.1 * c[3]


def test_evolution_respects_the_budget_and_is_deterministic(tmp_path):
    cfg = EvolutionConfig(population=8, generations=5, seed=3)
    a = evolve(_ToySpace(), _toy_score, _within(9), cfg)
    b = evolve(_ToySpace(), _toy_score, _within(9), cfg)
    assert all(sum(map(int, k.split("_"))) <= 9 for k in a["cache"])
    assert a["best"] == b["best"] and a["history"] == b["history"]
    assert sum(a["best"]) <= 9 and a["best"][0] + a["best"][2] >= 6  # found the good part of the space


def test_evolution_resumes_after_an_interrupt_with_the_same_population(tmp_path):
    cfg = EvolutionConfig(population=8, generations=6, seed=1)
    straight = evolve(_ToySpace(), _toy_score, _within(10), cfg, tmp_path / "a.json")
    calls = {"n": 0}
    stop_at = len(straight["cache"]) - 2  # in a late generation

    def flaky(c):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return _toy_score(c)

    with pytest.raises(KeyboardInterrupt):
        evolve(_ToySpace(), flaky, _within(10), cfg, tmp_path / "b.json")
    saved = json.loads((tmp_path / "b.json").read_text())
    assert 0 < saved["generation"] < cfg.generations
    resumed = evolve(_ToySpace(), _toy_score, _within(10), cfg, tmp_path / "b.json")
    assert resumed["history"] == straight["history"] and resumed["best"] == straight["best"]
    assert json.loads((tmp_path / "b.json").read_text())["population"] == \
        json.loads((tmp_path / "a.json").read_text())["population"]


def test_fill_to_widens_a_config_into_the_band_by_the_best_score():
    """GAN Compression's fill under a MACs budget (`WidthSpace.fill_to`): a winner below the band
    is widened position by position, each step the widening the score ranks first, until it reaches
    the band, never past the budget; where the whole space lies below the band it ends at the
    widest config; a config already in the band stays as it was."""
    from gancompress.arch.cost import spec_macs

    space = WidthSpace(frame_template(SpaceConfig(nf=16), "sr", 4), 2, 2, "conv3x3")

    def cost(c):
        return spec_macs(space.spec(c))

    start, top = space.min_config(), cost(space.max_config())
    low, limit = cost(start) + 0.5 * (top - cost(start)), cost(start) + 0.6 * (top - cost(start))
    last_first = space.fill_to(start, cost, low, limit, score=lambda c: c[-1] * 100 - sum(c))
    assert low <= cost(last_first) <= limit
    assert all(a >= b for a, b in zip(last_first, start))
    assert last_first[-1] == space.choices[-1][-1]  # the position the score favours went widest first
    # one step past the start, the top-scored widening is the one taken
    one = space.fill_to(start, cost, cost(start) + 1, top, score=lambda c: c[0])
    assert one[0] == space.choices[0][-1] and one[1:] == start[1:]
    assert space.fill_to(start, cost, 2 * top, 3 * top, score=lambda c: 0) == space.max_config()
    assert space.fill_to(last_first, cost, low, limit, score=lambda c: 0) == last_first


def _ofa_cfg(teacher, train, evald, out, **kw):
    ofa = OFAConfig(steps=4, evolution=EvolutionConfig(population=6, generations=2), **kw)
    cfg = tiny_config(teacher, train, evald, out, method="ofa", budget="1/3", method_options=ofa)
    cfg.search.n_layers = 3
    return cfg


def test_ofa_compress_end_to_end(tiny_teacher, tiny_data, tmp_path):
    from gancompress.api import compress

    cfg = _ofa_cfg(tiny_teacher, *tiny_data, tmp_path / "run")
    m = compress(cfg)
    run = tmp_path / "run"
    assert m["method"] == "ofa" and m["within_budget"]
    spec = json.loads((run / "search" / "spec.json").read_text())
    info = json.loads((run / "search" / "ofa.json").read_text())
    assert spec["meta"]["config"] == info["config"] and info["candidates"] >= 6
    # the fill's probes are counted apart from the evolution's candidates: some exactly when it moved
    assert (info["fill_probes"] > 0) == (info["capacity"] is not None)
    assert info["candidates"] <= 6 * 2  # population x generations; here the fill fires (21 probes)
    assert (run / "student" / "student.onnx").is_file() and (run / "search" / "ofa_aux.safetensors").is_file()
    assert m["student_macs"] == m["student_macs_flopcounter"]
    # the winner spends the budget: in its band (at least band x budget), or the space's widest
    space = WidthSpace(frame_template(cfg.search, "sr", cfg.scale), cfg.search.n_cells, cfg.search.n_layers)
    widest = space.spec(space.max_config())
    from gancompress.arch.cost import spec_macs
    assert spec["meta"]["macs"] >= min(cfg.search.band * spec["meta"]["budget_macs"], spec_macs(widest))
    # a config string instead of the search: that exact sub-network is fine-tuned
    space_cfg = info["config"]
    m2 = compress(_ofa_cfg(tiny_teacher, *tiny_data, tmp_path / "run2", config=space_cfg, lambda_gan=0.0))
    assert json.loads((tmp_path / "run2" / "search" / "spec.json").read_text())["meta"]["config"] == space_cfg
    assert m2["student_macs"] == m["student_macs"]


def test_ofa_bad_inputs(tiny_teacher, tiny_data, tmp_path):
    from gancompress.api import compress

    with pytest.raises(UserError, match="has no layer 'body.9'; available names: .*conv_first"):
        compress(_ofa_cfg(tiny_teacher, *tiny_data, tmp_path / "a", teacher_layers=("body.9",)))
    with pytest.raises(UserError, match="conv_hr outputs .* but the student's are"):
        compress(_ofa_cfg(tiny_teacher, *tiny_data, tmp_path / "b", teacher_layers=("conv_hr",)))
    with pytest.raises(UserError, match=r"position 0 \(nf\) is '9'; allowed values"):
        compress(_ofa_cfg(tiny_teacher, *tiny_data, tmp_path / "c", config="9_8_8_8_8"))
    cfg = _ofa_cfg(tiny_teacher, *tiny_data, tmp_path / "d")
    cfg.budget = "1/1000"
    with pytest.raises(UserError, match=r"below the smallest sub-network of the OFA space \(.*config 3_3_3_3_3"):
        compress(cfg)
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing written


def test_black_box_teacher_falls_back_to_output_distillation(tmp_path):
    from gancompress.distill.features import resolve_teacher_layers
    from gancompress.teachers import RRDBNet, load_teacher

    path = tmp_path / "t.ts"
    torch.jit.trace(RRDBNet(nf=8, nb=1, gc=4, scale=4).eval(), torch.rand(1, 3, 8, 8)).save(str(path))
    layers, note = resolve_teacher_layers(load_teacher(f"torchscript:{path}", scale=4, trust_code=True), [])
    assert layers == {} and "feature distillation is unavailable" in note


def test_ofa_translate_with_a_cyclegan_teacher(tmp_path):
    """GAN Compression on a CycleGAN-layout teacher: features from its named layers, the frame
    widths in the config string, fine-tuned and exported."""
    from gancompress.cli import main
    from gancompress.data.bundled import bundled_tiny
    from gancompress.data.images import save_image
    from gancompress.teachers.zoo_translate import ResnetGenerator

    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), tmp_path / "G.pth")
    for name, im in bundled_tiny(2, 96):
        save_image(im, tmp_path / "train" / f"{name}.png")
    out = tmp_path / "run"
    args = ["compress", "--task", "translate", "--method", "ofa", "--teacher", f"cyclegan:{tmp_path / 'G.pth'}",
            "--train-data", str(tmp_path / "train"), "--eval-data", str(tmp_path / "train"), "--size", "64",
            "--nf", "8", "--cells", "2", "--search-patch", "32", "--search-batch", "2", "--ofa-steps", "3",
            "--population", "4", "--generations", "2", "--retrain-steps", "3", "--patch", "32", "--batch", "2",
            "--budget", "1/2", "--latency-size", "64", "--latency-repeats", "1", "--quiet", "--out", str(out)]
    assert main(args) == 0
    spec = json.loads((out / "search" / "spec.json").read_text())
    assert spec["task"] == "translate" and len(spec["meta"]["config"].split("_")) == 7  # stem down nf 2 cells up0 up1
    assert (out / "student" / "student.onnx").is_file()


def test_cli_bad_teacher_layer_is_one_line_exit_2(tiny_teacher, tiny_data, tmp_path, capsys):
    from test_bad_input import TINY, run_cli

    train, evald = tiny_data
    code, err, line = run_cli(capsys, ["compress", "--method", "ofa", "--teacher", tiny_teacher, "--train-data", train,
                                       "--eval-data", evald, "--out", str(tmp_path / "r"), "--teacher-layers",
                                       "conv_first,nope", *TINY])
    assert code == 2 and "has no layer 'nope'; available names:" in line and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_strip_holdout_takes_the_same_strip_of_every_image():
    from gancompress.methods.once_for_all import holdout_split

    pairs = [(torch.rand(3, 40, 60), torch.rand(3, 40, 60)), (torch.rand(3, 50, 80), torch.rand(3, 50, 80))]
    train, names, held = holdout_split(pairs, ["a", "b"], 0.15, 0, strip_px=16)
    assert names == ["a", "b"] and len(held) == 2
    assert [h[0].shape[-1] for h in held] == [16, 16] and [t[0].shape[-1] for t in train] == [44, 64]
    assert torch.equal(torch.cat([train[1][0], held[1][0]], -1), pairs[1][0])


def test_feature_taps_ignore_what_other_calls_left():
    """The teacher also labels training views between OFA steps; its taps must return the features
    of the input they are asked about, not the last call's (a batch of another size)."""
    from gancompress.distill.features import FeatureTaps

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1))
    taps = FeatureTaps(net, ["0", "2"])
    with torch.no_grad():
        net(torch.rand(1, 3, 8, 8))  # a labelling call, not asked about
        x = torch.rand(2, 3, 8, 8)
        feats = taps.run_until_taps(net, x)
    assert [f.shape[0] for f in feats] == [2, 2]
    torch.testing.assert_close(feats[0], net[0](x))
    taps.close()


def test_the_fine_tune_feature_term_defaults_per_task_and_old_configs_still_match():
    """SR fine-tunes on the output L1 alone (the feature term cost 0.9 dB to the teacher on SRGAN at
    equal training); translation keeps --lambda-distill; an unset value is not written to
    config.json, so runs made before the option resume."""
    from gancompress.methods.once_for_all import OFAConfig, resolved

    assert resolved(OFAConfig(), "sr").finetune_distill == 0.0
    assert resolved(OFAConfig(lambda_distill=0.3), "translate").finetune_distill == 0.3
    assert resolved(OFAConfig(finetune_distill=0.2), "sr").finetune_distill == 0.2
    assert "finetune_distill" not in OFAConfig().to_dict()
    assert OFAConfig(finetune_distill=0.0).to_dict()["finetune_distill"] == 0.0


def test_the_search_config_leaves_the_arch_weight_decay_out_at_its_default():
    """config.json of a run made before --arch-weight-decay has no such key: resuming it must match."""
    from gancompress.methods.space import SpaceConfig

    assert "arch_weight_decay" not in SpaceConfig().to_dict()
    assert SpaceConfig(arch_weight_decay=0.0).to_dict()["arch_weight_decay"] == 0.0

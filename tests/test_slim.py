"""GAN Slimming (`--method slim`): proximal step, fake quantization, extraction, budget threshold."""

import json

import pytest
import torch
from torch import nn

from conftest import tiny_config
from gancompress.budget import Budget
from gancompress.arch.cost import spec_macs
from gancompress.methods.space import SpaceConfig, frame_template
from gancompress.methods.space import WidthSpace
from gancompress.methods.channels import (GatedStudent, extract, kept_channels, threshold_for_budget, widths_of,
                                          zero_cut_gates)
from gancompress.methods.gan_slimming import SlimConfig
from gancompress.quant.fake import (INT8_WEIGHT_QMAX, enable_fake_quant, fake_quant_act, fake_quant_weight,
                                    strip_fake_quant)


def _gated(task="sr"):
    cfg = SpaceConfig(nf=16, n_cells=2, n_layers=3, upsampler="pixelshuffle" if task == "sr" else "deconv")
    space = WidthSpace(frame_template(cfg, task, 4 if task == "sr" else 1), 2, 3, "conv3x3")
    torch.manual_seed(0)
    g = GatedStudent(space)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for q in g.gate_parameters():
            q.uniform_(-1, 1)
    return g


def test_proximal_step_is_the_exact_soft_threshold():
    g = _gated()
    before = [q.detach().clone() for q in g.gate_parameters()]
    g.proximal_step(0.3)
    for b, a in zip(before, g.gate_parameters()):
        expected = torch.where(b.abs() <= 0.3, torch.zeros_like(b), b - 0.3 * torch.sign(b))
        assert torch.equal(a.detach(), expected)


def test_fake_quant_is_round_to_grid_with_straight_through_gradients():
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    q = fake_quant_weight(w)
    scale = w.detach().abs().amax((1, 2, 3), keepdim=True) / INT8_WEIGHT_QMAX  # the int8 export's weight grid
    assert torch.allclose(q, torch.round(w.detach() / scale) * scale, atol=1e-6)
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    x = torch.linspace(-1, 2, 101, requires_grad=True)
    y = fake_quant_act(x, -1.0, 2.0)
    step = 3.0 / 255
    assert torch.allclose(y / step, torch.round(y.detach() / step), atol=1e-4)  # on the uint8 grid
    assert (y - x).abs().max() <= step / 2 + 1e-6
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    conv = nn.Conv2d(3, 4, 3)
    m = nn.Sequential(conv)
    enable_fake_quant(m)
    m.train()(torch.rand(1, 3, 8, 8))
    wq = conv.weight.detach().clone()
    strip_fake_quant(m)
    assert torch.equal(conv.weight.detach(), wq) and not conv._forward_pre_hooks


@pytest.mark.parametrize("task", ["sr", "translate"])
def test_extraction_equals_the_masked_network_and_the_threshold_meets_the_budget(task):
    g = _gated(task)
    space = g.space
    budget = int(0.35 * space.macs(space.max_config()))
    t = threshold_for_budget(g, Budget.macs(budget))
    kept = kept_channels(g, t)
    assert spec_macs(space.spec(widths_of(kept))) <= budget
    lower = [v for v in sorted({float(x) for q in g.gate_parameters() for x in q.detach().abs()}) if v < t]
    if lower:  # the threshold is the smallest that fits: one notch lower does not
        assert spec_macs(space.spec(widths_of(kept_channels(g, lower[-1])))) > budget
    zero_cut_gates(g, kept)
    plain, spec = extract(g, kept)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(g(x), plain(x), atol=1e-5)
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in g.net.parameters())


def test_a_layer_pruned_to_nothing_keeps_a_floor_and_warns():
    g = _gated()
    with torch.no_grad():
        g.gates[1].zero_()
    with pytest.warns(UserWarning, match="pruned every channel of cell0.layer0"):
        kept = kept_channels(g, 0.0)
    assert kept[1].numel() == 1


@pytest.mark.parametrize("bits", [32, 8])
def test_slim_compress_end_to_end(tiny_teacher, tiny_data, tmp_path, bits):
    from gancompress.api import compress

    slim = SlimConfig(steps=6, rho=0.5, bits=bits)
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", method="slim", budget="1/3", method_options=slim)
    cfg.search.n_layers = 3
    m = compress(cfg)
    assert m["method"] == "slim" and m["within_budget"]
    spec = json.loads((tmp_path / "run" / "search" / "spec.json").read_text())
    assert spec["bits"] == bits and spec["meta"]["method"] == "slim"
    assert m["student_macs"] == m["student_macs_flopcounter"]
    # an ESRGAN-style teacher cannot be written as a student: the run slimmed the space network
    assert "init" not in json.loads((tmp_path / "run" / "config.json").read_text())["slim"]


def test_regrow_fills_the_budget_in_a_run_and_refuses_a_graph_start(tiny_teacher, tiny_data, tmp_path):
    from gancompress.api import compress
    from gancompress.errors import UserError
    from gancompress.methods.gan_slimming import validate

    # two proximal steps of 1.0 (the fixed-rho step: not stopped at the budget): every gate at zero
    slim = SlimConfig(steps=2, rho=10.0, regrow=True, stop_at_budget=False)
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", method="slim", budget="1/3", method_options=slim)
    m = compress(cfg)
    info = json.loads((tmp_path / "run" / "search" / "slim.json").read_text())
    assert info["gate_sparsity_after_training"] == 1.0 and info["regrown_channels"] > 0
    assert m["within_budget"]  # filled: up to the budget, or the whole network where it fits
    assert m["student_macs"] > 0.8 * m["budget_macs"] or info["widths"] == info["widest"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["slim"]["regrow"] is True
    with pytest.raises(UserError, match="--regrow"):
        validate(SlimConfig(regrow=True, init="graph"))
    with pytest.raises(UserError, match="--slim-score rank"):
        validate(SlimConfig(score="rank", init="graph"))


def test_gs8_does_not_slim_a_graph_and_says_why(tiny_teacher, tiny_data, tmp_path, capsys):
    from gancompress.api import compress

    slim = SlimConfig(steps=2, bits=8, init="graph")
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", method="slim", budget="1/3", method_options=slim,
                      quiet=False)
    compress(cfg)
    assert "GS-32 only" in capsys.readouterr().err
    assert "pruned_from" not in json.loads((tmp_path / "run" / "search" / "slim.json").read_text())


def test_int8_twins_cost_less_and_build_the_same_module():
    from gancompress.arch.build import build_student
    from gancompress.arch.cost import has_int8_layers, spec_cost
    from gancompress.arch.spec import ArchSpec, uniform_sr_spec

    spec = uniform_sr_spec(4, 16, 2, 2, "conv3x3@int8")
    plain = uniform_sr_spec(4, 16, 2, 2, "conv3x3")
    assert has_int8_layers(spec) and not has_int8_layers(plain)
    assert spec_macs(spec) == spec_macs(plain)
    frame = spec_cost(plain) - sum(9 * 16 * 16 * 256 * 256 for _ in range(4))
    assert spec_cost(spec, 0.5) == pytest.approx(frame + 0.5 * (spec_cost(plain) - frame))
    assert ArchSpec.from_json(spec.to_json()).cells[0][0].op == "conv3x3@int8"
    assert [k for k in build_student(spec).state_dict()] == [k for k in build_student(plain).state_dict()]


def test_agd_precision_search_end_to_end(tiny_teacher, tiny_data, tmp_path):
    """Every searchable layer forced int8 (--ops conv3x3@int8): the supernet trains them with fake
    quantization, retraining keeps it, the budget counts them at half cost, and the run ends with
    an int8 ONNX that quantizes exactly those layers."""
    from gancompress.api import compress

    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run")
    cfg.search.ops = ("conv3x3@int8",)
    cfg.search.int8_search = True
    m = compress(cfg)
    spec = json.loads((tmp_path / "run" / "search" / "spec.json").read_text())
    assert all(l[0] == "conv3x3@int8" for cell in spec["cells"] for l in cell)
    assert m["within_budget"] and m["student_cost"] < m["student_macs"] and m["int8_cost"] == 0.5
    q = m["int8"]
    assert q["int8_vs_fp32"] > 30 and not any("/layers." in n for n in q["float_nodes"])  # every layer int8
    assert any(n.startswith("/head/") for n in q["float_nodes"])  # the frame stays float
    report = (tmp_path / "run" / "report.md").read_text()
    assert ("did run faster" in report) == (q["latency_ratio_int8_fp32"] <= 0.9)  # the discount is checked
    from gancompress.report.run_report import int8_discount_check

    assert "search without --search-int8" in int8_discount_check({"latency_ratio_int8_fp32": 1.0}, 0.5)


@pytest.mark.parametrize("stop,budget_share,calls", [(True, 1.0, 0), (True, 0.0, 3), (False, 1.0, 3)])
def test_stop_at_budget_skips_the_proximal_step_once_the_live_network_fits(tmp_path, monkeypatch, stop,
                                                                            budget_share, calls):
    from gancompress.data.patches import PatchSampler
    from gancompress.methods.channels import live_macs
    from gancompress.methods.gan_slimming import train_gated

    g = _gated()
    widest = live_macs(g)
    n = []
    monkeypatch.setattr(GatedStudent, "proximal_step", lambda self, t: n.append(t))
    pairs = [(torch.rand(3, 8, 8), torch.rand(3, 32, 32))]
    sampler = PatchSampler(pairs, 8, 4, 2, seed=0)
    cfg = SlimConfig(steps=3, lambda_gan=0.0, stop_at_budget=stop)
    train_gated(cfg, g, nn.L1Loss(), sampler, tmp_path / "s.ckpt", "cpu", quiet=True, budget=Budget.macs(int(budget_share * widest)))
    assert len(n) == calls


def test_the_flipped_stop_at_budget_default_keeps_older_runs_resumable_as_they_ran():
    """--stop-at-budget became the default in session 47. A run folder from before has no
    stop_at_budget in its config.json (False was omitted as the default): it matches
    --no-stop-at-budget, the way it ran, and not the new default."""
    assert SlimConfig().stop_at_budget and SlimConfig().to_dict()["stop_at_budget"] is True
    assert "stop_at_budget" not in SlimConfig(stop_at_budget=False).to_dict()


@pytest.mark.parametrize("task", ["sr", "translate"])
def test_gs8_fake_quantizes_exactly_what_the_int8_export_quantizes(task):
    """GS-8 trains on the rounding the deployed int8 model applies: the same convs as `--qat` (SR:
    the upsampler too; translation: no ConvTranspose2d, no output conv)."""
    from types import SimpleNamespace

    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_sr_spec, uniform_translate_spec
    from gancompress.methods.gan_slimming import quantize_for

    spec = uniform_sr_spec(4, 8, 1, 2, "conv3x3") if task == "sr" else uniform_translate_spec(8, 1, 2)
    net = build_student(spec)
    names = quantize_for(SimpleNamespace(task=task, method_options=SimpleNamespace(bits=8)), net)
    convs = {n: m for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    if task == "sr":
        assert "upsampler.convs.0" in names and set(names) == set(convs)
    else:
        float_convs = {n for n, m in convs.items() if isinstance(m, nn.ConvTranspose2d)} | {"out"}
        assert any(isinstance(m, nn.ConvTranspose2d) for m in convs.values()) and "out" in convs
        assert set(names) == set(convs) - float_convs
    assert quantize_for(SimpleNamespace(task=task, method_options=SimpleNamespace(bits=32)), build_student(spec)) == []


@pytest.mark.parametrize("task", ["sr", "translate"])
def test_regrowth_fills_a_budget_the_live_gates_undershoot_and_extraction_stays_exact(task):
    from gancompress.methods.channels import slimming_scores

    g = _gated(task)
    space = g.space
    with torch.no_grad():  # the proximal step zeroed three quarters of every prunable position
        for i in g.map.prunable:
            g.gates[i][g.gates[i].numel() // 4:] = 0
    live = spec_macs(space.spec(widths_of(kept_channels(g, 0.0))))
    budget = Budget.macs(int(0.6 * space.macs(space.max_config())))
    assert live < 0.5 * budget.limit
    assert threshold_for_budget(g, budget) == 0.0  # gates alone: nothing left to cut, budget unused
    scores = slimming_scores(g)
    kept = kept_channels(g, threshold_for_budget(g, budget, scores), scores)
    filled = spec_macs(space.spec(widths_of(kept)))
    assert 0.85 * budget.limit < filled <= budget.limit
    for i in g.map.prunable:  # every live channel stays; the regrown ones are the strongest zeroed filters
        gates = g.gates[i].detach()
        assert set(torch.nonzero(gates).flatten().tolist()) <= set(kept[i].tolist())
    plain, spec = extract(g, kept)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():  # regrown channels fold their zero gates: the same function as the gated net
        assert torch.allclose(g(x), plain(x), atol=1e-5)
    assert spec_macs(spec) == filled



def test_rank_scores_cut_every_position_to_the_same_fraction_keeping_its_strongest_gates():
    from gancompress.methods.channels import rank_scores

    g = _gated()
    scores = rank_scores(g)
    budget = Budget.macs(int(0.4 * g.space.macs(g.space.max_config())))
    kept = kept_channels(g, threshold_for_budget(g, budget, scores), scores)
    fractions = {round(k.numel() / w, 6) for i, (k, w) in enumerate(zip(kept, g.space.max_config())) if i in g.map.prunable}
    assert len(fractions) == 1 and spec_macs(g.space.spec(widths_of(kept))) <= budget.limit
    for i in g.map.prunable:
        mags = g.gates[i].detach().abs()
        assert mags[kept[i]].min() >= mags[[j for j in range(mags.numel()) if j not in set(kept[i].tolist())]].max()

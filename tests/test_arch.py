"""ArchSpec, operators, builder, analytic cost, and the AGD supernet's core invariants."""

import json
import random

import pytest
import torch

from gancompress.arch.build import build_student, load_sliced
from gancompress.arch.cost import measure_macs, spec_macs, spec_params
from gancompress.budget import resolve_budget
from gancompress.arch.ops import OPS
from gancompress.arch.spec import ArchSpec, FrameSpec, LayerSpec, UpsamplerSpec, uniform_sr_spec, uniform_translate_spec
from gancompress.errors import UserError
from gancompress.methods.agd_supernet import Supernet, fill_to_band, repair_to_budget, student_state_from_supernet

ALL_OPS = sorted(o for o in OPS if OPS[o].bits == 32)  # int8 twins differ by design (fake quantization)


def random_spec(rng, scale=4, nf=12, up="pixelshuffle"):
    cells = []
    for _ in range(rng.randint(1, 3)):
        n = rng.randint(1, 3)
        cell = [LayerSpec(rng.choice(ALL_OPS), rng.randint(1, 16)) for _ in range(n - 1)]
        cells.append(cell + [LayerSpec(rng.choice(ALL_OPS), nf)])
    return ArchSpec("sr", scale, nf, cells, UpsamplerSpec(up, 6 if up == "progressive" else 0))


def test_spec_json_round_trip(tmp_path):
    spec = random_spec(random.Random(1), up="progressive")
    spec.meta = {"method": "agd", "budget_macs": 123}
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    spec.save(tmp_path / "s.json")
    assert ArchSpec.load(tmp_path / "s.json") == spec
    assert json.loads(spec.to_json())["version"] == 1


def test_spec_validation_messages():
    good = uniform_sr_spec(4, 8, 1, 2)
    d = good.to_dict()
    d["cells"][0][-1][1] = 5
    with pytest.raises(UserError, match="last layer must output nf=8"):
        ArchSpec.from_dict(d)
    d = good.to_dict()
    d["cells"][0][0][0] = "conv7x7"
    with pytest.raises(UserError, match="unknown operator 'conv7x7'"):
        ArchSpec.from_dict(d)
    d = good.to_dict()
    d["scale"] = 8
    with pytest.raises(UserError, match="unsupported scale x8"):
        ArchSpec.from_dict(d)
    with pytest.raises(UserError, match="not valid JSON"):
        ArchSpec.from_json("{nope")


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("up", ["pixelshuffle", "progressive"])
def test_analytic_macs_equal_flopcounter(scale, up):
    rng = random.Random(scale * 7 + len(up))
    for _ in range(3):
        spec = random_spec(rng, scale=scale, up=up)
        model = build_student(spec)
        for hw in [(16, 16), (9, 13)]:
            assert spec_macs(spec, hw) == measure_macs(model, hw)
        assert spec_params(spec) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("op", ALL_OPS)
def test_each_op_shapes_at_every_width(op):
    widths = [4, 6, 8, 10, 12]
    x = {c: torch.rand(2, c, 7, 9) for c in widths}
    for cin in widths:
        for cout in widths:
            m = OPS[op].build(cin, cout)
            y = m(x[cin])
            assert y.shape == (2, cout, 7, 9)
            assert OPS[op].macs(cin, cout) * 63 == measure_macs_of_op(m, cin)


def measure_macs_of_op(m, cin):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as c:
        m(torch.zeros(1, cin, 7, 9))
    return c.get_total_flops() // 2


def test_student_output_shape_and_onnx_friendly_forward():
    spec = uniform_sr_spec(3, 8, 2, 2, op="irb")
    y = build_student(spec)(torch.rand(1, 3, 10, 11))
    assert y.shape == (1, 3, 30, 33)


def tiny_supernet(**kw):
    torch.manual_seed(0)
    args = dict(scale=4, nf=12, n_cells=2, n_layers=3, ops=ALL_OPS, width_ratios=(1 / 3, 1 / 2, 2 / 3, 5 / 6, 1),
                upsampler=UpsamplerSpec("pixelshuffle"))
    args.update(kw)
    template = ArchSpec("sr", args["scale"], args["nf"], [], args["upsampler"], skip=args.get("skip", "bicubic"))
    return Supernet(template, args["n_cells"], args["n_layers"], args["ops"], args["width_ratios"])


def test_supernet_subnet_equals_built_student_with_sliced_weights():
    net = tiny_supernet(upsampler=UpsamplerSpec("progressive", 6))
    rng = random.Random(0)
    x = torch.rand(2, 3, 10, 10)
    for _ in range(6):
        ops = [rng.randrange(len(ALL_OPS)) for _ in net.layer_widths]
        ws = [rng.randrange(len(w)) for w in net.layer_widths]
        spec = net.spec_from_indices(ops, ws)
        student = build_student(spec)
        copied = load_sliced(student, student_state_from_supernet(net, ops))
        assert copied == len(student.state_dict())
        with torch.no_grad():
            a = net(x, "fixed", "fixed", fixed_widths=ws, fixed_ops=ops)
            b = student(x)
        assert torch.allclose(a, b, atol=1e-6)


def test_expected_macs_is_exact_for_a_certain_architecture():
    net = tiny_supernet()
    rng = random.Random(3)
    ops = [rng.randrange(len(ALL_OPS)) for _ in net.layer_widths]
    ws = [rng.randrange(len(w)) for w in net.layer_widths]
    with torch.no_grad():
        for i, (o, w) in enumerate(zip(ops, ws)):
            net.alpha[i].fill_(-60.0)
            net.alpha[i, o] = 60.0
            net.betas[i].fill_(-60.0)
            net.betas[i][w] = 60.0
    assert net.expected_macs().item() == pytest.approx(spec_macs(net.spec_from_indices(ops, ws)), rel=1e-5)


def test_gradients_reach_architecture_parameters():
    net = tiny_supernet()
    x, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    out = net(x, width_mode="gumbel", op_mode="mix", tau=1.0)
    loss = torch.nn.functional.l1_loss(out, t) + 0.01 * torch.log(net.expected_macs())
    loss.backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    searchable = [b for b, w in zip(net.betas, net.layer_widths) if len(w) > 1]
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in searchable)


def test_resource_term_alone_moves_towards_cheaper_choices():
    net = tiny_supernet()
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.05)
    before = net.expected_macs().item()
    for _ in range(30):
        opt.zero_grad()
        torch.log(net.expected_macs()).backward()
        opt.step()
    assert net.expected_macs().item() < 0.7 * before


def test_repair_respects_budget_and_prefers_likely_choices():
    net = tiny_supernet()
    with torch.no_grad():
        net.alpha.normal_()
        for b in net.betas:
            b.normal_()
    ops, ws = net.argmax_indices()
    full = spec_macs(net.spec_from_indices(ops, ws))
    lo = spec_macs(net.min_spec())
    for frac in (0.9, 0.6, 0.3):
        budget = int(lo + frac * (full - lo))
        o2, w2 = repair_to_budget(net, ops, ws, budget)
        assert spec_macs(net.spec_from_indices(o2, w2)) <= budget


def test_fill_reaches_the_band_from_below_without_passing_the_budget():
    from gancompress.methods.agd_spade import SpadeSupernet
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    spade = SpadeSupernet(WidthSpace(frame_template(SpaceConfig(nf=12), "label2image", 1, label_nc=8), 0, 0))
    for net in (tiny_supernet(), spade):
        torch.manual_seed(1)
        with torch.no_grad():
            for b in net.arch_parameters():
                b.normal_()
        ops = [0] * len(net.argmax_indices()[0])
        ws = [0] * len(net.argmax_indices()[1])  # the floor of the space
        lo, hi = spec_macs(net.min_spec()), spec_macs(net.max_spec())
        for a, b in ((0.4, 0.5), (0.7, 0.75), (0.9, 1.0)):
            low, budget = lo + a * (hi - lo), lo + b * (hi - lo)
            o2, w2 = fill_to_band(net, ops, ws, low, budget)
            assert low <= spec_macs(net.spec_from_indices(o2, w2)) <= budget
        # already in the band: nothing moves
        assert fill_to_band(net, ops, ws, lo, hi) == (ops, ws)


def test_min_and_max_spec_bound_the_space():
    net = tiny_supernet()
    lo, hi = spec_macs(net.min_spec()), spec_macs(net.max_spec())
    rng = random.Random(5)
    for _ in range(20):
        ops = [rng.randrange(len(ALL_OPS)) for _ in net.layer_widths]
        ws = [rng.randrange(len(w)) for w in net.layer_widths]
        assert lo <= spec_macs(net.spec_from_indices(ops, ws)) <= hi


def test_resolve_budget_forms():
    assert resolve_budget("9.2G", None) == 9_200_000_000
    assert resolve_budget("800M", None) == 800_000_000
    assert resolve_budget("1/10", 92_000) == 9_200
    assert resolve_budget("0.5x", 1000) == 500
    with pytest.raises(UserError, match="relative to the teacher"):
        resolve_budget("1/10", None)
    with pytest.raises(UserError, match="cannot read budget"):
        resolve_budget("lots", 1)


# ---- translation skeleton ----------------------------------------------------------------------
def random_translate_spec(rng, up_kind):
    nf = rng.choice([8, 12])
    cells = [[LayerSpec(rng.choice(ALL_OPS), rng.choice([3, 5, nf])), LayerSpec(rng.choice(ALL_OPS), nf)]
             for _ in range(rng.randint(1, 3))]
    frame = FrameSpec(rng.randint(2, 6), [rng.randint(2, 7)], [rng.randint(2, 7), rng.randint(2, 7)], up_kind,
                      rng.choice([3, 7, 9]), rng.choice([1, 5, 7]))
    return ArchSpec("translate", 1, nf, cells, skip="none", frame=frame)


@pytest.mark.parametrize("up_kind", ["deconv", "resize"])
def test_translate_spec_macs_equal_flopcounter_and_round_trip(up_kind):
    rng = random.Random(len(up_kind))
    for _ in range(3):
        spec = random_translate_spec(rng, up_kind)
        assert ArchSpec.from_json(spec.to_json()) == spec
        model = build_student(spec)
        for hw in [(32, 32), (16, 24)]:
            assert spec_macs(spec, hw) == measure_macs(model, hw)
        y = model(torch.rand(1, 3, 16, 24))
        assert y.shape == (1, 3, 16, 24) and 0 <= y.min() and y.max() <= 1


def test_cyclegan_reference_macs():
    """The CycleGAN ResNet generator (ngf 64, 9 blocks) reads 49.55 GMACs at 256x256 by
    FlopCounterMode, and the uniform student of the same shape has exactly the same count."""
    from gancompress.teachers.zoo_translate import ResnetGenerator

    assert measure_macs(ResnetGenerator(ngf=64, n_blocks=9)) == 49_551_507_456
    spec = uniform_translate_spec(256, 9, 2, frame=FrameSpec(64, [128], [128, 64]))
    assert spec_macs(spec) == 49_551_507_456


def test_frame_kernels_are_stored_only_when_not_7_and_checked():
    spec = uniform_translate_spec(8, 2, 2)
    assert "stem_k" not in spec.to_dict()["frame"]  # 7x7 specs read as before the fields existed
    d = spec.to_dict()
    d["frame"]["out_k"] = 4
    with pytest.raises(UserError, match="kernel sides"):
        ArchSpec.from_dict(d)


def test_translate_spec_errors():
    spec = uniform_translate_spec(8, 2, 2)
    d = spec.to_dict()
    d["frame"]["up"] = [4]
    with pytest.raises(UserError, match="2 'up' widths"):
        ArchSpec.from_dict(d)
    d = spec.to_dict()
    del d["frame"]
    with pytest.raises(UserError, match="needs a 'frame'"):
        ArchSpec.from_dict(d)


def test_translate_supernet_subnet_equals_built_student():
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=12, n_cells=2, n_layers=2, ops=ALL_OPS, upsampler="resize")
    torch.manual_seed(0)
    net = make_supernet(cfg, frame_template(cfg, "translate"))
    with torch.no_grad():  # non-trivial instance-norm affine parameters
        for n, p in net.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5) if n.endswith("weight") else p.uniform_(-0.3, 0.3)
    rng = random.Random(1)
    x = torch.rand(2, 3, 16, 16)
    assert len(net.frame_widths) == 4  # stem, down, up, up widths are searched too
    for _ in range(5):
        ops = [rng.randrange(len(ALL_OPS)) for _ in net.layer_widths]
        ws = [rng.randrange(len(w)) for w in net.all_widths]
        spec = net.spec_from_indices(ops, ws)
        student = build_student(spec)
        assert load_sliced(student, student_state_from_supernet(net, ops)) == len(student.state_dict())
        with torch.no_grad():
            a = net(x, "fixed", "fixed", fixed_widths=ws, fixed_ops=ops)
            b = student(x)
        assert torch.allclose(a, b, atol=1e-5)
        assert spec_macs(spec) == pytest.approx(_exact_expected(net, ops, ws), rel=1e-5)


def _exact_expected(net, ops, ws):
    with torch.no_grad():
        for i, o in enumerate(ops):
            net.alpha[i].fill_(-60.0)
            net.alpha[i, o] = 60.0
        for beta, w in zip([*net.betas, *net.frame_betas], ws):
            beta.fill_(-60.0)
            beta[w] = 60.0
    return net.expected_macs().item()


def test_translate_frame_widths_get_gradients_and_repair_keeps_the_budget():
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=16, n_cells=2, n_layers=2, ops=ALL_OPS, upsampler="deconv")
    torch.manual_seed(0)
    net = make_supernet(cfg, frame_template(cfg, "translate"))
    net.expected_macs().backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in net.frame_betas)
    ops, ws = net.argmax_indices()
    assert net.indices_from_spec(net.spec_from_indices(ops, ws)) == (ops, ws)
    budget = (spec_macs(net.min_spec()) + spec_macs(net.max_spec())) // 3
    ops, ws = repair_to_budget(net, [len(ALL_OPS) - 1] * len(ops), [len(w) - 1 for w in net.all_widths], budget)
    assert spec_macs(net.spec_from_indices(ops, ws)) <= budget


def test_onnx_export_needs_no_onnxscript():
    """Both exports use the TorchScript-based exporter (dynamo=False), so the package does not
    depend on onnxscript: an export with onnxscript unimportable still works."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['onnxscript'] = None\n"
            "from gancompress.arch.spec import uniform_sr_spec\n"
            "from gancompress.arch.build import build_student\n"
            "from gancompress.export.student import export_onnx\n"
            "import tempfile, os\n"
            "d = tempfile.mkdtemp()\n"
            "print(export_onnx(build_student(uniform_sr_spec(4, 8, 1, 1, 'conv3x3')).eval(), os.path.join(d, 'x.onnx')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    assert float(r.stdout.strip().splitlines()[-1]) < 1e-4


@pytest.mark.parametrize("up", ["pixelshuffle", "progressive"])
def test_the_sr_output_is_the_upsampler_plus_a_bicubic_upscale_with_one_shuffle_for_both(up):
    """A pixelshuffle student shuffles its upsampler's output and the bicubic skip together (one
    DepthToSpace in ONNX, the add at LR); whichever way, the output is upsampler + F.interpolate."""
    import onnx
    from torch.nn import functional as F

    from gancompress.latency.runtimes import onnx_bytes

    torch.manual_seed(0)
    spec = random_spec(random.Random(3), up=up)
    spec.skip = "bicubic"
    net = build_student(spec.validate()).eval()
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        f = net.encode(x)
        expected = net.upsampler(f + net.trunk(net.cells(f))) + F.interpolate(x, scale_factor=4, mode="bicubic",
                                                                              align_corners=False)
        assert torch.allclose(net(x), expected, atol=1e-5)
    nodes = onnx.load_from_string(onnx_bytes(net, x)).graph.node
    assert len([n for n in nodes if n.op_type == "DepthToSpace"]) == (1 if up == "pixelshuffle" else 3)
    # the int8 recipes keep the skip float by its export names
    assert len([n for n in nodes if n.op_type == "Conv" and n.name.startswith("/skip/")]) == 2


# ---- the unshuffled SR frame (--unshuffle) --------------------------------------------------------
@pytest.mark.parametrize("u", [2, 4])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_unshuffled_bicubic_skip_is_exactly_bicubic(u, scale):
    """BicubicUpsample computed at 1/u of the input's side (padded, unshuffled, two convs, one
    shuffle by scale * u) equals F.interpolate, edges included."""
    from torch.nn import functional as F

    from gancompress.arch.build import BicubicUpsample, skip_macs

    x = torch.rand(2, 3, 4 * u, 6 * u)
    expected = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    skip = BicubicUpsample(scale, u)
    assert torch.allclose(skip(x), expected, atol=1e-5)
    assert skip_macs("bicubic", scale, (4 * u, 6 * u), u) == measure_macs(skip, (4 * u, 6 * u))


@pytest.mark.parametrize("u", [2, 4])
def test_an_unshuffled_student_takes_any_size_and_counts_its_macs(u):
    """Sides not divisible by u are edge-padded and the output cropped back: with the upsampler's
    conv at zero the output is the bicubic upscale itself, at every size; analytic MACs equal
    FlopCounterMode's; params count; the spec round-trips and old specs (no field) read as 1."""
    from torch.nn import functional as F

    rng = random.Random(u)
    for _ in range(2):
        spec = random_spec(rng, scale=rng.choice([2, 3, 4]))
        spec.skip, spec.unshuffle = "bicubic", u
        spec.validate()
        assert ArchSpec.from_json(spec.to_json()) == spec
        net = build_student(spec).eval()
        for hw in [(16, 16), (9, 13)]:
            assert spec_macs(spec, hw) == measure_macs(net, hw)
        assert spec_params(spec) == sum(p.numel() for p in net.parameters())
        torch.nn.init.zeros_(net.upsampler.convs[0].weight)
        torch.nn.init.zeros_(net.upsampler.convs[0].bias)
        x = torch.rand(1, 3, 9, 13)
        with torch.no_grad():
            expected = F.interpolate(x, scale_factor=spec.scale, mode="bicubic", align_corners=False)
            assert torch.allclose(net(x), expected, atol=1e-5)
    plain = uniform_sr_spec(4, 8, 1, 2).to_dict()
    assert "unshuffle" not in plain and ArchSpec.from_dict(plain).unshuffle == 1


def test_unshuffle_is_refused_where_it_has_no_meaning():
    with pytest.raises(UserError, match="unshuffle must be one of"):
        uniform_sr_spec(4, 8, 1, 2, unshuffle=3)
    with pytest.raises(UserError, match="needs the pixelshuffle upsampler"):
        uniform_sr_spec(4, 8, 1, 2, upsampler=UpsamplerSpec("progressive", 8), unshuffle=2)
    spec = uniform_translate_spec(8, 1, 2)
    spec.unshuffle = 2
    with pytest.raises(UserError, match="only for a cell-based SR"):
        spec.validate()


def test_an_unshuffled_student_exports_to_onnx_for_any_size(tmp_path):
    """The export has dynamic sides: the pads and the crop follow the input's size."""
    import onnxruntime as ort

    from gancompress.export.student import export_onnx

    torch.manual_seed(0)
    net = build_student(uniform_sr_spec(4, 8, 1, 2, unshuffle=2)).eval()
    export_onnx(net, tmp_path / "s.onnx")
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    for hw in [(12, 16), (11, 17)]:
        x = torch.rand(1, 3, *hw)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            want = net(x).numpy()
        assert got.shape == want.shape == (1, 3, 4 * hw[0], 4 * hw[1])
        assert abs(got - want).max() < 1e-4

"""A teacher read as a graph of standard layers (teachers/graph_reader.py, arch/graph.py) and cut
exactly (arch/graph_channels.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gancompress.arch.cost import measure_macs, spec_macs
from gancompress.arch.graph_channels import channel_graph, class_importance, keep_fraction, prune_graph
from gancompress.arch.spec import ArchSpec
from gancompress.errors import UserError
from gancompress.arch.graph import GraphNet, GraphSpec
from gancompress.teachers.graph_reader import GraphImportError, read_torchscript


class Zoo(nn.Module):
    """Every operator the reader rewrites, in one network with residual adds, a dense concat and a
    pixel shuffle, so channel classes are tied in every way they can be."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 5)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.prelu = nn.PReLU(12)
        self.a = nn.Conv2d(12, 12, 3, padding=1, bias=False)
        self.b = nn.Conv2d(24, 6, 1)
        self.up = nn.ConvTranspose2d(6, 8, 3, stride=2, padding=1, output_padding=1)
        self.ps = nn.Conv2d(8, 12, 3, padding=1)
        self.out = nn.Conv2d(3, 3, 3, padding=1)
        with torch.no_grad():
            for m in (self.inorm, self.bn):
                m.weight.uniform_(0.2, 2)
                m.bias.uniform_(-0.5, 0.5)
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        x = x * 2 - 1
        h = F.relu(self.inorm(self.head(F.pad(x, [2, 2, 2, 2], mode="reflect"))))
        d = self.prelu(self.bn(self.down(h)))
        r = d + 0.5 * F.leaky_relu(self.a(F.pad(d, [0, 0, 0, 0], mode="constant")), 0.2)
        c = torch.cat([d, r], 1)
        u = torch.relu(self.up(torch.tanh(self.b(c))))
        u = u + F.interpolate(F.interpolate(h, scale_factor=0.5, mode="nearest"), scale_factor=2.0, mode="nearest")
        y = F.pixel_shuffle(self.ps(u), 2)
        y = self.out(F.interpolate(y, scale_factor=0.5, mode="bilinear", align_corners=False))
        return torch.clamp(torch.sigmoid(y) / 1.0, 0, 1)


def _read(model, side=32):
    traced = torch.jit.trace(model.eval(), torch.rand(1, 3, side, side), check_trace=False)
    return read_torchscript(traced, check_sizes=((side, side),))


def test_reader_reproduces_a_network_of_every_supported_operator():
    torch.manual_seed(0)
    model = Zoo().eval()
    spec, weights = _read(model)
    assert {"conv", "inorm", "bnorm", "prelu", "lrelu", "pad", "cat", "add", "scale", "resize", "pixel_shuffle",
            "tanh", "sigmoid", "clamp", "relu"} <= {o.op for o in spec.ops}
    net = GraphNet(GraphSpec.from_dict(spec.to_dict()))  # through its JSON form
    net.load_state_dict(weights)
    x = torch.rand(2, 3, 40, 24)  # another size than the one traced
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model(x), atol=1e-5)


def test_reader_names_an_operator_it_cannot_rewrite():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return torch.flip(self.c(x), [3])

    with pytest.raises(GraphImportError, match="aten::flip"):
        _read(Odd())


def _masked_output(model_spec, weights, cg, keep, x):
    """The full network with every reader of a cut class blind to it (its weight slice zeroed)."""
    net = GraphNet(model_spec)
    net.load_state_dict(weights)
    with torch.no_grad():
        for i, op in enumerate(model_spec.ops):
            if op.op != "conv":
                continue
            w = net.layers[i].weight
            for j, c in enumerate(cg.labels[op.inputs[0]]):
                r = cg.root(c)
                if r not in keep and r not in cg.fixed:
                    if op.attrs["transposed"]:
                        w[j] = 0
                    else:
                        w[:, j] = 0
        return net.eval()(x)


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_pruning_is_exact_and_counts_macs(fraction):
    torch.manual_seed(1)
    spec, weights = _read(Zoo())
    cg = channel_graph(spec)
    assert len(cg.positions) >= 4 and cg.fixed
    keep = keep_fraction(cg, class_importance(spec, weights, cg), fraction)
    small, small_w = prune_graph(spec, weights, cg, keep)
    net = GraphNet(small)
    net.load_state_dict(small_w)
    x = torch.rand(1, 3, 32, 32)
    full = GraphNet(spec)
    full.load_state_dict(weights)
    with torch.no_grad():
        got = net.eval()(x)
        assert torch.allclose(got, _masked_output(spec, weights, cg, keep, x), atol=1e-5)
        assert (got - full.eval()(x)).abs().max() > 1e-3  # the cut changed the function: the test can fail
    arch = ArchSpec.from_json(ArchSpec.from_graph("sr", 1, small).to_json())
    assert spec_macs(arch, (32, 32)) == measure_macs(net, (32, 32)) < measure_macs(GraphNet(spec), (32, 32))


def test_residual_adds_tie_channels_and_the_output_is_fixed():
    spec, weights = _read(Zoo())
    cg = channel_graph(spec)
    convs = {i: op for i, op in enumerate(spec.ops) if op.op == "conv"}
    writers = {i: {cg.root(c) for c in cg.labels[op.output]} for i, op in convs.items()}
    down, a, out = sorted(convs)[1], sorted(convs)[2], sorted(convs)[-1]
    assert writers[down] == writers[a]  # d + f(a(d)): one position
    assert writers[out] <= cg.fixed  # RGB out


def test_a_malformed_graph_spec_is_one_line():
    spec, _ = _read(Zoo())
    d = ArchSpec.from_graph("sr", 1, spec).to_dict()
    d["graph"]["ops"][3]["inputs"] = [999]
    with pytest.raises(UserError, match="malformed graph"):
        ArchSpec.from_dict(d)
    d["graph"]["ops"][3]["op"] = "fft"
    with pytest.raises(UserError, match="unknown graph op"):
        ArchSpec.from_dict(d)


class TinyStyle(nn.Module):
    """A Johnson-style translation network in miniature (reflect pad, instance norm, a residual
    block, a transposed-conv up-sampling), like the style teacher in ../shared."""

    def __init__(self):
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(3, 8, 5), nn.InstanceNorm2d(8, affine=True)
        self.c2, self.n2 = nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.InstanceNorm2d(12, affine=True)
        self.r, self.nr = nn.Conv2d(12, 12, 3, padding=1), nn.InstanceNorm2d(12, affine=True)
        self.u, self.nu = nn.ConvTranspose2d(12, 8, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(8, affine=True)
        self.o = nn.Conv2d(8, 3, 5, padding=2)

    def forward(self, x):
        h = F.relu(self.n1(self.c1(F.pad(x * 255, [2, 2, 2, 2], mode="reflect"))))
        d = F.relu(self.n2(self.c2(h)))
        d = d + self.nr(self.r(d))
        return torch.clamp(self.o(F.relu(self.nu(self.u(d)))) / 255, 0, 1)


def test_prune_cuts_a_black_box_torchscript_teacher(tmp_path, capsys):
    import json

    code = _tiny_translate_run(tmp_path, "prune", "--prune-init", "graph", "--json")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "starts from the teacher itself, read as a graph" in captured.err  # --json: messages on stderr
    out = tmp_path / "run"
    assert json.loads(captured.out) == json.loads((out / "metrics.json").read_text())  # stdout: the metrics
    info = json.loads((out / "search" / "prune.json").read_text())
    assert info["pruned_from"] == "teacher graph" and info["widest"] == [8, 12, 8]
    m = json.loads((out / "metrics.json").read_text())
    assert m["within_budget"] and m["student_macs"] == m["student_macs_flopcounter"] <= m["budget_macs"]
    assert (out / "student" / "student.onnx").is_file()


def test_a_scripted_teacher_with_control_flow_is_refused_with_the_fix(tmp_path):
    from gancompress.teachers import load_teacher
    from gancompress.teachers.graph_reader import read_teacher

    torch.jit.script(TinyStyle().eval()).save(str(tmp_path / "s.ts"))
    teacher = load_teacher(f"torchscript:{tmp_path / 's.ts'}", value_range=(0, 1), trust_code=True)
    with pytest.raises(GraphImportError, match="torch.jit.trace"):
        read_teacher(teacher)


def test_slimming_gates_fold_into_the_cut_graph_exactly():
    from gancompress.methods.graph_pruning import GatedGraph

    torch.manual_seed(3)
    spec, weights = _read(Zoo())
    g = GatedGraph("sr", 1, spec, weights)
    with torch.no_grad():
        g.gates.uniform_(0.5, 1.5)
        g.gates[torch.randperm(len(g.gates))[: len(g.gates) // 3]] = 0
    keep = g.kept(0.0)
    small, small_w = g.extract(keep)
    net = GraphNet(small)
    net.load_state_dict(small_w)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), g.eval()(x), atol=1e-5)
    assert g.live_spec().graph == ArchSpec.from_graph("sr", 1, small).graph


def _tiny_translate_run(tmp_path, method, *extra):
    from gancompress.cli import main
    from gancompress.data.images import save_image

    torch.manual_seed(0)
    torch.jit.trace(TinyStyle().eval(), torch.rand(1, 3, 32, 32)).save(str(tmp_path / "style.ts"))
    for split, n in (("train", 3), ("eval", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            save_image(torch.rand(3, 64, 64), tmp_path / split / f"{i}.png")
    return main(["compress", "--task", "translate", "--method", method, "--teacher", f"torchscript:{tmp_path / 'style.ts'}",
                 "--teacher-range", "0,1", "--trust-teacher-code", "--train-data", str(tmp_path / "train"),
                 "--eval-data", str(tmp_path / "eval"), "--budget", "1/3", "--out", str(tmp_path / "run"), "--size", "64",
                 "--retrain-steps", "3", "--patch", "32", "--batch", "2", "--latency-size", "64",
                 "--latency-repeats", "1", "--loss", "l1", *extra])


def test_gan_slimming_slims_a_black_box_torchscript_teacher(tmp_path, capsys):
    import json

    code = _tiny_translate_run(tmp_path, "slim", "--slim-init", "graph", "--slim-steps", "4", "--lambda-gan", "0")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "GAN Slimming starts from the teacher itself, read as a graph" in captured.err
    info = json.loads((tmp_path / "run" / "search" / "slim.json").read_text())
    assert info["pruned_from"] == "teacher graph" and info["widest"] == [8, 12, 8]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["within_budget"] and m["student_macs"] == m["student_macs_flopcounter"] <= m["budget_macs"]


@pytest.mark.parametrize("name", ["unet", "cyclegan-batch", "cyclegan-instance", "srresnet"])
def test_zoo_teachers_are_read_as_graphs(name):
    from gancompress.teachers import Teacher
    from gancompress.teachers.graph_reader import read_teacher
    from gancompress.teachers.zoo import SRResNet
    from gancompress.teachers.zoo_translate import ResnetGenerator, UnetGenerator

    torch.manual_seed(0)
    model, scale, rng = {"unet": (UnetGenerator(num_downs=5, ngf=4), 1, (-1, 1)),
                         "cyclegan-batch": (ResnetGenerator(ngf=4, n_blocks=2, norm="batch"), 1, (-1, 1)),
                         "cyclegan-instance": (ResnetGenerator(ngf=4, n_blocks=2), 1, (-1, 1)),  # norm without affine
                         "srresnet": (SRResNet(nf=8, nb=2), 4, (0, 1))}[name]
    teacher = Teacher(model.eval(), kind=name, source="test", scale=scale, value_range=rng)
    spec, weights = read_teacher(teacher)
    net = GraphNet(spec)
    net.load_state_dict(weights)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), teacher(x), atol=1e-5)
    cg = channel_graph(spec)
    assert cg.positions and all(len(p) > 1 for p in cg.positions[:1])


def test_hints_match_the_kept_teacher_channels(tmp_path, capsys):
    """--hints: the student's activations and norms are matched to the teacher's at the channels the
    cut kept (distill/hints.py); zero for the uncut teacher itself, written down for resume."""
    import json

    from gancompress.arch.graph import GraphNet
    from gancompress.arch.graph_channels import channel_graph, keep_fraction, prune_graph
    from gancompress.distill.hints import GraphHints, hinted_channels
    from gancompress.teachers.graph_reader import read_torchscript

    torch.manual_seed(0)
    graph, weights = read_torchscript(torch.jit.trace(TinyStyle().eval(), torch.rand(1, 3, 32, 32)))
    cg = channel_graph(graph)
    x = torch.rand(2, 3, 32, 32)
    full = hinted_channels(graph, cg, keep_fraction(cg, {}, 1.0))
    same = GraphNet(graph)
    same.load_state_dict(weights)
    _, h = GraphHints(graph, weights, full, 1.0)(same, x)
    assert h.item() == 0.0 and len(full) >= 3
    keep = keep_fraction(cg, {}, 0.5)
    small, w = prune_graph(graph, weights, cg, keep)
    cut = GraphNet(small)
    cut.load_state_dict(w)
    out, h = GraphHints(graph, weights, hinted_channels(graph, cg, keep), 2.0)(cut, x)
    assert out.shape == (2, 3, 32, 32) and h.item() > 0
    h.backward()  # it trains the student's layers up to the last hinted one
    first = next(cut.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0

    code = _tiny_translate_run(tmp_path, "prune", "--prune-init", "graph", "--hints", "0.5")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    saved = json.loads((tmp_path / "run" / "search" / "teacher_channels.json").read_text())
    assert len(saved) == len(full)
    curve = json.loads((tmp_path / "run" / "retrain.curve.json").read_text())
    assert curve["points"][-1]["hint"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["retrain"]["hints"] == 0.5


@pytest.mark.parametrize("extra, match", [
    ((), "must be cut from the teacher read as a graph"),
    (("--method", "prune"), "must be cut from the teacher read as a graph"),
])
def test_hints_need_a_graph_student(capsys, extra, match):
    from gancompress.cli import main

    assert main(["compress", "--hints", "1", *extra, "--out", "x"]) == 2
    assert match in capsys.readouterr().err

"""The Method interface: the registry, options generated from each method's dataclass, the layers
of the package, and the fourth method (one-shot magnitude pruning) added through it."""

import ast
import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from gancompress.cli import build_parser, config_from_args
from gancompress.config import CompressConfig
from gancompress.methods.registry import METHODS, get_method
from gancompress.methods.options import option_flags

PKG = Path(__file__).resolve().parents[1] / "gancompress"


def test_every_method_is_registered_with_its_options_and_aliases():
    assert set(METHODS) >= {"agd", "ofa", "slim", "uniform", "prune"}
    help_text = build_parser()._subparsers._group_actions[0].choices["compress"].format_help()
    for m in METHODS.values():
        assert m.title and m.summary and m.name in help_text
        if m.options is not None:
            for flag in option_flags(m.options):
                assert flag in help_text, (m.name, flag)
    for alias, name in (("gan-compression", "ofa"), ("gan-slimming", "slim"), ("magnitude-pruning", "prune")):
        assert get_method(alias).name == name
        assert CompressConfig(method=alias).method == name  # config.json keeps the method's name


def test_options_not_given_take_the_dataclass_defaults_and_given_ones_arrive():
    for m in METHODS.values():
        args = build_parser().parse_args(["compress", "--out", "x", "--method", m.name])
        cfg = config_from_args(args)
        assert cfg.method_options == m.default_options()
    args = build_parser().parse_args(["compress", "--out", "x", "--method", "ofa", "--population", "7",
                                      "--no-sandwich", "--teacher-layers", "a, b", "--seed", "3"])
    o = config_from_args(args).method_options
    assert o.evolution.population == 7 and o.evolution.seed == 3 and not o.sandwich and o.teacher_layers == ("a", "b")
    args = build_parser().parse_args(["compress", "--out", "x", "--method", "slim", "--lambda-gan", "0.5",
                                      "--no-stop-at-budget"])
    o = config_from_args(args).method_options
    assert o.lambda_gan == 0.5 and not o.stop_at_budget
    # a flipped default: the old switch (--stop-at-budget) still parses, and sets the new default
    for argv in ([], ["--stop-at-budget"]):
        args = build_parser().parse_args(["compress", "--out", "x", "--method", "slim", *argv])
        assert config_from_args(args).method_options.stop_at_budget
    assert config_from_args(build_parser().parse_args(["compress", "--out", "x"])).search.spend_capacity
    assert not config_from_args(build_parser().parse_args(["compress", "--out", "x", "--no-spend-capacity"])).search.spend_capacity


def test_a_method_config_section_is_written_only_for_its_own_runs():
    d = CompressConfig(method="prune").to_dict()
    assert d["prune"] == {"op": "conv3x3", "steps": 500, "init": "teacher"} and "ofa" not in d and "slim" not in d
    assert not {"ofa", "slim", "prune"} & set(CompressConfig(method="agd").to_dict())


# ---- layers -------------------------------------------------------------------------------------
LAYER = {"cli": 0, "api": 1, "cli_options": 2, "pipeline": 2, "config": 2, "methods": 3}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, imported names) for every import in the file, lazy ones included."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("gancompress"):
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("gancompress"):
                    yield a.name, []


def _layer(mod: str) -> int:
    head = mod.split(".")[1] if mod.count(".") else ""
    return LAYER.get(head, 4)


def test_layers_point_one_way_and_no_private_names_cross_modules():
    problems = []
    for path in PKG.rglob("*.py"):
        mod = _module_name(path)
        for target, names in _imports(path):
            if mod != "gancompress" and _layer(target) < _layer(mod):
                problems.append(f"{mod} imports the higher layer {target}")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and target != mod:
                problems.append(f"{mod} imports private {private} from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_at_module_level():
    graph = {}
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        mod = _module_name(path)
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        graph[mod] = set()
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for n in top:
            if isinstance(n, ast.ImportFrom) and n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                target = ".".join(base + ([n.module] if n.module else []))
                for name in n.names:  # `from . import x` imports the submodule x
                    sub = f"{target}.{name.name}"
                    graph[mod].add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                                   else target)
    seen, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in seen:
            return
        stack.append(m)
        for t in graph.get(m, ()):
            if t != m and not m.startswith(t + "."):  # a module importing its own package's __init__
                visit(t)
        stack.pop()
        seen.add(m)

    for m in graph:
        visit(m)


# ---- the fourth method: one-shot magnitude pruning ---------------------------------------------
def test_magnitude_scores_keep_the_strongest_filters():
    from gancompress.budget import Budget
    from gancompress.methods.channels import GatedStudent, kept_channels, threshold_for_budget
    from gancompress.methods.channels import magnitude_scores
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    torch.manual_seed(0)
    cfg = SpaceConfig(nf=16, n_cells=2, n_layers=3)
    g = GatedStudent(WidthSpace(frame_template(cfg, "sr", 4), 2, 3, "conv3x3"))
    pos = g.space.names.index(next(n for n in g.space.names if n != "nf" and n != "up"))
    writer = next(name for name, (o, _) in g.map.convs.items() if o == pos)
    conv = dict(g.net.named_modules())[writer]
    with torch.no_grad():
        conv.weight[[2, 5]] *= 50  # two filters far stronger than the rest
    scores = magnitude_scores(g)
    for s in scores:  # ranks as fractions: the same threshold cuts the same share of every layer
        assert sorted(s.tolist()) == [(i + 1) / s.numel() for i in range(s.numel())]
    budget = g.space.macs(tuple(max(1, w // 3) for w in g.space.max_config()))
    kept = kept_channels(g, threshold_for_budget(g, Budget.macs(budget), scores), scores)
    assert {2, 5} <= set(kept[pos].tolist())
    assert g.space.macs(tuple(int(k.numel()) for k in kept)) <= budget


def test_prune_end_to_end_sr(tiny_teacher, tiny_data, tmp_path):
    """`--prune-init space`: the widest space network, distilled first, then cut."""
    from gancompress.api import compress

    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", method="prune", budget="1/6")
    cfg.method_options.steps = 4
    cfg.method_options.init = "space"
    cfg.search.n_layers = 3
    m = compress(cfg)
    assert m["method"] == "prune" and m["within_budget"]
    assert m["student_macs"] == m["student_macs_flopcounter"]
    info = json.loads((tmp_path / "run" / "search" / "prune.json").read_text())
    assert info["pruned_from"] == "space"
    assert any(info["widths"][k] < info["widest"][k] for k in info["widths"])
    assert (tmp_path / "run" / "search" / "prune_train.ckpt").is_file()


def test_prune_cuts_an_esrgan_teacher_read_as_a_graph(tiny_teacher, tiny_data, tmp_path):
    """`--prune-init graph` on a layout the skeleton cannot express: the teacher's traced graph is
    cut (RRDB: dense concatenations, scaled residual adds, nearest up-sampling)."""
    from gancompress.api import compress
    from gancompress.export.student import load_student

    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", method="prune", budget="1/3")
    cfg.method_options.init = "graph"
    m = compress(cfg)
    assert m["method"] == "prune" and m["within_budget"]
    assert m["student_macs"] == m["student_macs_flopcounter"]
    info = json.loads((tmp_path / "run" / "search" / "prune.json").read_text())
    assert info["pruned_from"] == "teacher graph" and 0 < info["kept_fraction"] < 1
    assert sum(info["widths"]) < sum(info["widest"])
    assert not (tmp_path / "run" / "search" / "prune_train.ckpt").exists()  # no space network trained
    student, spec = load_student(tmp_path / "run" / "student")
    assert spec.graph is not None and student(torch.rand(1, 3, 12, 10)).shape == (1, 3, 48, 40)


def test_prune_cuts_a_cyclegan_teacher_itself(tmp_path, capsys):
    from gancompress.cli import main
    from gancompress.data.images import save_image
    from gancompress.teachers.zoo_translate import ResnetGenerator

    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), tmp_path / "G.pth")
    for split, n in (("train", 3), ("eval", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            save_image(torch.rand(3, 64, 64), tmp_path / split / f"{i}.png")
    out = tmp_path / "run"
    code = main(["compress", "--task", "translate", "--method", "magnitude-pruning", "--teacher",
                 f"cyclegan:{tmp_path / 'G.pth'}", "--train-data", str(tmp_path / "train"), "--eval-data",
                 str(tmp_path / "eval"), "--budget", "1/3", "--out", str(out), "--size", "64", "--retrain-steps", "3",
                 "--patch", "32", "--batch", "2", "--latency-size", "64", "--latency-repeats", "1", "--quiet",
                 "--loss", "l1"])
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "prune" and cfg["prune"]["init"] == "teacher"
    info = json.loads((out / "search" / "prune.json").read_text())
    assert info["pruned_from"] == "teacher" and info["widest"]["nf"] == 16  # the teacher's 4 * ngf trunk
    m = json.loads((out / "metrics.json").read_text())
    assert m["within_budget"] and m["student_macs"] <= m["budget_macs"]
    assert not (out / "search" / "prune_train.ckpt").exists()  # the teacher needs no training first


@pytest.mark.parametrize("steps", ["-1"])
def test_prune_options_are_checked(steps, capsys):
    from gancompress.cli import main

    code = main(["compress", "--method", "prune", "--prune-steps", steps, "--out", "x"])
    assert code == 2 and "--prune-steps" in capsys.readouterr().err


def test_demo_help_shows_the_defaults_the_demo_runs_with():
    from gancompress.config import DEMO_DEFAULTS

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    text = " ".join(demo.format_help().split())
    for task in ("sr", "translate"):
        cfg = config_from_args(build_parser().parse_args(["demo", "--task", task]), demo=True)
        assert cfg.retrain.steps == DEMO_DEFAULTS[task]["retrain_steps"]
        assert cfg.search.n_cells == DEMO_DEFAULTS[task]["cells"]
    from gancompress.config import run_defaults

    for key in ("retrain_steps", "warmup_steps", "cells"):
        sr, tr, li = (run_defaults(t, demo=True)[key] for t in ("sr", "translate", "label2image"))
        assert (sr, tr) == (DEMO_DEFAULTS["sr"][key], DEMO_DEFAULTS["translate"][key])
        assert f"(default {sr} for sr, {tr} for translate, {li} for label2image)" in text, key


def test_version_flag(capsys):
    from gancompress import __version__
    from gancompress.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"gancompress {__version__}"


def test_subnet_flag_and_its_old_name():
    from gancompress.cli import build_parser
    from gancompress.cli_options import config_from_args

    for flag in ("--subnet", "--config"):  # --config: the old, deprecated spelling
        args = build_parser().parse_args(["compress", "--method", "ofa", flag, "8_8_8", "--out", "x"])
        assert config_from_args(args).method_options.config == "8_8_8"


def test_every_option_has_help_and_every_command_an_example():
    from gancompress.cli import build_parser

    for name, sp in build_parser()._subparsers._group_actions[0].choices.items():
        missing = [a.option_strings or a.dest for a in sp._actions if not a.help]
        assert not missing, (name, missing)
        assert f"examples:\n  gancompress {name}" in sp.format_help(), name


def test_verbosity_flags_set_the_gancompress_logger(capsys):
    import logging

    from gancompress.cli import main
    from gancompress.errors import warn
    from gancompress.log import info, logger

    try:
        for flags, level in (([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.DEBUG)):
            main(["profile", "nope:x", *flags])
            assert logger.level == level, flags
        capsys.readouterr()
        info("a message")  # -v: shown; on stderr, never mixed into a command's stdout results
        warn("careful")
        err = capsys.readouterr()
        assert err.out == "" and "a message" in err.err and "warning: careful" in err.err
        main(["profile", "nope:x", "-q"])
        info("hidden")
        assert "hidden" not in capsys.readouterr().err
    finally:
        logger.setLevel(logging.INFO)

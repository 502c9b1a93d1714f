"""Every bad input named in the foundation issue: exit code 2, one `error:` line, nothing written."""

import json

import pytest
import torch

from conftest import tiny_config
from gancompress.cli import main

TINY = ["--nf", "8", "--cells", "2", "--layers", "2", "--search-patch", "8", "--search-batch", "2",
        "--warmup-steps", "1", "--search-steps", "2", "--retrain-steps", "2", "--patch", "8", "--batch", "2",
        "--latency-size", "32", "--latency-repeats", "1", "--quiet", "--init-steps", "3"]


def run_cli(capsys, args):
    code = main(args)
    err = capsys.readouterr().err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    return code, err, (lines[0] if lines else "")


def compress_args(teacher, train, evald, out, *extra):
    return ["compress", "--teacher", teacher, "--train-data", train, "--eval-data", evald, "--budget", "1/4",
            "--out", str(out), *TINY, *extra]


@pytest.fixture
def args(tiny_teacher, tiny_data, tmp_path):
    train, evald = tiny_data
    return lambda **kw: compress_args(kw.get("teacher", tiny_teacher), kw.get("train", train),
                                      kw.get("evald", evald), kw.get("out", tmp_path / "run"), *kw.get("extra", ()))


def assert_clean_error(code, err, line, *words):
    assert code == 2
    assert "Traceback" not in err
    assert line, err
    for w in words:
        assert w in line, (w, line)


def test_missing_data_folder(args, capsys, tmp_path):
    code, err, line = run_cli(capsys, args(train=str(tmp_path / "nope")))
    assert_clean_error(code, err, line, "does not exist", "--train-data")
    assert not (tmp_path / "run").exists()


def test_empty_data_folder(args, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err, line = run_cli(capsys, args(train=str(tmp_path / "empty")))
    assert_clean_error(code, err, line, "empty")


def test_folder_without_images(args, capsys, tmp_path):
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "notes.txt").write_text("hi")
    code, err, line = run_cli(capsys, args(train=str(tmp_path / "txt")))
    assert_clean_error(code, err, line, "no images in")


def test_corrupt_image_named_and_skipped_when_others_remain(args, capsys, tmp_path, tiny_data):
    import shutil

    train = tmp_path / "mixed"
    shutil.copytree(tiny_data[0], train)
    (train / "broken.png").write_bytes(b"\x89PNG not really")
    code = main(args(train=str(train), out=tmp_path / "r2"))
    err = capsys.readouterr().err
    assert code == 0 and "broken.png" in err and "warning" in err
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "broken.png").write_bytes(b"garbage")
    code, err, line = run_cli(capsys, args(train=str(tmp_path / "only"), out=tmp_path / "r3"))
    assert_clean_error(code, err, line, "broken.png")


def test_images_smaller_than_the_patch(args, capsys, tmp_path):
    from gancompress.data.images import save_image

    save_image(torch.rand(3, 20, 20), tmp_path / "small" / "a.png")
    code, err, line = run_cli(capsys, args(train=str(tmp_path / "small")))
    assert_clean_error(code, err, line, "a.png")


def test_checkpoint_that_does_not_fit(tmp_path, capsys):
    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_sr_spec
    from gancompress.export.student import save_student

    save_student(build_student(uniform_sr_spec(4, 8, 2, 2)), uniform_sr_spec(4, 8, 2, 2), tmp_path / "s")
    uniform_sr_spec(4, 8, 1, 2).save(tmp_path / "s" / "spec.json")  # a spec of another architecture
    code, err, line = run_cli(capsys, ["profile", str(tmp_path / "s" / "student.safetensors")])
    assert_clean_error(code, err, line, "does not fit", "unexpected keys", "student.safetensors")


def test_teacher_checkpoint_that_does_not_fit(args, capsys, tmp_path):
    from safetensors.torch import save_file

    save_file({"conv_first.weight": torch.zeros(8, 3, 3, 3), "junk.weight": torch.zeros(1)}, str(tmp_path / "t.safetensors"))
    code, err, line = run_cli(capsys, args(teacher=f"esrgan:{tmp_path / 't.safetensors'}"))
    assert_clean_error(code, err, line, "t.safetensors")
    assert "missing" in line or "unexpected" in line


def test_unknown_teacher_kind(args, capsys):
    code, err, line = run_cli(capsys, args(teacher="stylegan:foo.pth"))
    assert_clean_error(code, err, line, "unknown teacher kind", "srgan")


def test_budget_below_the_smallest_network(args, capsys, tmp_path):
    code, err, line = run_cli(capsys, args(extra=["--budget", "1M"]))
    assert_clean_error(code, err, line, "below the smallest network", "at least")
    assert not (tmp_path / "run").exists()


def test_budget_above_the_teacher(args, capsys):
    code, err, line = run_cli(capsys, args(extra=["--budget", "100G"]))
    assert_clean_error(code, err, line, "not below the teacher")


def test_unsupported_scale(args, capsys):
    code, err, line = run_cli(capsys, args(extra=["--scale", "8"]))
    assert_clean_error(code, err, line, "unsupported scale x8")


def test_teacher_scale_disagrees(args, capsys):
    code, err, line = run_cli(capsys, args(extra=["--scale", "2"]))
    assert_clean_error(code, err, line, "x4")


def test_existing_run_with_a_different_config_is_refused(tiny_teacher, tiny_data, tmp_path, capsys):
    from gancompress.api import compress

    train, evald = tiny_data
    out = tmp_path / "run"
    compress(tiny_config(tiny_teacher, train, evald, out, retrain=__import__(
        "gancompress.distill.train", fromlist=["TrainConfig"]).TrainConfig(steps=2, patch=8, batch=2)))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err, line = run_cli(capsys, compress_args(tiny_teacher, train, evald, out, "--seed", "5"))
    assert_clean_error(code, err, line, "different config", "--force", "seed")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_not_a_run_directory_is_not_overwritten(args, capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, err, line = run_cli(capsys, args(out=out))
    assert_clean_error(code, err, line, "not empty", "--force")
    assert (out / "precious.txt").read_text() == "keep me"


def test_spec_file_errors(tmp_path, capsys):
    (tmp_path / "spec.json").write_text(json.dumps({"task": "sr"}))
    code, err, line = run_cli(capsys, ["profile", str(tmp_path / "spec.json")])
    assert_clean_error(code, err, line, "spec")


@pytest.mark.parametrize("extra, words", [
    (["--budget", ""], ["empty --budget"]),
    (["--budget", "40fps"], ["cannot read budget", "40ms"]),
    (["--budget", "1/10:fps"], ["unknown budget unit", "ms"]),
    (["--budget", "40ms:ms"], ["fraction of the teacher"]),
    (["--budget-size", "720*1280"], ["--budget-size", "720x1280"]),
    (["--budget", "1/10", "--latency-threads", "0"], ["--latency-threads"]),
    (["--device", "gpu"], ["--device"]),
    (["--batch", "0"], ["--batch must be >= 1"]),
    (["--widths", "1/3,2"], ["--widths"]),
    (["--lr-arch", "0"], ["--lr-arch must be positive"]),
    (["--arch-weight-decay", "-0.1"], ["--arch-weight-decay must be zero or positive"]),
    (["--band", "1.5"], ["--band must be between 0 and 1"]),
    (["--perceptual-weights", "/nonexistent/vgg19.pth"], ["not found"]),
    (["--unshuffle", "2", "--upsampler", "progressive", "--up-width", "8"], ["--unshuffle 2", "pixelshuffle"]),
])
def test_bad_options(args, capsys, tmp_path, extra, words):
    code, err, line = run_cli(capsys, args(extra=extra))
    assert_clean_error(code, err, line, *words)
    assert not (tmp_path / "run").exists()


class _X2(torch.nn.Module):
    def forward(self, x):
        return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


def test_fixed_shape_exported_teacher(args, capsys, tmp_path):
    ep = torch.export.export(_X2(), (torch.rand(1, 3, 16, 16),))  # static H, W
    torch.export.save(ep, str(tmp_path / "fixed.pt2"))
    code, err, line = run_cli(capsys, args(teacher=f"export:{tmp_path / 'fixed.pt2'}", extra=["--scale", "2"]))
    assert_clean_error(code, err, line, "re-export", "dynamic")


def test_black_box_teacher_scale_is_checked_before_anything_is_written(args, capsys, tmp_path):
    torch.jit.save(torch.jit.trace(_X2(), torch.rand(1, 3, 8, 8)), str(tmp_path / "x2.ts"))
    code, err, line = run_cli(capsys, args(teacher=f"torchscript:{tmp_path / 'x2.ts'}",
                                                  extra=["--trust-teacher-code"]))  # --scale 4 default
    assert_clean_error(code, err, line, "x2", "--scale 2")
    assert not (tmp_path / "run").exists()


def test_budget_just_below_the_space_suggests_a_narrower_trunk(args, capsys, tmp_path):
    from gancompress.arch.cost import spec_macs
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.space import SpaceConfig, frame_template

    s = SpaceConfig(nf=8, n_cells=2, n_layers=2)
    lo = spec_macs(make_supernet(s, frame_template(s, "sr", 4)).min_spec())
    code, err, line = run_cli(capsys, args(extra=["--budget", str(lo - 1)]))
    assert_clean_error(code, err, line, "below the smallest network", "--nf 7")


def test_translation_views_refused_for_sr(args, capsys, tmp_path):
    code, err, line = run_cli(capsys, args(extra=["--views", "4"]))
    assert_clean_error(code, err, line, "--views", "--task translate")
    assert not (tmp_path / "run").exists()

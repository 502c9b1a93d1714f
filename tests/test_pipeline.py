"""End to end: a tiny compress run, its outputs, resume, no-op re-run, and the user-facing commands."""

import json
import os

import pytest
import torch

from conftest import interrupted_fit, tiny_config
from gancompress.budget import Budget
from gancompress.arch.cost import spec_macs
from gancompress.cli import main
from gancompress.api import compress
from gancompress.export.student import load_student, onnx_runner


@pytest.fixture(scope="module")
def finished_run(tiny_teacher, tiny_data, tmp_path_factory):
    train, evald = tiny_data
    out = tmp_path_factory.mktemp("runs") / "agd"
    cfg = tiny_config(tiny_teacher, train, evald, out)
    metrics = compress(cfg)
    return cfg, out, metrics


def test_compress_produces_a_complete_run(finished_run):
    cfg, out, m = finished_run
    for f in ["config.json", "metrics.json", "report.md", "student/spec.json", "student/student.safetensors",
              "student/student.onnx", "search/spec.json"]:
        assert (out / f).is_file(), f
    assert list((out / "crops").glob("*.png"))
    assert m["within_budget"] and m["student_macs"] <= m["budget_macs"]
    assert m["student_macs"] == m["student_macs_flopcounter"]
    assert m["student_macs"] < m["teacher_macs"]
    assert m["images"] == 2 and m["latency_ratio_torch"] > 0
    report = (out / "report.md").read_text()
    assert "PSNR-Y" in report and "FlopCounterMode" in report
    assert "(macs_quality.png)" in report and (out / "macs_quality.png").is_file()


def test_student_loads_back_in_one_call_and_onnx_matches(finished_run):
    _, out, m = finished_run
    model, spec = load_student(out)
    assert spec_macs(spec) == m["student_macs"]
    x = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        ref = model(x)
    got = onnx_runner(out / "student" / "student.onnx")(x)
    assert ref.shape == (1, 3, 76, 92)
    assert (got - ref).abs().max().item() < 1e-4


def test_rerunning_a_finished_run_does_nothing(finished_run):
    cfg, out, m = finished_run
    weights = out / "student" / "student.safetensors"
    before = (weights.stat().st_mtime_ns, (out / "stages.json").read_text())
    again = compress(cfg)
    assert again["student_macs"] == m["student_macs"]
    assert (weights.stat().st_mtime_ns, (out / "stages.json").read_text()) == before


def test_retraining_resumes_after_an_interrupt_exactly(tmp_path):
    """Interrupt fit_pixels mid-way; the resumed run ends with the same weights as an uninterrupted one."""
    from gancompress.distill.train import fit_pixels

    model_a, fresh, cfg = interrupted_fit(tmp_path, 71)
    model_c, sampler_c = fresh()  # a new process: fresh objects, state from the checkpoint
    fit_pixels(model_c, sampler_c, cfg, tmp_path / "b.ckpt", "b", quiet=True)
    for (k, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        assert torch.equal(a, c), k


def test_uniform_baseline_fills_the_budget(tiny_teacher, tiny_data, tmp_path):
    from gancompress.methods.space import uniform_spec_for_budget

    train, evald = tiny_data
    cfg = tiny_config(tiny_teacher, train, evald, tmp_path / "u", method="uniform")
    spec = uniform_spec_for_budget(cfg, Budget.macs(200_000_000))
    assert spec_macs(spec) <= 200_000_000
    wider = type(spec).from_dict({**spec.to_dict(), "nf": spec.nf + 1,
                                  "cells": [[[op, spec.nf + 1] for op, _ in c] for c in spec.to_dict()["cells"]]})
    assert spec_macs(wider) > 200_000_000
    assert all(l.op == "conv3x3" and l.width == spec.nf for c in spec.cells for l in c)


def test_cli_profile_export_upscale_eval(finished_run, tiny_data, tmp_path, capsys):
    _, out, _ = finished_run
    _, evald = tiny_data
    assert main(["profile", str(out), "--size", "32", "--repeats", "1", "--json"]) == 0
    prof = json.loads(capsys.readouterr().out)
    assert prof["kind"] == "student" and prof["macs"] == prof["spec_macs"] * 32 * 32 // (256 * 256)
    assert main(["export", str(out), "--onnx", str(tmp_path / "s.onnx"), "--json"]) == 0
    assert (tmp_path / "s.onnx").is_file()
    assert json.loads(capsys.readouterr().out)["onnx"] == str(tmp_path / "s.onnx")  # stdout: only the JSON
    img = sorted(os.listdir(evald))[0]
    assert main(["upscale", str(out), os.path.join(evald, img), "--out", str(tmp_path / "up"), "--json"]) == 0
    from gancompress.data.images import load_image

    written = json.loads(capsys.readouterr().out)["written"]
    up = load_image(tmp_path / "up" / (os.path.splitext(img)[0] + "_x4.png"))
    assert written == [str(tmp_path / "up" / (os.path.splitext(img)[0] + "_x4.png"))]
    assert up.shape[-2:] == (384, 384)
    assert main(["eval", str(out), "--eval-data", evald, "--quiet"]) == 0
    assert "student_psnr_y" in capsys.readouterr().out
    assert main(["eval", str(out), "--eval-data", evald, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 2 and "student_psnr_y" in res


def test_int8_export_runs_and_stays_close_to_fp32(finished_run, capsys, tmp_path):
    """ONNX Runtime static QDQ quantization of the student, calibrated on the run's training images.
    Stated bound for this tiny, barely trained student: int8 within 30 dB PSNR-Y of fp32."""
    from gancompress.cli import main

    _, out, _ = finished_run
    assert main(["export", str(out), "--int8"]) == 0
    q = json.loads((out / "int8.json").read_text())
    assert (out / "student" / "student_int8.onnx").is_file() and q["size_ratio"] > 0  # tiny: QDQ overhead dominates
    assert q["int8_vs_fp32"] > 30 and q["calibration_images"] >= 1
    assert abs(q["int8_psnr_y"] - q["fp32_psnr_y"]) < 3 and q["teacher_psnr_y"] > 0  # against the ground truth too
    # SR default recipe: conv, LeakyReLU and add run as int8 kernels; the bicubic skip stays float
    assert q["recipe"] == "qlinear" and "LeakyRelu" not in q["float_ops"] and "Conv" in q["float_ops"]
    assert any(n.startswith("/skip/") for n in q["float_nodes"])
    assert main(["export", str(out), "--int8", "--int8-recipe", "conv"]) == 0
    q = json.loads((out / "int8.json").read_text())
    assert q["recipe"] == "conv" and q["int8_vs_fp32"] > 30 and any(n.startswith("/upsampler/") for n in q["float_nodes"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(out), "--int8", "--calib-data", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err

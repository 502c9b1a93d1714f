"""Tests for gancompress.metrics.sr and the report helpers (tables, image rows)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from gancompress.data.degrade import bicubic_upscale
from gancompress.data.sr_sets import load_sr_eval_set
from gancompress.metrics.sr import psnr_rgb, psnr_y, rgb_to_y, ssim_y
from gancompress.report.images import pick_crop, side_by_side
from gancompress.report.markdown import markdown_table, write_report

SHARED = Path(__file__).resolve().parents[2] / "shared"
SR_DATA = SHARED / "data" / "sr"


def test_rgb_to_y_matlab_values():
    black, white = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    assert float(rgb_to_y(black)) == pytest.approx(16.0)
    assert float(rgb_to_y(white)) == pytest.approx(235.0, abs=1e-9)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert float(rgb_to_y(red)) == pytest.approx(16 + 65.481)
    assert rgb_to_y(torch.rand(2, 3, 4, 5)).shape == (2, 4, 5)


def test_psnr_identical_is_inf():
    x = torch.randint(0, 256, (3, 20, 20)).float() / 255
    assert psnr_y(x, x, 4) == math.inf
    assert psnr_rgb(x, x) == math.inf
    # values that quantize to the same 8-bit level are identical too
    assert psnr_rgb(x, x + 0.1 / 255) == math.inf


def test_psnr_rgb_known_noise():
    # +-d levels on every pixel (exact on the 8-bit grid): MSE = d^2
    g = torch.Generator().manual_seed(0)
    hr = torch.randint(10, 246, (3, 32, 32), generator=g).float() / 255
    sign = torch.randint(0, 2, (3, 32, 32), generator=g).float() * 2 - 1
    sr = hr + sign * 5 / 255
    assert psnr_rgb(sr, hr) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-6)


def test_psnr_y_known_offset_and_border():
    hr = torch.full((3, 16, 16), 100 / 255)
    sr = hr.clone()
    sr[:, 4:12, 4:12] += 10 / 255  # grey offset of 10 levels -> Y offset of 10 * 219/255
    dy = 10 * (65.481 + 128.553 + 24.966) / 255
    assert psnr_y(sr, hr, border=4) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-6)
    # with no border, only a quarter of the pixels differ
    assert psnr_y(sr, hr, border=0) == pytest.approx(10 * math.log10(255**2 / (dy**2 / 4)), abs=1e-6)
    # errors outside the cropped border are ignored
    sr2 = hr.clone()
    sr2[:, :2, :] = 0
    assert psnr_y(sr2, hr, border=2) == math.inf


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        psnr_y(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(ValueError):
        ssim_y(torch.rand(3, 16, 16), torch.rand(3, 17, 16))


def test_ssim_identical_is_one_and_noise_lower():
    x = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(1))
    assert ssim_y(x, x, 4) == pytest.approx(1.0, abs=1e-12)
    noisy = (x + 0.1 * torch.randn(3, 40, 40, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    s = ssim_y(noisy, x, 4)
    assert 0.0 < s < 0.99
    # batched input gives the mean of the per-image values
    b = ssim_y(torch.stack([x, noisy]), torch.stack([x, x]), 4)
    assert b == pytest.approx((1.0 + s) / 2)


@pytest.mark.parametrize("name,expected", [("Set5", 28.63), ("Set14", 26.22)])
def test_bicubic_baseline_psnr_on_shared_sets(name, expected):
    folder = SR_DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not present (shared test data is only in the dev checkout)")
    triples = load_sr_eval_set(folder, 4)
    values = [psnr_y(bicubic_upscale(lr, 4), hr, border=4) for _, lr, hr in triples]
    assert sum(values) / len(values) == pytest.approx(expected, abs=0.05)


def test_markdown_table_and_report(tmp_path):
    rows = [
        {"model": "teacher", "psnr": 30.6612, "params": 734000},
        {"model": "a|b", "psnr": None, "params": 1200},
    ]
    cols = [("model", "Model", None), ("psnr", "PSNR-Y (dB)", ".2f"), ("params", "Params", "{:,}")]
    table = markdown_table(rows, cols)
    lines = table.strip().split("\n")
    assert lines[0] == "| Model | PSNR-Y (dB) | Params |"
    assert lines[1] == "| --- | ---: | ---: |"
    assert lines[2] == "| teacher | 30.66 | 734,000 |"
    assert lines[3] == "| a\\|b | n/a | 1,200 |"
    out = write_report(tmp_path / "r" / "report.md", "Run", [("Quality", table), ("Notes", "ok\n")])
    text = out.read_text()
    assert text.startswith("# Run\n") and "## Quality" in text and "| teacher |" in text
    assert [p.name for p in out.parent.iterdir()] == ["report.md"]  # no temp file left


def test_side_by_side_and_pick_crop(tmp_path):
    hr = torch.full((3, 64, 64), 0.5)
    hr[:, 40:56, 8:24] = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    top, left, h, w = pick_crop(hr, 16, seed=0, candidates=200)
    assert (h, w) == (16, 16)
    assert abs(top - 40) < 8 and abs(left - 8) < 8  # lands on the textured patch
    assert pick_crop(hr, 16, seed=0, candidates=200) == (top, left, h, w)
    assert pick_crop(torch.rand(3, 10, 12), 16, 0)[2:] == (10, 12)
    out = side_by_side(
        [("LR (nearest)", hr), ("bicubic", hr), ("HR", hr)], tmp_path / "cmp" / "x.png", crop=(top, left, h, w)
    )
    im = Image.open(out)
    assert im.mode == "RGB" and im.height > 16 and im.width >= 3 * 16


def test_crops_are_of_the_images_furthest_from_the_teacher():
    """quality() keeps the outputs of the k images with the lowest PSNR to the teacher, worst
    first, without holding every image's."""
    import torch

    from gancompress.evaluate import quality

    offsets = {0.1: 0.02, 0.3: 0.20, 0.5: 0.01, 0.7: 0.10, 0.9: 0.05}  # input level -> student error

    def teacher(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    def student(x):
        return teacher(x) + offsets[round(float(x.mean()), 1)]

    eval_set = [(f"im{v}", torch.full((3, 8, 8), v), torch.full((3, 16, 16), v)) for v in offsets]
    _, rows, kept = quality(student, teacher, eval_set, 2, quiet=True, keep_outputs=3)
    worst = [r["image"] for r in sorted(rows, key=lambda r: r["psnr_to_teacher"])[:3]]
    assert [k[0] for k in kept] == worst == ["im0.3", "im0.7", "im0.9"]

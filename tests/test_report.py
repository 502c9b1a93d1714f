"""The HTML report and `gancompress report`: drawn from a run directory, self-contained, every
figure rendered by a real headless browser."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import tiny_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def two_runs(tiny_teacher, tiny_data, tmp_path_factory):
    """An AGD run (with its int8 export, so the report has fp32-vs-int8 images) and a uniform one."""
    from gancompress.api import compress, export_run

    train, evald = tiny_data
    root = tmp_path_factory.mktemp("report_runs")
    compress(tiny_config(tiny_teacher, train, evald, root / "agd"))
    export_run(str(root / "agd"), int8=True)
    compress(tiny_config(tiny_teacher, train, evald, root / "uniform", method="uniform"))
    return root / "agd", root / "uniform"


def _images(page: str) -> int:
    return page.count('<img class="plot"') + page.count('<img class="crop"')


def test_run_report_is_self_contained_with_every_section(two_runs):
    agd, _ = two_runs
    page = (agd / "report.html").read_text()
    assert "src=\"data:image/png;base64," in page and "src=\"crops/" not in page  # images inlined
    for section in ("Where the student sits", "AGD search: validation loss", "adaptive weight",
                    "every architecture the search derived", "Training curves", "training: retrain",
                    "furthest from the teacher", "fp32 vs int8", "Architecture"):
        assert section in page, section
    crops = sorted((agd / "crops").glob("*.png"))
    assert len(crops) == 2 and page.count('<img class="crop"') == 4  # 2 worst images + their int8 sheets
    # the training curve is written as the loop runs, one point per checkpoint
    curve = json.loads((agd / "retrain.curve.json").read_text())
    assert curve["points"][-1]["step"] == 10 and curve["points"][-1]["loss"] > 0


def test_report_command_redraws_and_compares_runs(two_runs, tmp_path, capsys):
    from gancompress.cli import main

    agd, uni = two_runs
    (agd / "report.html").unlink()
    assert main(["report", str(agd), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(agd / "report.html")
    assert (agd / "report.html").is_file()
    out = tmp_path / "cmp.html"
    assert main(["report", str(agd), str(uni), "--out", str(out)]) == 0
    page = out.read_text()
    assert "2 runs compared" in page and "share the teacher" in page
    assert page.count("<tr>") == 3 and ">agd<" in page and ">uniform<" in page
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_charts_fall_back_to_pil_without_matplotlib(two_runs, tmp_path, monkeypatch):
    from PIL import Image
    import io

    import gancompress.report.charts as charts
    from gancompress.report.html_report import write_html_report

    monkeypatch.setattr(charts, "have_matplotlib", lambda: False)
    page = write_html_report(two_runs[0], tmp_path / "pil.html").read_text()
    assert "drawn with PIL" in page and _images(page) >= 8
    png = charts.render(charts.Chart("t", "x", "y", [charts.Series("s", [(0, 1), (1, 2)], line=True)]))
    assert Image.open(io.BytesIO(png)).size == (640, 380)


@pytest.mark.skipif(CHROMIUM is None, reason="needs a real headless browser: Debian's chromium package "
                                              "(apt-get install chromium)")
def test_html_report_renders_in_a_real_browser(two_runs, tmp_path):
    """Every image decodes in Chromium, and the screenshot shows each figure framed and not blank."""
    from PIL import Image
    from scipy import ndimage

    from gancompress.report.html_report import CROP_FRAME, PLOT_FRAME

    page = two_runs[0] / "report.html"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage"]
    dom = subprocess.run([*base, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'data-ready="yes"' in dom  # the page's own check: every <img> decoded
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1360,7000", page.as_uri()], capture_output=True,
                   timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    n_plots, n_crops = 0, 0
    for colour in (PLOT_FRAME, CROP_FRAME):
        rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
        mask = (np.abs(img - rgb).sum(-1) <= 6)
        labels, n = ndimage.label(mask)
        frames = []
        for sl in ndimage.find_objects(labels):
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            if h > 60 and w > 60:  # a frame around a figure, not a stray pixel of that colour
                inner = img[sl[0].start + 6:sl[0].stop - 6, sl[1].start + 6:sl[1].stop - 6]
                assert inner.std() > 10, f"a blank figure at {sl}"  # something is drawn inside
                frames.append(sl)
        if colour == PLOT_FRAME:
            n_plots = len(frames)
        else:
            n_crops = len(frames)
    text = page.read_text()
    assert n_plots == text.count('<img class="plot"') >= 8
    assert n_crops == text.count('<img class="crop"') == 4


def test_the_budget_line_says_when_the_measured_student_is_over_the_limit():
    from gancompress.report.run_report import budget_line

    b = {"unit": "ms", "limit": 40.0, "size": "256x256", "runtime": "ort-int8", "threads": 1, "student": 39.0}
    ok = budget_line({"budget": {**b, "student_measured": 38.0}, "within_budget": True})
    assert "within budget" in ok and "OVER" not in ok
    over = budget_line({"budget": {**b, "student_measured": 70.0}, "within_budget": True})
    assert "70.0 ms measured whole" in over and "OVER the limit as measured" in over

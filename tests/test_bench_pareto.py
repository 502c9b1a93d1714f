"""bench/pareto.py keeps the rows behind a table: run folders live in git-ignored bench/out and are
lost with the machine, so the rows are written beside the plot and merged back with --rows."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _row(run: str, seed: int, quality: float, machine: str) -> dict:
    return {"run": run, "method": "uniform", "budget": "1/5", "seed": seed, "gmacs": 1.0, "teacher_gmacs": 5.0,
            "params_m": 0.1, "mb": 0.4, "int8_mb": 0.1, "ratio_ort": 0.2, "ratio_torch": 0.2, "ratio_ort_int8": 0.1,
            "quality": quality, "teacher_quality": 30.0, "to_teacher": 35.0 + seed, "int8_delta_to_teacher": -0.1,
            "fid_to_teacher": None, "minutes": 1.0, "wall_minutes": 1.0, "peak_rss_mb": 100.0, "quick": False,
            "extra": [], "machine": machine}


def _pareto(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "pareto.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_rows_are_kept_beside_the_plot_and_merge_back(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows.jsonl").write_text(json.dumps(_row("uniform_1over5_s1", 1, 30.50, "CPU A (avx2)")) + "\n")
    kept = tmp_path / "kept.rows.jsonl"  # rows from another machine, one of them also in OUT
    kept.write_text(json.dumps(_row("uniform_1over5_s0", 0, 30.40, "CPU B (avx2, avx512f)")) + "\n"
                    + json.dumps(_row("uniform_1over5_s1", 1, 99.0, "CPU B (avx2, avx512f)")) + "\n")
    md = tmp_path / "BENCH.md"
    p = _pareto("demo", "--budgets", "1/5", "--methods", "uniform", "--out", str(out), "--from-rows",
                "--rows", str(kept), "--benchmarks", str(md), "--name", "T", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = md.read_text()
    assert "| uniform | 1/5 | 2 |" in text  # both seeds, OUT's row for s1 (30.50), not the file's 99.0
    assert "30.45 (0.10)" in text
    assert "Rows from 2 machines" in text
    tracked = tmp_path / "bench" / "sheets" / "pareto_t.rows.jsonl"
    assert {json.loads(x)["run"] for x in tracked.read_text().splitlines()} == {"uniform_1over5_s0",
                                                                               "uniform_1over5_s1"}
    bad = _pareto("demo", "--out", str(out), "--from-rows", "--rows", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert bad.returncode != 0 and "nope.jsonl" in bad.stderr and "Traceback" not in bad.stderr

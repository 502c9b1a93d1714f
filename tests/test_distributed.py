"""`torchrun` with two CPU ranks (gloo) runs the same compress and rank 0 writes one run directory."""

import os
import shutil
import subprocess
import sys

import pytest

from test_bad_input import TINY


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(
    os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
@pytest.mark.parametrize("method", ["agd", "ofa", "agd-latency"])
def test_torchrun_two_cpu_ranks(tiny_teacher, tiny_data, tmp_path, method):
    """agd-latency: a latency budget, timed by rank 0 only and shared with rank 1 (both ranks must
    price every candidate the same to stay in step)."""
    train, evald = tiny_data
    extra = ["--method", "ofa", "--ofa-steps", "4", "--population", "4", "--generations", "2"] if method == "ofa" else []
    if method == "agd-latency":
        extra = ["--budget", "1/3:ms", "--budget-size", "32x32"]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "gancompress.cli",
           "compress", "--teacher", tiny_teacher, "--train-data", train, "--eval-data", evald, "--budget", "1/4",
           "--out", str(out), *TINY, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANCOMPRESS_CACHE": str(tmp_path / "cache")}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "report.md").is_file() and (out / "student" / "student.onnx").is_file()
    if method == "agd-latency":
        import json

        m = json.loads((out / "metrics.json").read_text())
        assert m["budget"]["unit"] == "ms" and m["within_budget"]

"""`torchrun` with two CPU ranks (gloo) runs the same compress and rank 0 writes one run directory."""

import os
import shutil
import subprocess
import sys

import pytest

from test_bad_input import TINY


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(
    os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
@pytest.mark.parametrize("method", ["agd", "ofa"])
def test_torchrun_two_cpu_ranks(tiny_teacher, tiny_data, tmp_path, method):
    train, evald = tiny_data
    extra = ["--method", "ofa", "--ofa-steps", "4", "--population", "4", "--generations", "2"] if method == "ofa" else []
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "gancompress.cli",
           "compress", "--teacher", tiny_teacher, "--train-data", train, "--eval-data", evald, "--budget", "1/4",
           "--out", str(out), *TINY, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "report.md").is_file() and (out / "student" / "student.onnx").is_file()

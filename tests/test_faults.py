"""Fault injection (issue 13): tiny runs killed with SIGKILL at random points of every stage
(teacher targets, search, retrain, export, evaluate, int8), resumed, and compared with an
uninterrupted run; a full disk simulated in the writer; a torn checkpoint recovered.

Every run is a subprocess (tests/fault_harness.py plants the fault in it) with one thread, so the
uninterrupted reference and the resumed runs compute the same floats: what is compared is
bit-identical (tensors, ONNX files, crops, the deterministic metrics; not latencies).
"""

import concurrent.futures
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = str(Path(__file__).with_name("fault_harness.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WARMUP, SEARCH, RETRAIN = 10, 40, 120  # search checkpoints at 25, 50; retrain at 50, 100, 120
SEEDS = (0, 1, 2)


def compress_args(teacher, train, evald, out):
    return ["compress", "--teacher", teacher, "--train-data", train, "--eval-data", evald, "--budget", "1/4",
            "--nf", "8", "--cells", "2", "--layers", "2", "--search-patch", "8", "--search-batch", "2",
            "--warmup-steps", str(WARMUP), "--search-steps", str(SEARCH), "--retrain-steps", str(RETRAIN),
            "--patch", "8", "--batch", "2", "--latency-size", "32", "--latency-repeats", "1", "--quiet", "--init-steps", "3",
            "--threads", "1", "--out", str(out)]


def run(spec, args):
    p = subprocess.run([sys.executable, HARNESS, json.dumps(spec), *args], env=ENV, capture_output=True,
                       text=True, timeout=600)
    return p.returncode, p.stderr


CLEAN = {"mode": "none"}


def tensors_digest(path):
    from safetensors.torch import load_file

    t = load_file(str(path))  # not the file's bytes: safetensors orders its metadata at random
    return hashlib.sha256(b"".join(k.encode() + t[k].numpy().tobytes() for k in sorted(t))).hexdigest()


def digest(out: Path) -> dict:
    d = {}
    for f in ("teacher_targets.safetensors", "search/init.safetensors", "student/student.safetensors"):
        d[f] = tensors_digest(out / f)
    for f in ["search/spec.json", "student/spec.json", "student/student.onnx", "teacher.onnx",
              *sorted(str(p.relative_to(out)) for p in (out / "crops").glob("*.png"))]:
        d[f] = hashlib.sha256((out / f).read_bytes()).hexdigest()
    m = json.loads((out / "metrics.json").read_text())
    # not latencies, nor the ONNX check's difference on random inputs (drawn from the process's RNG)
    d["metrics"] = {k: v for k, v in m.items()
                    if "_ms_" not in k and "latency" not in k and k not in ("stage_seconds", "onnx_max_abs_diff")}
    d["stages"] = sorted(json.loads((out / "stages.json").read_text()))
    return d


def int8_digest(out: Path) -> dict:
    q = json.loads((out / "int8.json").read_text())
    return {"onnx": hashlib.sha256((out / "student" / "student_int8.onnx").read_bytes()).hexdigest(),
            **{k: v for k, v in q.items() if "_ms_" not in k and "latency" not in k and k != "int8_onnx"}}


def leftovers(out: Path) -> list:
    return [str(p) for p in out.rglob("*") if ".tmp" in p.name or p.name.endswith(".pre")]


@pytest.fixture(scope="module")
def reference(tiny_teacher, tiny_data, tmp_path_factory):
    train, evald = tiny_data
    out = tmp_path_factory.mktemp("faults") / "ref"
    args = compress_args(tiny_teacher, train, evald, out)
    code, err = run(CLEAN, args)
    assert code == 0, err
    code, err = run(CLEAN, ["export", str(out), "--int8", "--threads", "1"])
    assert code == 0, err
    return args, out, digest(out), int8_digest(out)


def plan(seed: int) -> list:
    """One random kill point in each stage, in the order the stages run."""
    r = random.Random(seed)
    step = lambda loop, lo, hi: {"mode": "step", "loop": loop, "k": r.randrange(lo, hi)}  # noqa: E731
    write = lambda match, k=1: {"mode": "write", "match": match, "k": k}  # noqa: E731
    call = lambda target, k=1: {"mode": "call", "target": target, "k": k}  # noqa: E731
    stages = {
        "targets": [call("gancompress.evaluate:predict_tiled", r.choice([1, 2])),
                    write("teacher_targets.json"), write("teacher_targets.safetensors")],
        "search": [step("AGD search", 0, WARMUP + SEARCH), write("search.ckpt", r.choice([1, 2])),
                   write("init.safetensors"), write("search/spec.json")],
        # the retrain kill of seed 0 comes after two checkpoints: its newest is then torn (below)
        "retrain": ([step("retrain", 101, RETRAIN)] if seed == 0 else
                    [step("retrain", 0, RETRAIN), write("retrain.ckpt", r.choice([1, 2, 3])),
                     write("student.safetensors")]),
        "export": [write("student.onnx"), call("gancompress.export.student:export_onnx")],
        "evaluate": [write("teacher.onnx"), call("gancompress.evaluate:quality"), call("gancompress.evaluate:speed"),
                     write("metrics.json")],
        "int8": [write("student_int8.onnx"), write("int8.json"), call("gancompress.export.int8:quantize_onnx_int8"),
                 call("onnxruntime.quantization:quantize_static")],
    }
    return [(name, r.choice(options)) for name, options in stages.items()]


def chain(seed, args, out):
    """Kill a run once in every stage, resuming in between; then finish it. Returns what happened."""
    log = []
    compress = [*args[:-1], str(out)]
    for stage, spec in plan(seed):
        cmd = ["export", str(out), "--int8", "--threads", "1"] if stage == "int8" else compress
        if stage == "int8":  # the compress chain has to be finished first
            code, err = run(CLEAN, compress)
            log.append(("finish compress", code, err))
        code, err = run(spec, cmd)
        log.append((stage, spec, code, err))
        ckpt = out / "retrain.ckpt"
        if stage == "retrain" and seed == 0:
            data = ckpt.read_bytes()
            ckpt.write_bytes(data[: len(data) // 2])  # torn: the resume must fall back to .prev
    code, err = run(CLEAN, ["export", str(out), "--int8", "--threads", "1"])
    log.append(("finish int8", code, err))
    return log


def test_killed_at_random_points_of_every_stage_resumes_to_the_same_result(reference, tmp_path):
    args, _, ref, ref8 = reference
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # the machine's two cores
        logs = dict(zip(SEEDS, pool.map(lambda s: chain(s, args, tmp_path / f"seed{s}"), SEEDS)))
    for seed, log in logs.items():
        out = tmp_path / f"seed{seed}"
        what = f"seed {seed}: {[(e[0], e[1]) for e in log]}"
        for entry in log:
            if entry[0].startswith("finish"):
                assert entry[1] == 0, (what, entry[2])
            else:
                stage, spec, code, err = entry
                assert code == -9, (what, stage, spec, code, err)  # the kill really happened in that stage
        assert not leftovers(out), (what, leftovers(out))
        assert digest(out) == ref, what
        assert int8_digest(out) == ref8, what
        if seed == 0:  # the process after the retrain kill found the torn checkpoint and said so
            after = log[[e[0] for e in log].index("retrain") + 1]
            assert "torn" in after[3] and "previous checkpoint" in after[3], after


def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes_when_space_is_freed(reference, tmp_path):
    """ENOSPC (a monkeypatched writer in the run's process) at the second retrain checkpoint, then at the
    teacher's ONNX export: each time exit 2, one line naming the file, no temporary file left; with
    space again the run finishes and equals the uninterrupted one."""
    args, _, ref, _ = reference
    out = tmp_path / "full"
    cmd = [*args[:-1], str(out)]
    for match, k in (("retrain.ckpt", 2), ("teacher.onnx", 1)):
        code, err = run({"mode": "enospc", "match": match, "k": k}, cmd)
        lines = [l for l in err.splitlines() if l.startswith("error:")]
        assert code == 2 and "Traceback" not in err and len(lines) == 1, err
        assert match in lines[0] and "ENOSPC" in lines[0] and "free some space" in lines[0], lines[0]
        assert not leftovers(out), leftovers(out)
    stages = json.loads((out / "stages.json").read_text())
    assert "retrain" in stages and "evaluate" not in stages  # stopped in evaluate, not marked done
    code, err = run(CLEAN, cmd)
    assert code == 0, err
    assert digest(out) == ref

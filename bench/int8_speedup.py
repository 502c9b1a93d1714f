"""How many times faster than the teacher a run's student is, fp32 and int8, on ONNX Runtime.

The run's `teacher.onnx`, `student/student.onnx` and `student/student_int8.onnx` (made by the
run, by `--qat`, or by `gancompress export RUN --int8`), timed in one process at one LR size and
thread count, interleaved round by round so a load change hits all three alike; medians. The
speed-up the issue's "int8 student >= 80x faster than the teacher's fp32" asks about is
teacher fp32 / student int8 here (the run's own int8.json times int8 vs fp32 at 128 px only).
At `--threads 1` the clock is the thread's CPU time (`latency.runtimes.busy_clock`), so another
job on the machine does not slow the 3 s teacher more than a 40 ms student; `--clock wall` for
the wall clock.

Each model, the teacher too, is called `--calls` times back to back per round and the fastest call
counts (warm caches: the latency a deployed model called frame after frame has, and what the
latency table's pieces are timed as); `--calls 1` times each call right after the others' (a student then runs
with the 3 s teacher's data in the caches: fp32 students 12-31 % slower on the session-37 Xeon), which is how
the speed-ups of sessions 31-36 were measured.

A JSON architecture spec in place of a run (`student/spec.json`, or one written by hand) is built
with random weights and exported fp32 and int8 (`export --int8`'s recipe) against `--teacher`:
speed does not depend on the weights, so a trained student's speed-up can be re-measured on
another CPU without its run folder.

    python bench/int8_speedup.py bench/out/srgan/agd_1over50_ms_c3l3_r20k [RUN...] --size 256 --threads 1
    python bench/int8_speedup.py bench/specs/srgan_w1_3res6conv.json --size 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gancompress.export.student import onnx_runner  # noqa: E402
from gancompress.latency.runtimes import busy_clock  # noqa: E402


SHARED = Path(__file__).resolve().parents[2] / "shared"


def timed(fn, x, clock=time.perf_counter, calls: int = 1) -> float:
    """The fastest of `calls` back-to-back calls, ms."""
    best = float("inf")
    for _ in range(calls):
        t = clock()
        fn(x)
        best = min(best, 1000 * (clock() - t))
    return best


def spec_run(spec_path: Path, teacher_ref: str, x: torch.Tensor, folder: Path) -> Path:
    """A run-like folder for a spec file: teacher.onnx, student/student.onnx and student_int8.onnx
    (random weights, seed 0)."""
    from gancompress.arch.build import build_student
    from gancompress.arch.spec import ArchSpec
    from gancompress.evaluate import teacher_onnx_bytes
    from gancompress.export.student import export_onnx
    from gancompress.latency.runtimes import int8_onnx_bytes
    from gancompress.teachers import load_teacher

    spec = ArchSpec.load(spec_path)
    teacher_file = folder.parent / "teacher.onnx"  # one export for every spec file
    if not teacher_file.is_file():
        teacher = load_teacher(teacher_ref)
        if teacher.scale != spec.scale or teacher.in_channels != 3:
            sys.exit(f"{spec_path}: a {spec.task} x{spec.scale} student cannot be compared with the "
                     f"x{teacher.scale} teacher {teacher_ref}; pass --teacher")
        teacher_file.write_bytes(teacher_onnx_bytes(teacher, x))
    (folder / "student").mkdir(parents=True, exist_ok=True)
    (folder / "teacher.onnx").symlink_to(teacher_file)
    torch.manual_seed(0)
    model = build_student(spec).eval()
    export_onnx(model, folder / "student" / "student.onnx")
    (folder / "student" / "student_int8.onnx").write_bytes(int8_onnx_bytes(model, x, spec.task))
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories with teacher.onnx and student/student_int8.onnx, "
                    "or architecture spec JSON files (built with random weights)")
    ap.add_argument("--teacher", default=f"srgan:{SHARED / 'teachers' / 'srgan_x4.pth'}",
                    help="the teacher a spec file is compared with (default: the SRGAN x4 in ../shared)")
    ap.add_argument("--calls", type=int, default=3,
                    help="back-to-back calls per model per round, the fastest counted (1: the pre-session-37 measure)")
    ap.add_argument("--size", type=int, default=256, help="LR input side (default 256, the budgets' size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (teacher, fp32, int8 each --calls times per round)")
    ap.add_argument("--clock", choices=("auto", "wall"), default="auto",
                    help="auto: the thread's CPU time at 1 thread, else the wall clock")
    a = ap.parse_args()
    if a.calls < 1:
        ap.error("--calls must be at least 1")
    clock = busy_clock(a.threads) if a.clock == "auto" else time.perf_counter
    x = torch.rand(1, 3, a.size, a.size)
    with tempfile.TemporaryDirectory(prefix="int8_speedup_") as tmp:
        measure(a, clock, x, Path(tmp))


def measure(a, clock, x, tmp: Path) -> None:
    teacher = None
    for given in map(Path, a.runs):
        run = given
        if run.is_file() and run.suffix == ".json":
            run = spec_run(run, a.teacher, x, tmp / run.stem)
        paths = {"teacher": run / "teacher.onnx", "fp32": run / "student" / "student.onnx",
                 "int8": run / "student" / "student_int8.onnx"}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            sys.exit(f"{run}: missing {', '.join(missing)} (int8: `gancompress export {run} --int8`)")
        if teacher is None:  # one teacher for every run (they share it): timed once per round with each run
            teacher = onnx_runner(paths["teacher"], a.threads)
        fns = {"teacher": teacher, "fp32": onnx_runner(paths["fp32"], a.threads),
               "int8": onnx_runner(paths["int8"], a.threads)}
        times = {k: [] for k in fns}
        for k, f in fns.items():  # warm-up
            f(x)
        for _ in range(a.rounds):
            for k, f in fns.items():
                times[k].append(timed(f, x, clock, a.calls))
        ms = {k: statistics.median(v) for k, v in times.items()}
        row = {"run": str(given), "size": a.size, "threads": a.threads, "clock": clock.__name__, "calls": a.calls, "ms": ms,
               "fp32_speedup": ms["teacher"] / ms["fp32"], "int8_speedup": ms["teacher"] / ms["int8"],
               "int8_vs_fp32": ms["int8"] / ms["fp32"]}
        print(json.dumps(row))
        print(f"{run.name}: teacher {ms['teacher']:.0f} ms, student fp32 {ms['fp32']:.1f} ms "
              f"({row['fp32_speedup']:.1f}x), int8 {ms['int8']:.1f} ms ({row['int8_speedup']:.1f}x; "
              f"{row['int8_vs_fp32']:.2f} of fp32)", file=sys.stderr)


if __name__ == "__main__":
    main()

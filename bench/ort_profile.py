"""Where an exported student spends its ONNX Runtime time: per-node kernel time, slowest first.

Runs the ONNX file under ORT's profiler (the same session options as the latency table:
`ort_profile`), sums each node's kernel time over the runs and prints the mean per run. Used to
see how much of a small student the fixed frame (upsampler, shuffle, skip) takes.

    python bench/ort_profile.py bench/out/srgan/RUN/student/student.onnx --size 256 --threads 1
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gancompress.latency.runtimes import kernel_events, ort_profile  # noqa: E402


def node_times(events: list[dict]) -> dict[tuple[str, str], float]:
    """(op type, node name) -> mean kernel ms per run, over the runs the events hold (`ort_profile`
    leaves its 2 warm-up runs out: until session 37 this divided by all runs, so the ms it printed
    were 5/7 of the true ones; the shares were right)."""
    runs = max(1, sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"))
    total: dict[tuple[str, str], float] = collections.defaultdict(float)
    for e in kernel_events(events):
        total[(e.get("args", {}).get("op_name", "?"), e["name"][: -len("_kernel_time")])] += e["dur"] / 1e3
    return {k: v / runs for k, v in total.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--size", type=int, default=256, help="input side (LR for SR)")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args(argv)
    if not a.onnx.is_file():
        print(f"error: {a.onnx} not found; pass an exported student.onnx", file=sys.stderr)
        return 2
    x = torch.rand(1, a.channels, a.size, a.size)
    times = node_times(ort_profile(a.onnx.read_bytes(), x, threads=a.threads, runs=a.runs))
    print(f"{a.onnx}: {sum(times.values()):.2f} ms of kernel time per run ({a.threads} thread(s), {a.size}x{a.size})")
    for (op, name), ms in sorted(times.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{ms:8.2f}  {op:16s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

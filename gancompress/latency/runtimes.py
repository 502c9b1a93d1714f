"""How long a module takes on the runtime a student will be deployed on.

`ort`: ONNX Runtime on CPU, fp32 (the file `export` writes, run as users run it). `torch`: PyTorch
eager on the run's device (CPU, or CUDA with synchronisation). Both run with a fixed intra-op
thread count, since latency at 1 thread and at 16 are different budgets.
"""

from __future__ import annotations

import io
import time
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import UserError

RUNTIMES = ("ort", "torch")
REPEATS = 10


def _min_ms(fn, warmup: int = 2, repeats: int = REPEATS) -> float:
    """The fastest of `repeats` timed calls, in ms. The same count for every piece and every whole
    model: the minimum of more samples is lower under noise, and a table whose small pieces took
    more samples than the whole networks it predicts underestimated them by ~10 % (measured)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


@contextmanager
def _torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    """The module as an in-memory ONNX model with the input's fixed shape (opset 17, as export)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval().cpu(), (x.cpu(),), buf, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def ort_runner(model_bytes: bytes, x: torch.Tensor, threads: int):
    """() -> ms: one ONNX Runtime session, timed again at every call."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.cpu().numpy()}
    return lambda: _min_ms(lambda: sess.run(None, feed))


def boundary_reorder_share(profile_events: list[dict]) -> float:
    """The share of a model run that ONNX Runtime spends converting the graph's input into and its
    output out of its channel-blocked conv layout (NCHWc), from a profile (`enable_profiling`).

    An isolated piece pays both conversions; inside a student, a chain of blocked layers pays them
    once at the network's ends. Only a ReorderInput that runs first and a ReorderOutput that runs
    last count: a reorder inside the piece (before a pixel shuffle, say) is paid in the network too.
    The median over the profiled runs; 0 without NCHWc (a CPU without AVX2, or no conv)."""
    runs = [e for e in profile_events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [e for e in profile_events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    shares = []
    for run in runs:
        t0, t1 = run["ts"], run["ts"] + run["dur"]
        inside = sorted((e for e in nodes if t0 <= e["ts"] <= t1), key=lambda e: e["ts"])
        if not inside or run["dur"] <= 0:
            continue
        ops = lambda e: e.get("args", {}).get("op_name")  # noqa: E731
        boundary = 0
        if ops(inside[0]) == "ReorderInput":
            boundary += inside[0]["dur"]
        if len(inside) > 1 and ops(inside[-1]) == "ReorderOutput":
            boundary += inside[-1]["dur"]
        shares.append(min(boundary / run["dur"], 1.0))
    if not shares:
        return 0.0
    shares.sort()
    return shares[len(shares) // 2]


def ort_boundary_share(model_bytes: bytes, x: torch.Tensor, threads: int, runs: int = 7) -> float:
    """`boundary_reorder_share` of this model, profiled in its own session (the first 2 runs, warm-up,
    are left out)."""
    import json
    import os
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.cpu().numpy()}
        for _ in range(runs):
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    runs_ = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                   key=lambda e: e["ts"])
    if len(runs_) > 2:  # drop the warm-up runs' events
        events = [e for e in events if e.get("ts", 0) >= runs_[2]["ts"]]
    return boundary_reorder_share(events)


def torch_runner(module: nn.Module, x: torch.Tensor, threads: int, device: str = "cpu"):
    """() -> ms: the module in eager PyTorch on `device` (CUDA synchronised)."""
    module = module.eval().to(device)
    x = x.to(device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)

    def call():
        module(x)
        sync()

    def run():
        with torch.no_grad(), _torch_threads(threads):
            return _min_ms(call)

    return run


def runner(model, x: torch.Tensor, runtime: str, threads: int, device: str = "cpu"):
    """() -> ms for `model` (a module, or ONNX bytes for ort) on `runtime`."""
    if runtime == "ort":
        return ort_runner(model if isinstance(model, bytes) else onnx_bytes(model, x), x, threads)
    if runtime == "torch":
        if isinstance(model, bytes):
            raise UserError("an ONNX model cannot be timed in PyTorch; use --latency-runtime ort")
        return torch_runner(model, x, threads, device)
    raise UserError(f"unknown latency runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")

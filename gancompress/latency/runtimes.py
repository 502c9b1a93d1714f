"""How long a module takes on the runtime a student will be deployed on.

`ort`: ONNX Runtime on CPU, fp32 (the file `export` writes, run as users run it). `ort-int8`: the
same runtime running the whole-model int8 export (`export --int8`, the task's default recipe):
students are priced as that file runs, teachers are timed in fp32, so `1/80:ms` there means an int8
student 80x faster than the fp32 teacher. `torch`: PyTorch eager on the run's device (CPU, or CUDA
with synchronisation). All run with a fixed intra-op thread count, since latency at 1 thread and
at 16 are different budgets.

At 1 thread on the CPU the clock is the calling thread's own CPU time (`busy_clock`): both runtimes
then run on that thread, so time the scheduler gives another process is not counted. On a machine
shared with other jobs the wall clock charged a 3.4 s model the queue it waited in (SRGAN's
teacher: 5594 ms wall, 3467 ms CPU with three jobs on two cores; 3497 / 3486 alone), while a
small piece's fastest call slipped between two slices unslowed (the canary: 3.00 ms either way),
so a relative latency budget came out 1.6x too loose. CPU time takes out the queueing, not the
contention for the shared cache and memory: under the same load the teacher read 3575-3643 ms
CPU (3386 alone) and 60 ms students 14 % more; headline timings are still taken on an idle
machine. With more threads, or on CUDA, it is the wall clock (the latency a user waits for; a
thread's CPU time no longer is).
"""

from __future__ import annotations

import io
import time
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import UserError

RUNTIMES = ("ort", "ort-int8", "torch")
ORT_RUNTIMES = ("ort", "ort-int8")  # ONNX Runtime on the CPU: ONNX files, fp32 or int8
REPEATS = 10


def busy_clock(threads: int, device: str = "cpu"):
    """The clock to time `threads` threads on `device` with, in seconds: the thread's CPU time at 1
    thread on the CPU where the platform keeps it finely (Linux, macOS: ns; Windows counts it in
    15.6 ms ticks), else the wall clock (module docstring)."""
    if threads == 1 and str(device) == "cpu" and time.get_clock_info("thread_time").resolution <= 1e-6:
        return time.thread_time
    return time.perf_counter


def _min_ms(fn, warmup: int = 2, repeats: int = REPEATS, clock=time.perf_counter) -> float:
    """The fastest of `repeats` timed calls, in ms of `clock`. The same count for every piece and
    every whole model: the minimum of more samples is lower under noise, and a table whose small
    pieces took more samples than the whole networks it predicts underestimated them by ~10 %
    (measured)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
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
    clock = busy_clock(threads)
    return lambda: _min_ms(lambda: sess.run(None, feed), clock=clock)


# what a piece timed alone runs at its ends and a chain of its kind runs only at the chain's ends:
# ONNX Runtime's conversions into and out of its blocked conv layout (NCHWc), and for an int8
# piece also the quantization of its float input, the dequantization of its output and the
# layout transposes of its int8 kernels
LEAD_OPS = ("ReorderInput", "QuantizeLinear", "Transpose")
TRAIL_OPS = ("ReorderOutput", "DequantizeLinear", "Transpose")


def kernel_events(profile_events: list[dict]) -> list[dict]:
    """The per-node kernel-time events of an ONNX Runtime profile (`enable_profiling`)."""
    return [e for e in profile_events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]


def run_nodes(profile_events: list[dict]):
    """(run duration, its kernel events in execution order) for each model run of the profile."""
    nodes = kernel_events(profile_events)
    for run in (e for e in profile_events if e.get("cat") == "Session" and e.get("name") == "model_run"):
        t0, t1 = run["ts"], run["ts"] + run["dur"]
        yield run["dur"], sorted((e for e in nodes if t0 <= e["ts"] <= t1), key=lambda e: e["ts"])


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def boundary_shares(profile_events: list[dict], lead=("ReorderInput",), trail=("ReorderOutput",)) -> tuple:
    """(lead, trail): the shares of a model run spent in the nodes of type `lead` that run first
    and of type `trail` that run last, from an ONNX Runtime profile (`enable_profiling`).

    An isolated piece pays them at both of its ends; inside a student, a chain of pieces of the
    same layout and precision pays them once. A node of those types inside the piece (a reorder
    before a pixel shuffle, say) is paid in the network too and is not counted. Each share is the
    median over the profiled runs; 0 where there is none (a CPU without NCHWc kernels)."""
    leads, trails = [], []
    for dur, inside in run_nodes(profile_events):
        if not inside or dur <= 0:
            continue
        op = [e.get("args", {}).get("op_name") for e in inside]
        i = 0
        while i < len(inside) - 1 and op[i] in lead:
            i += 1
        j = len(inside)
        while j - 1 > i and op[j - 1] in trail:
            j -= 1
        leads.append(min(sum(e["dur"] for e in inside[:i]) / dur, 1.0))
        trails.append(min(sum(e["dur"] for e in inside[j:]) / dur, 1.0))
    if not leads:
        return 0.0, 0.0
    return _median(leads), _median(trails)


def span_share(profile_events: list[dict], op: str, skip: int) -> float | None:
    """The share of a model run spent from its (skip+1)-th node of type `op` up to, not including,
    its last one: the middle layer of a chain `skip` layers of one `op` each, the layer, one more
    layer (`LatencyTable._in_context`). The median over the profiled runs; None when a run has
    fewer than skip + 2 such nodes (the chain did not come out as expected)."""
    shares = []
    for dur, inside in run_nodes(profile_events):
        at = [i for i, e in enumerate(inside) if e.get("args", {}).get("op_name") == op]
        if len(at) < skip + 2 or dur <= 0:
            return None
        shares.append(sum(e["dur"] for e in inside[at[skip]:at[-1]]) / dur)
    return _median(shares) if shares else None


def gap_share(profile_events: list[dict], ops: tuple, after: int, expect: int) -> float | None:
    """The share of a model run spent between its `after`-th node of a type in `ops` and the next
    one: what a layer of another kind costs between such layers, its conversions included (an int8
    layer between float convs: the float side's reorders out of and back into the blocked layout,
    the quantization, the int8 kernels' transposes, the dequantization). The median over the
    profiled runs; None when a run has not exactly `expect` such nodes (the chain did not come
    out as expected)."""
    shares = []
    for dur, inside in run_nodes(profile_events):
        at = [i for i, e in enumerate(inside) if e.get("args", {}).get("op_name") in ops]
        if len(at) != expect or not 0 < after < expect or dur <= 0:
            return None
        shares.append(sum(e["dur"] for e in inside[at[after - 1] + 1:at[after]]) / dur)
    return _median(shares) if shares else None


def boundary_reorder_share(profile_events: list[dict]) -> float:
    """The share of a run spent converting a float piece's input into and its output out of
    ONNX Runtime's blocked conv layout (NCHWc), which a chain of such pieces pays once at its
    ends. Only for a piece blocked from end to end (a reorder first *and* last): one that leaves
    the layout inside (a conv, instance norm and ReLU of translation; a pixel shuffle) hands a
    plain tensor to its neighbour, which then pays its own reorder in the network too."""
    lead, trail = boundary_shares(profile_events)
    return lead + trail if lead > 0 and trail > 0 else 0.0


def ort_profile(model_bytes: bytes, x: torch.Tensor, threads: int, runs: int = 7) -> list[dict]:
    """The events of an ONNX Runtime profile of `runs` calls, the first 2 (warm-up) left out."""
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
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(starts) > 2:
        events = [e for e in events if e.get("ts", 0) >= starts[2]]
    return events


def ort_boundary_share(model_bytes: bytes, x: torch.Tensor, threads: int, runs: int = 7) -> float:
    """`boundary_reorder_share` of this model, profiled in its own session."""
    return boundary_reorder_share(ort_profile(model_bytes, x, threads, runs))


def int8_onnx_bytes(module: nn.Module, x: torch.Tensor, task: str, only_layers: list[str] | None = None) -> bytes:
    """The module quantized as `gancompress export --int8` quantizes a student's layers (the
    task's default recipe; calibrated on two random inputs: run time does not depend on the
    scales); with `only_layers` (module names) just those, as it does a mixed-precision student."""
    import os
    import tempfile
    from pathlib import Path

    from ..export.int8 import quantize_onnx_int8

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "piece.onnx"
        fp32.write_bytes(onnx_bytes(module, x))
        out = Path(tmp) / "piece_int8.onnx"
        with warnings.catch_warnings(), open(os.devnull, "w"):
            warnings.simplefilter("ignore")
            quantize_onnx_int8(fp32, out, [torch.rand_like(x), torch.rand_like(x)], task=task,
                               only_layers=only_layers)
        return out.read_bytes()


def torch_runner(module: nn.Module, x: torch.Tensor, threads: int, device: str = "cpu"):
    """() -> ms: the module in eager PyTorch on `device` (CUDA synchronised)."""
    module = module.eval().to(device)
    x = x.to(device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    clock = busy_clock(threads, device)

    def call():
        module(x)
        sync()

    def run():
        with torch.no_grad(), _torch_threads(threads):
            return _min_ms(call, clock=clock)

    return run


def runner(model, x: torch.Tensor, runtime: str, threads: int, device: str = "cpu"):
    """() -> ms for `model` (a module, or ONNX bytes for ort) on `runtime`. On ort-int8 a module
    runs in fp32 (the teacher, the canary): the callers quantize what is to run int8."""
    if runtime in ORT_RUNTIMES:
        return ort_runner(model if isinstance(model, bytes) else onnx_bytes(model, x), x, threads)
    if runtime == "torch":
        if isinstance(model, bytes):
            raise UserError("an ONNX model cannot be timed in PyTorch; use --latency-runtime ort")
        return torch_runner(model, x, threads, device)
    raise UserError(f"unknown latency runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")

"""A lookup table of measured piece latencies: predict a student's latency without building it.

Every piece (`arch.pieces`: a cell layer at its widths, the head, a stride-2 conv, a residual add...)
is timed alone on the target runtime, at its input size, with the run's thread count. A spec's
predicted latency is the sum of its pieces' times, less the per-call overhead every isolated
timing paid once and the whole network pays once (`overhead`, measured on a 1-pixel graph). On
ONNX Runtime a piece timed alone also pays the conversion of its input into, and its output out of,
the runtime's channel-blocked conv layout (NCHWc), which a chain of layers pays only at its ends: a
profile of each piece gives that share and, for a piece blocked from end to end (SR's conv and
residual layers; not translation's conv + instance norm, which leaves the layout inside), it is
taken off (`runtimes.boundary_reorder_share`). An int8 cell layer is timed inside a short chain of
int8 layers instead (`context_chain`): on a CPU with AMX its uneven-width int8 convs ran up to 1.8x
slower in a network than alone, while fp32 ones did not. Where an SR int8 layer meets float layers
(`--search-int8`), what it costs there besides its own time is read from the same chain with only
that layer quantized: the float side's reorders out of and back into the blocked layout, which no
piece timed alone pays, made the int8 layers of a mixed student cost 1.4x what the table charged.

Under torchrun only rank 0 times anything; every rank starts from rank 0's entries and asks for
the same pieces in the same order, so each measurement is one broadcast that all ranks join, and
every rank prices a spec the same way (their searches stay in step).

The table is keyed by runtime, threads, device and machine (CPU model, core count, library
versions): another key is another file, so a change of machine or runtime rebuilds it, and one
key's entries are reused by every later run. Entries are measured on first use (a progress bar
when there are many: `ensure`) and saved atomically, merged with what another process saved
meanwhile. Times are the minimum over `rounds` passes of the minimum over a fixed number of repeats, and
every time is normalised by a canary (a fixed conv the size of a student layer) timed around it: these machines
run 20-40 % slower for minutes at a time (the same model measured 61-83 ms within one minute; a
table built in a slow period predicted whole students 25-50 % too slow), so a time is stored as
time x canary_ref / canary_now, in the speed the machine had when the table was started
(`canary` entry). Whole networks timed for comparison (the teacher of a relative budget, the
student at the end of a run) go through the same normalisation (`time_whole`). At 1 thread the
clock is the thread's CPU time (`runtimes.busy_clock`), which other jobs on the machine do not
inflate; the canary still corrects what does change it (the clock rate, a shared cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import torch

from ..arch.pieces import Piece, spec_pieces
from ..arch.spec import ArchSpec
from ..distributed import broadcast_object, is_main
from ..errors import UserError
from ..fileio import atomic_write_text
from .runtimes import (LEAD_OPS, ORT_RUNTIMES, RUNTIMES, TRAIL_OPS, boundary_reorder_share, boundary_shares,
                       busy_clock, gap_share, int8_onnx_bytes, onnx_bytes, ort_profile, runner, span_share)

# 2: a fixed number of repeats; 3: normalised by a canary; 4: rounds as separate passes; 5: a
# canary the size of a student layer, timed before and after; 6: pieces less their boundary
# layout conversions (ort), and int8 pieces; 7: the CPU's int8 and vector extensions in the key;
# 8: at 1 thread, the thread's CPU time (runtimes.busy_clock); 9: int8 layers timed inside a chain
# of int8 layers (`_in_context`); 10: an int8 layer's conversions timed between float layers
TABLE_VERSION = 10
# an int8 layer is timed after this many int8 layers of random widths (and before one more)
CONTEXT_BEFORE = 3
# ONNX Runtime's float conv nodes (plain or blocked, with a fused activation or not)
FLOAT_CONV_OPS = ("Conv", "FusedConv")
# the CPU flags int8 and fp32 kernel speed depends on: the same "AMD EPYC" name ran ONNX Runtime's
# int8 convs at 0.82-1.25x fp32 without VNNI and 0.30-0.55x with it (BENCHMARKS.md)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimddp", "i8mm")
OVERHEAD_KEY = "call-overhead"
CANARY_KEY = "canary"
# the canary: a fixed workload timed around every measurement, a student layer in size (conv 3x3
# 32 -> 32 at 128 px: 2 MB of activations, so it feels the cache and memory contention they do)
CANARY = Piece("sr", "layer", 32, 32, 128, 128, (("op", "conv3x3"), ("last", 0)))


def _cpuinfo(*prefixes: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `prefixes` (None: none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(prefixes):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_flags() -> list[str]:
    have = set((_cpuinfo("flags", "features") or "").split())
    return [f for f in ISA_FLAGS if f in have]


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def machine_key(runtime: str, threads: int, device: str = "cpu") -> dict:
    """What a measured time depends on besides the piece itself."""
    key = {"version": TABLE_VERSION, "runtime": runtime, "threads": int(threads), "device": str(device),
           "cpu": _cpu_model(), "isa": _cpu_flags(), "cores": os.cpu_count(), "arch": platform.machine(),
           "torch": torch.__version__}
    if runtime in ORT_RUNTIMES:
        import onnxruntime

        key["onnxruntime"] = onnxruntime.__version__
    if str(device).startswith("cuda") and torch.cuda.is_available():
        key["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return key


def context_chain(piece: Piece) -> tuple[torch.nn.Module, torch.Tensor]:
    """(model, input): the layer `piece` as the fourth layer of a chain of conv 3x3 layers, the
    three before it of random widths 8-32 (seeded by its key: the same chain every time), one after."""
    import random
    import zlib

    rng = random.Random(zlib.crc32(piece.key.encode()))

    def neighbour(cin: int, cout: int) -> torch.nn.Module:
        return Piece(piece.task, "layer", cin, cout, piece.h, piece.w, (("op", "conv3x3"), ("last", 0))).build()

    widths = [rng.randint(8, 32) for _ in range(CONTEXT_BEFORE)] + [piece.cin]
    chain = [neighbour(a, b) for a, b in zip(widths, widths[1:])]
    chain += [piece.build(), neighbour(piece.cout, rng.randint(8, 32))]
    return torch.nn.Sequential(*chain).eval(), torch.rand(1, widths[0], piece.h, piece.w)


class LatencyTable:
    """Measured ms per piece for one (runtime, threads, device, machine). `timer(module, x) -> ms`
    replaces the runtime (tests); `cache_dir` None keeps the table in memory only."""

    def __init__(self, runtime: str = "ort", threads: int = 1, device: str = "cpu", cache_dir=None,
                 rounds: int = 2, timer=None, quiet: bool = True):
        if runtime not in RUNTIMES:
            raise UserError(f"unknown latency runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if not isinstance(threads, int) or threads < 1:
            raise UserError(f"--latency-threads must be a whole number, at least 1, got {threads!r}")
        if runtime in ORT_RUNTIMES and str(device) != "cpu":
            raise UserError(f"--latency-runtime {runtime} times ONNX Runtime on the CPU; for a GPU budget use "
                            "--latency-runtime torch")
        self.runtime, self.threads, self.device, self.rounds, self.quiet = runtime, threads, str(device), rounds, quiet
        self.key = machine_key(runtime, threads, device)
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]
        self.path = None if cache_dir is None else Path(cache_dir) / f"{runtime}-{threads}t-{digest}.json"
        self._timer = timer
        self._canary = None  # () -> ms of the canary, prepared once
        self._shares: dict[str, tuple] = {}  # piece key -> (lead, trail) shares of its ends (ort), profiled once
        # "layer key|int8" or "|float" (`_in_context`) -> its share of its chain, and the chain's int8 ONNX (small)
        self._context_shares: dict[str, float | None] = {}
        self._context_bytes: dict[str, bytes] = {}
        self.entries: dict[str, float] = {}
        self.measured = 0  # pieces timed by this object (the rest came from the cache)
        self._load()

    # ---- storage --------------------------------------------------------------------------------
    def _read(self) -> dict:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):  # a damaged cache is only lost time: measure again
            return {}
        if data.get("key") != self.key:
            return {}
        return {k: float(v) for k, v in data.get("entries", {}).items()}

    def _load(self) -> None:
        self.entries.update(self._read())
        self.entries = broadcast_object(self.entries)  # every rank starts from rank 0's

    def _collect(self, measure) -> None:
        """Run `measure()` (which fills self.entries) on rank 0 and hand the entries to every rank."""
        if is_main():
            measure()
        self.entries = broadcast_object(self.entries)

    def save(self) -> None:
        if self.path is None or not is_main():
            return
        merged = {**self._read(), **self.entries}  # keep what another run measured meanwhile
        self.entries = merged
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"key": self.key, "entries": merged}, indent=0, sort_keys=True))

    # ---- measuring ------------------------------------------------------------------------------
    def _runner(self, model, x):
        """() -> ms of model(x) on this table's runtime (or the test timer)."""
        if self._timer is not None:
            return lambda: float(self._timer(model, x))
        return runner(model, x, self.runtime, self.threads, self.device)

    def _speed(self) -> float:
        """The canary's time now; the first one ever is the table's reference speed."""
        if self._canary is None:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                self._canary = self._runner(CANARY.build(), CANARY.input())
        now = self._canary()
        if CANARY_KEY not in self.entries:
            self.entries[CANARY_KEY] = now
        return now

    def time_whole(self, model, x, rounds: int | None = None) -> float:
        """model(x) (a module, or ONNX bytes for ort) timed as the pieces are: the best of
        `rounds` passes, each normalised by the canary timed just before and just after it."""
        run = self._runner(model, x)
        best = float("inf")
        for _ in range(self.rounds if rounds is None else rounds):
            before = self._speed()
            t = run()
            c = (before + self._speed()) / 2
            best = min(best, t * self.entries[CANARY_KEY] / c)
        return best

    def _measure(self, piece: Piece, rounds: int | None = None) -> dict[str, float]:
        """{key: ms} for a piece as a part of a network: timed alone, less the share ONNX Runtime
        spent at its ends converting its input and output to and from the blocked conv layout,
        which a chain of layers pays once at its ends, not at every layer (measured: two reorders
        of a 256 px tensor are 20-40 % of a conv 3x3 of 28 -> 28 channels timed alone). An int8
        piece is quantized as `export --int8` does it, and its ends (quantize, dequantize, the int8
        kernels' layout) become two more entries, `#in` and `#out`, charged only where it meets a
        float layer (`arch.pieces.spec_pieces`); an int8 cell layer's own time is taken inside a
        chain of int8 layers, and on `ort` an SR layer's ends between float layers (`_in_context`),
        split between `#in` and `#out` as the layer timed alone splits them."""
        piece = piece.whole()
        with torch.random.fork_rng():  # a run's random stream does not depend on what was cached
            torch.manual_seed(0)
            model, x = piece.build(), piece.input()
            if self._timer is not None and piece.int8:  # tests: (ms, lead share, trail share)
                t, lead, trail = self._timer(model, x, int8=True)
            else:
                if piece.int8 and self.runtime != "ort":
                    raise UserError("int8 layers are timed in ONNX Runtime (the int8 export's runtime); use "
                                    "--latency-runtime ort with --search-int8")
                if self.runtime == "ort-int8" and self._timer is None:
                    model = self._whole_int8(piece, model, x)
                elif self.runtime == "ort" and self._timer is None:
                    model = int8_onnx_bytes(model, x, piece.task) if piece.int8 else onnx_bytes(model, x)
                    if piece.key not in self._shares:
                        events = ort_profile(model, x, self.threads)
                        self._shares[piece.key] = (boundary_shares(events, LEAD_OPS, TRAIL_OPS) if piece.int8
                                                   else (boundary_reorder_share(events), 0.0))
                lead, trail = self._shares.get(piece.key, (0.0, 0.0))
                t = self.time_whole(model, x, rounds)
            core = t * (1.0 - lead - trail)
            if piece.kind == "layer" and (piece.int8 or self.runtime == "ort-int8") and self._timer is None:
                core = self._in_context(piece, rounds) or core
            out = {piece.key: core}
            if piece.int8:
                ends = t * (lead + trail)  # as timed alone; between float layers where that chain reads
                # SR only: there a float layer is one fused conv node, so the span between two holds
                # the int8 layer and its conversions alone; translation's float layers run their
                # instance norm and ReLU after the conv, which the span would charge again
                if self.runtime == "ort" and piece.task == "sr" and piece.kind == "layer" and self._timer is None:
                    between = self._in_context(piece, rounds, neighbours="float")
                    ends = ends if between is None else max(between - core, 0.0)
                lead_part = lead / (lead + trail) if lead + trail > 0 else 0.5  # none seen: halves
                out[piece.conversion("in").key] = ends * lead_part
                out[piece.conversion("out").key] = ends * (1.0 - lead_part)
        return out

    def _in_context(self, piece: Piece, rounds: int | None, neighbours: str = "int8") -> float | None:
        """An int8 layer's time inside a network, read from a profile of the chain `context_chain`
        (three layers of random widths before it, seeded by its key, one after).

        neighbours="int8", the whole chain quantized: the layer's own time among int8 layers, from
        its conv up to the next one. Why: on an Intel Xeon with AMX, ONNX Runtime's int8 convs of
        uneven widths ran 1.1-1.8x slower inside a network than alone (fp32 convs: within 9 %), so
        a table of layers timed alone under-predicted AGD-like and pruned int8 students by 10-23 %
        (BENCHMARKS.md, "int8 layers inside a network"; pruned ones stay under-predicted, less).

        neighbours="float", only the layer quantized: its time between float layers, from the float
        conv before it up to the one after, conversions included (the float side's reorders out of
        and into the blocked layout, quantize, the int8 kernels' transposes, dequantize); its ends
        are that less its own time. On that Xeon a mixed student's 10 int8 layers took 1.4x there
        what their own times plus their ends timed alone summed to (BENCHMARKS.md, "int8 layers
        between float layers").

        None if the chain's profile does not come out as expected (its int8 convs, or its float convs
        around the layer, not where they should be): the caller keeps the layer timed alone."""
        key = f"{piece.key}|{neighbours}"
        model, x = context_chain(piece)
        if key not in self._context_bytes:  # quantized once, timed every round
            only = [str(CONTEXT_BEFORE)] if neighbours == "float" else None
            self._context_bytes[key] = int8_onnx_bytes(model, x, piece.task, only_layers=only)
        data = self._context_bytes[key]
        if key not in self._context_shares:
            events = ort_profile(data, x, self.threads)
            self._context_shares[key] = (gap_share(events, FLOAT_CONV_OPS, CONTEXT_BEFORE, CONTEXT_BEFORE + 1)
                                         if neighbours == "float" else span_share(events, "QLinearConv", CONTEXT_BEFORE))
        share = self._context_shares[key]
        return None if share is None else self.time_whole(data, x, rounds) * share

    def _whole_int8(self, piece: Piece, model, x) -> bytes:
        """A piece of a whole-model int8 student (ort-int8) as int8 ONNX bytes; the shares of its
        ends to take off go to `_shares`. Inside that model activations pass from one int8 layer to the next
        in uint8, so a piece timed alone is charged neither the quantization of its input nor the
        dequantization of its output, except where the model itself converts: the head quantizes
        the input image, the upsampler dequantizes the output (its DepthToSpace and the bicubic
        skip stay float in the export's recipe)."""
        data = int8_onnx_bytes(model, x, piece.task)
        if piece.key not in self._shares:
            lead, trail = boundary_shares(ort_profile(data, x, self.threads), LEAD_OPS, TRAIL_OPS)
            if piece.kind in ("head", "stem", "skip"):  # the float input is quantized here (skip: stays float)
                lead = 0.0
            if piece.kind in ("upsampler", "skip", "out"):  # the output is dequantized here
                trail = 0.0
            self._shares[piece.key] = (lead, trail)
        return data

    @property
    def overhead(self) -> float:
        """The fixed cost of one call (the runtime's dispatch, input and output handling)."""
        if OVERHEAD_KEY not in self.entries:
            def measure():
                with torch.random.fork_rng():
                    p = Piece("sr", "add", 1, 1, 1, 1)
                    self.entries[OVERHEAD_KEY] = self.time_whole(p.build(), p.input())
                self.save()

            self._collect(measure)
            self.measured += 1
        return self.entries[OVERHEAD_KEY]

    def ensure(self, pieces, desc: str = "latency table") -> int:
        """Measure every piece not yet in the table (progress bar for more than a few); returns
        how many were measured."""
        from tqdm import tqdm

        todo = list({p.whole().key: p.whole() for p in pieces if p.key not in self.entries}.values())
        if not todo:
            return 0
        self.overhead  # noqa: B018 - measured first, with the others

        def measure():
            # `rounds` passes over all of them, minutes apart for a big table, so one slow period of
            # the machine does not decide a piece's time; the best normalised time is kept
            bar = tqdm(total=len(todo) * self.rounds,
                       desc=f"{desc} ({self.runtime}, {self.threads} thread{'s' * (self.threads > 1)})",
                       disable=self.quiet or len(todo) < 8, mininterval=1.0)
            best: dict[str, float] = {}
            for n in range(self.rounds):
                for p in todo:
                    for key, ms in self._measure(p, rounds=1).items():
                        best[key] = min(best.get(key, float("inf")), ms)
                    bar.update(1)
                if n == 0 or n == self.rounds - 1:  # usable (and saved) after the first pass
                    self.entries.update(best)
                    self.save()
            bar.close()

        self._collect(measure)
        self.measured += len(todo)
        return len(todo)

    def cached(self, key: str, measure) -> float:
        """A whole-model time under `key` (e.g. the teacher's), measured once by `measure()` and
        kept with the pieces, so a resumed or repeated run sees the same number."""
        if key not in self.entries:
            def fill():
                self.entries[key] = float(measure())
                self.save()

            self._collect(fill)
            self.measured += 1
        return self.entries[key]

    def ms(self, piece: Piece) -> float:
        if piece.key not in self.entries:
            self.ensure([piece])
        return self.entries[piece.key]

    # ---- predicting -----------------------------------------------------------------------------
    def predict(self, spec: ArchSpec, hw: tuple[int, int]) -> float:
        """Predicted latency (ms) of the student built from `spec` at an input of size hw (a graph
        student, which has no pieces, is timed whole once and cached under its hash)."""
        if spec.graph is not None:
            return self._graph_ms(spec, tuple(hw))
        pieces = spec_pieces(spec, hw)
        self.ensure(pieces)
        return self.sum(pieces)

    def _graph_ms(self, spec: ArchSpec, hw: tuple[int, int]) -> float:
        from ..arch.build import build_student

        digest = hashlib.sha256(json.dumps(spec.graph, sort_keys=True).encode()).hexdigest()[:20]

        def measure():
            with torch.random.fork_rng():
                torch.manual_seed(0)
                return self.time_whole(build_student(spec).eval(), torch.rand(1, 3, *hw))

        return self.cached(f"graph:{digest}:{hw[0]}x{hw[1]}", measure)

    def sum(self, pieces) -> float:
        """Latency of these pieces run as one network: their sum, with the call overhead once (an
        int8 piece's conversion parts were timed within its own call)."""
        pieces = list(pieces)
        calls = sum(1 for p in pieces if not p.part)
        return sum(self.ms(p) for p in pieces) - (calls - 1) * self.overhead

    def describe(self) -> str:
        clock = "CPU time" if busy_clock(self.threads, self.device) is not time.perf_counter else "wall clock"
        return f"{self.runtime}, {self.threads} thread{'s' * (self.threads > 1)}, {clock}, {self.key['cpu']}"

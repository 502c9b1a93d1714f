"""Does a conv layer run as fast inside a network as it does alone? The latency table times
every layer alone; this measures what that misses, for fp32 and for the int8 export.

Two parts, both ONNX Runtime at --threads, --size x --size, kernel times from ORT's profile
(median of 10 calls, wall clock: run it on an idle machine):

1. context: the layer (conv 3x3 + LeakyReLU, cin -> cout) alone, and after 3, 8 and 16 layers of
   random widths (followed by 2 more; --trials random chains each): min / median / max of its
   own kernel time.
2. student: a student of the table-error benchmark's `pruned sr` kind (uneven widths 2..32,
   `--seed`): each int8 conv's kernel time inside the whole int8 student against the same layer
   exported and timed alone and inside the chain the latency table times it in (`table.context_chain`),
   and the ort-int8 table's prediction against the student measured whole.
3. between (not in "both"): the int8 layers of a `mixed int8 sr` student (`--search-int8`'s kind,
   `--seed`) between float layers: what the fp32 table charges (its time among int8 layers plus
   its ends as it pays them timed alone, TABLE_VERSION 9), the span it takes between float convs
   (`LatencyTable._in_context(..., neighbours="float")`, TABLE_VERSION 10) and its float twin.

    python bench/int8_context.py --layers 16x16,32x32,30x15,32x18,20x30 --trials 5 --seed 0
    python bench/int8_context.py --part between --seed 0
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gancompress.arch.build import build_student  # noqa: E402
from gancompress.arch.pieces import layer_piece  # noqa: E402
from gancompress.latency.runtimes import int8_onnx_bytes, kernel_events, onnx_bytes, ort_profile  # noqa: E402

CONV_OPS = {"int8": ("QLinearConv",), "fp32": ("Conv", "FusedConv")}


def conv_kernel_ms(data: bytes, x: torch.Tensor, threads: int, ops) -> list[float]:
    """Median kernel ms of every conv node of the model, in execution order."""
    times, order = collections.defaultdict(list), []
    for e in kernel_events(ort_profile(data, x, threads, runs=12)):
        if e["args"]["op_name"] in ops:
            if e["name"] not in times:
                order.append(e["name"])
            times[e["name"]].append(e["dur"] / 1e3)
    return [statistics.median(times[n]) for n in order]


def layer(cin: int, cout: int, size: int) -> torch.nn.Module:
    """An SR cell layer (conv 3x3 + LeakyReLU), built as the latency table builds it."""
    return layer_piece("sr", "conv3x3", cin, cout, False, (size, size)).build()


def export(model, x, precision):
    return int8_onnx_bytes(model, x, "sr") if precision == "int8" else onnx_bytes(model, x)


def context(a, rng) -> None:
    print("| layer | layers before | int8 ms: min / median / max | int8 max/min | fp32 ms: min / median / max | fp32 max/min |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in a.layers.split(","):
        cin, cout = map(int, spec.split("x"))
        for before_n in (0, 3, 8, 16):
            res = {"int8": [], "fp32": []}
            for trial in range(1 if before_n == 0 else a.trials):
                before = [rng.randint(3, 32) for _ in range(before_n)]
                after = [rng.randint(3, 32) for _ in range(0 if before_n == 0 else 2)]
                widths = before + [cin, cout] + after
                torch.manual_seed(trial)
                model = torch.nn.Sequential(*[layer(i, o, a.size) for i, o in zip(widths, widths[1:])]).eval()
                x = torch.rand(1, widths[0], a.size, a.size)
                for p in res:
                    res[p].append(conv_kernel_ms(export(model, x, p), x, a.threads, CONV_OPS[p])[before_n])
            cells = []
            for p in ("int8", "fp32"):
                v = res[p]
                cells += [f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}", f"{max(v) / min(v):.2f}"]
            print(f"| {cin} -> {cout} | {before_n} | " + " | ".join(cells) + " |", flush=True)


def student(a) -> None:
    from latency_table_error import pruned_sr

    from gancompress.arch.pieces import spec_pieces
    from gancompress.latency.table import CONTEXT_BEFORE, LatencyTable, context_chain

    spec = pruned_sr(random.Random(a.seed))
    hw = (a.size, a.size)
    torch.manual_seed(0)
    model, x = build_student(spec).eval(), torch.rand(1, 3, *hw)
    data = int8_onnx_bytes(model, x, "sr")
    whole = conv_kernel_ms(data, x, a.threads, CONV_OPS["int8"])
    alone, chained = [], []
    for p in spec_pieces(spec, hw):
        if p.kind == "layer":
            torch.manual_seed(0)
            m, xi = p.build(), p.input()
            alone.append((p.cin, p.cout, conv_kernel_ms(int8_onnx_bytes(m, xi, "sr"), xi, a.threads,
                                                        CONV_OPS["int8"])[0]))
            torch.manual_seed(0)
            m, xi = context_chain(p)  # as the table times it since TABLE_VERSION 9
            chained.append(conv_kernel_ms(int8_onnx_bytes(m, xi, "sr"), xi, a.threads, CONV_OPS["int8"])[CONTEXT_BEFORE])
    cell_convs = whole[1:1 + len(alone)]  # after the head, in execution order
    for label, est in (("alone", [t for _, _, t in alone]), ("in the table's chain", chained)):
        ratios = [w / t for w, t in zip(cell_convs, est)]
        print(f"pruned sr (seed {a.seed}, nf {spec.nf}): {len(alone)} cell convs; inside the int8 student / {label}: "
              f"median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}; "
              f"summed {sum(cell_convs):.1f} vs {sum(est):.1f} ms")
    for (ci, co, t), c, w in sorted(zip(alone, chained, cell_convs), key=lambda r: -r[2] / r[1])[:6]:
        print(f"   {ci:2d} -> {co:2d}: alone {t:.2f} ms, in the table's chain {c:.2f}, in the student {w:.2f} ms")
    table = LatencyTable("ort-int8", a.threads, cache_dir=None)
    pred, meas = table.predict(spec, hw), table.time_whole(data, x, rounds=3)
    print(f"ort-int8 table: predicted {pred:.1f} ms, measured whole {meas:.1f} ms ({100 * (pred / meas - 1):+.1f} %)")


def between(a) -> None:
    from latency_table_error import mixed_sr

    from gancompress.arch.pieces import Piece, spec_pieces
    from gancompress.latency.runtimes import LEAD_OPS, TRAIL_OPS, boundary_shares
    from gancompress.latency.table import LatencyTable

    table = LatencyTable("ort", a.threads, cache_dir=None)
    pieces = {p.key: p for p in spec_pieces(mixed_sr(random.Random(a.seed)), (a.size, a.size)) if p.int8 and not p.part}
    sums = collections.Counter()
    for p in pieces.values():
        torch.manual_seed(0)
        data, x = int8_onnx_bytes(p.build(), p.input(), "sr"), p.input()
        lead, trail = boundary_shares(ort_profile(data, x, a.threads), LEAD_OPS, TRAIL_OPS)
        ends_alone = table.time_whole(data, x) * (lead + trail)
        core, span = table._in_context(p, None), table._in_context(p, None, neighbours="float")
        if core is None or span is None:
            print(f"{p.key}: its chain did not profile as expected; skipped")
            continue
        twin = table.ms(Piece(p.task, p.kind, p.cin, p.cout, p.h, p.w,
                              tuple((k, str(v).replace("@int8", "") if k == "op" else v) for k, v in p.extra)))
        sums.update({"v9": core + ends_alone, "span": span, "twin": twin})
        print(f"{p.cin:2d} -> {p.cout:2d} {p.option('op'):15s}: among int8 {core:6.2f} + ends alone {ends_alone:5.2f} = "
              f"{core + ends_alone:6.2f} ms (v9); between float layers {span:6.2f} ms (v10); "
              f"float twin {twin:6.2f} ms")
    print(f"mixed sr (seed {a.seed}), {len(pieces)} int8 layers summed: v9 {sums['v9']:.1f} ms, between float layers "
          f"{sums['span']:.1f} ms, float twins {sums['twin']:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default="16x16,32x32,30x15,32x18,20x30", help="CINxCOUT,... for the context part")
    ap.add_argument("--trials", type=int, default=5, help="random chains per depth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--part", choices=("context", "student", "both", "between"), default="both")
    a = ap.parse_args()
    if a.part in ("context", "both"):
        context(a, random.Random(a.seed))
    if a.part in ("student", "both"):
        student(a)
    if a.part == "between":
        between(a)


if __name__ == "__main__":
    main()

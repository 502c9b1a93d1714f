"""How well the latency table predicts a whole student: predicted (sum of measured pieces) vs the
built student measured whole, on the same runtime, threads and input size, over many students of
different shapes from the spaces the methods search (AGD's random operator/width choices, the
uniform baseline's widths, pruned-like uneven widths), SR and translation.

    python bench/latency_table_error.py --runtime ort --threads 1 --size 256 --students 24
    python bench/latency_table_error.py --runtime torch ...

Both sides use the table's estimator (fastest of a fixed number of repeats, normalised by the
canary timed just before, best of the table's rounds); whole students are measured in --rounds
passes spread over the run, so a slow period of the machine does not land on one student only. Writes bench/out/latency/<runtime>-<threads>t.json
and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gancompress.arch.build import build_student  # noqa: E402
from gancompress.arch.cost import spec_macs  # noqa: E402
from gancompress.arch.spec import (ArchSpec, LayerSpec, UpsamplerSpec, frame_for_width,  # noqa: E402
                                   uniform_sr_spec, uniform_translate_spec)
from gancompress.latency.table import LatencyTable  # noqa: E402
from gancompress.methods.space import width_choices  # noqa: E402

RATIOS = (1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)


def agd_sr(rng, nf=32, cells=5, layers=5):
    ws = width_choices(nf, RATIOS)
    c = [[LayerSpec(rng.choice(["conv3x3", "resblock"]), rng.choice(ws)) for _ in range(layers - 1)]
         + [LayerSpec(rng.choice(["conv3x3", "resblock"]), nf)] for _ in range(cells)]
    return ArchSpec("sr", 4, nf, c, UpsamplerSpec(), skip="bicubic").validate()


def pruned_sr(rng, nf=32, cells=5, layers=5):
    """Uneven widths anywhere in 1..nf, as slimming and pruning leave them."""
    nf_k = rng.randint(nf // 3, nf)
    c = [[LayerSpec("conv3x3", rng.randint(2, nf)) for _ in range(layers - 1)] + [LayerSpec("conv3x3", nf_k)]
         for _ in range(cells)]
    return ArchSpec("sr", 4, nf_k, c, UpsamplerSpec(), skip="bicubic").validate()


def agd_translate(rng, nf=64, cells=9, layers=2):
    ws = width_choices(nf, RATIOS)
    spec = uniform_translate_spec(nf, cells, layers)
    spec.cells = [[LayerSpec(rng.choice(["conv3x3", "resblock"]), rng.choice(ws)) for _ in range(layers - 1)]
                  + [LayerSpec(rng.choice(["conv3x3", "resblock"]), nf)] for _ in range(cells)]
    f = frame_for_width(nf)
    spec.frame.stem, spec.frame.down = rng.choice(width_choices(f.stem, RATIOS)), [rng.choice(width_choices(f.down[0], RATIOS))]
    spec.frame.up = [rng.choice(width_choices(f.up[0], RATIOS)), rng.choice(width_choices(f.up[1], RATIOS))]
    return spec.validate()


def students(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for w in (12, 20, 28, 36):
        out.append(("uniform sr", uniform_sr_spec(4, w, 5, 5)))
    for w in (24, 40, 56):
        out.append(("uniform translate", uniform_translate_spec(w, 9, 2)))
    makers = [("agd sr", agd_sr), ("pruned sr", pruned_sr), ("agd translate", agd_translate)]
    i = 0
    while len(out) < n:
        name, make = makers[i % len(makers)]
        out.append((name, make(rng)))
        i += 1
    return out


def measure_whole(table, spec, hw):
    torch.manual_seed(0)
    return table.time_whole(build_student(spec).eval(), torch.rand(1, 3, *hw))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", default="ort", choices=["ort", "torch"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--students", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="table cache folder (default: the user cache)")
    a = p.parse_args()
    from gancompress.fileio import cache_root

    hw = (a.size, a.size)
    table = LatencyTable(a.runtime, a.threads, cache_dir=Path(a.cache) if a.cache else cache_root() / "latency",
                         quiet=False)
    todo = students(a.students, a.seed)
    t0 = time.perf_counter()
    from gancompress.arch.pieces import spec_pieces

    table.ensure([p for _, s in todo for p in spec_pieces(s, hw)], "latency table")
    t_table = time.perf_counter() - t0
    samples = [[] for _ in todo]
    for r in range(a.rounds):
        for i, (_, s) in enumerate(todo):
            samples[i].append(measure_whole(table, s, hw))
        print(f"round {r + 1}/{a.rounds} done", flush=True)
    whole = [min(v) for v in samples]
    # the noise floor: how much the same student, measured the same way, differs between rounds
    spread = [max(v) / min(v) - 1 for v in samples]
    rows = []
    for (name, s), m in zip(todo, whole):
        pred = table.predict(s, hw)
        rows.append({"student": name, "gmacs": spec_macs(s, hw) / 1e9, "nf": s.nf, "predicted_ms": pred,
                     "measured_ms": m, "error": pred / m - 1, "rounds_ms": samples[len(rows)]})
    errs = [abs(r["error"]) for r in rows]
    summary = {"runtime": a.runtime, "threads": a.threads, "size": a.size, "students": len(rows),
               "median_abs_error": statistics.median(errs), "max_abs_error": max(errs),
               "within_15pct": sum(e <= 0.15 for e in errs) / len(errs), "table_pieces": len(table.entries),
               "median_round_spread": statistics.median(spread), "max_round_spread": max(spread),
               "table_seconds_this_run": t_table, "machine": table.key}
    out = Path(__file__).resolve().parent / "out" / "latency"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.runtime}-{a.threads}t-{a.size}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(f"\n{a.runtime}, {a.threads} thread(s), {a.size}x{a.size}: median |error| "
          f"{100 * summary['median_abs_error']:.1f} %, max {100 * summary['max_abs_error']:.1f} %, "
          f"{100 * summary['within_15pct']:.0f} % of {len(rows)} students within 15 %; the same student measured "
          f"whole in {a.rounds} rounds differs by {100 * summary['median_round_spread']:.1f} % (median max/min, "
          f"worst {100 * summary['max_round_spread']:.1f} %)\n")
    print("| student | GMACs | predicted ms | measured ms | error |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['student']} (nf {r['nf']}) | {r['gmacs']:.2f} | {r['predicted_ms']:.1f} | "
              f"{r['measured_ms']:.1f} | {100 * r['error']:+.1f} % |")


if __name__ == "__main__":
    main()

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


def unshuffled_sr(rng, u=2):
    """A small AGD-like SR student whose frame runs at 1/u of the LR side (--unshuffle)."""
    nf = rng.choice([8, 12, 16, 24, 32, 48])
    spec = agd_sr(rng, nf, 3, 3)
    spec.unshuffle = u
    return spec.validate()


def students(n: int, seed: int, n_int8: int = 0, n_unshuffled: int = 0):
    rng = random.Random(seed)
    mixed = [("unshuffled sr", unshuffled_sr(rng, rng.choice([2, 2, 4]))) for _ in range(n_unshuffled)]
    for _ in range(n_int8):  # each with its float twin, to check that the int8 layers pay
        spec = mixed_sr(rng)
        mixed += [("mixed int8 sr", spec), ("its float twin", float_twin(spec))]
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
    return out + mixed


def mixed_sr(rng, nf=32, cells=5, layers=5):
    """An AGD SR student with about half of its cell layers int8 (--search-int8)."""
    spec = agd_sr(rng, nf, cells, layers)
    for cell in spec.cells:
        for layer in cell:
            if rng.random() < 0.5:
                layer.op += "@int8"
    return spec.validate()


def float_twin(spec):
    twin = ArchSpec.from_dict(spec.to_dict())
    for cell in twin.cells:
        for layer in cell:
            layer.op = layer.op.replace("@int8", "")
    return twin.validate()


def measure_whole(table, spec, hw):
    """The student measured whole; with int8 layers, as `export --int8` writes it (only those
    layers quantized, the task's recipe)."""
    import tempfile

    from gancompress.export.int8 import quantize_onnx_int8
    from gancompress.export.student import export_onnx
    from gancompress.quant.fake import int8_layer_names

    torch.manual_seed(0)
    model, x = build_student(spec).eval(), torch.rand(1, 3, *hw)
    if table.runtime == "ort-int8":  # the whole student as `export --int8` writes it
        from gancompress.latency.runtimes import int8_onnx_bytes

        return table.time_whole(int8_onnx_bytes(model, x, spec.task), x)
    if not int8_layer_names(spec):
        return table.time_whole(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, q = Path(tmp) / "s.onnx", Path(tmp) / "s_int8.onnx"
        export_onnx(model, fp32)
        quantize_onnx_int8(fp32, q, [torch.rand(1, 3, 32, 32) for _ in range(2)], task=spec.task,
                           only_layers=int8_layer_names(spec))
        return table.time_whole(q.read_bytes(), x)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", default="ort", choices=["ort", "ort-int8", "torch"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--students", type=int, default=24)
    p.add_argument("--int8", type=int, default=0, help="also N mixed-precision SR students and their float twins")
    p.add_argument("--unshuffled", type=int, default=0, help="also N small SR students with --unshuffle 2 or 4")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="table cache folder (default: the user cache)")
    a = p.parse_args()
    from gancompress.fileio import cache_root

    hw = (a.size, a.size)
    table = LatencyTable(a.runtime, a.threads, cache_dir=Path(a.cache) if a.cache else cache_root() / "latency",
                         quiet=False)
    todo = students(a.students, a.seed, a.int8, a.unshuffled)
    if a.runtime == "ort-int8":  # priced for SR students only (config.validate_options)
        todo = [(name, s) for name, s in todo if s.task == "sr"]
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
    pairs = [(a_, b_) for a_, b_ in zip(rows, rows[1:]) if a_["student"] == "mixed int8 sr"]
    int8_check = [{"predicted_ratio": a_["predicted_ms"] / b_["predicted_ms"],
                   "measured_ratio": a_["measured_ms"] / b_["measured_ms"]} for a_, b_ in pairs]
    errs = [abs(r["error"]) for r in rows]
    summary = {"runtime": a.runtime, "threads": a.threads, "size": a.size, "students": len(rows),
               "median_abs_error": statistics.median(errs), "max_abs_error": max(errs),
               "within_15pct": sum(e <= 0.15 for e in errs) / len(errs), "table_pieces": len(table.entries),
               "median_round_spread": statistics.median(spread), "max_round_spread": max(spread),
               "table_seconds_this_run": t_table, "machine": table.key, "int8_vs_float_twin": int8_check}
    out = Path(__file__).resolve().parent / "out" / "latency"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.runtime}-{a.threads}t-{a.size}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(f"\n{a.runtime}, {a.threads} thread(s), {a.size}x{a.size}: median |error| "
          f"{100 * summary['median_abs_error']:.1f} %, max {100 * summary['max_abs_error']:.1f} %, "
          f"{100 * summary['within_15pct']:.0f} % of {len(rows)} students within 15 %; the same student measured "
          f"whole in {a.rounds} rounds differs by {100 * summary['median_round_spread']:.1f} % (median max/min, "
          f"worst {100 * summary['max_round_spread']:.1f} %)\n")
    for c in int8_check:
        print(f"mixed int8 / float twin: predicted {c['predicted_ratio']:.2f}, measured {c['measured_ratio']:.2f}")
    print("| student | GMACs | predicted ms | measured ms | error |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['student']} (nf {r['nf']}) | {r['gmacs']:.2f} | {r['predicted_ms']:.1f} | "
              f"{r['measured_ms']:.1f} | {100 * r['error']:+.1f} % |")


if __name__ == "__main__":
    main()

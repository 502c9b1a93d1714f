"""Headroom: how close a student runs to what the machine can do, and which layers waste it.

For every piece of a run's student (its spec, at the budget's size) the achieved GMAC/s on the
runtime (MACs by FlopCounterMode over the piece's time in the latency table), against the peak of
a dense conv 3x3 of similar size on the same machine and threads (the best GMAC/s over a width
sweep of conv 3x3 w -> w at the same size). Also prints that sweep: on ONNX Runtime's CPU kernels
some widths run far below the others, which a MACs budget cannot see.

    python bench/headroom.py bench/out/srgan/agd_1over10_ms [--runtime ort --threads 1 --size 256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gancompress.arch.cost import measure_macs  # noqa: E402
from gancompress.arch.pieces import Piece, spec_pieces  # noqa: E402
from gancompress.arch.spec import ArchSpec  # noqa: E402
from gancompress.fileio import cache_root  # noqa: E402
from gancompress.latency.table import LatencyTable  # noqa: E402


def piece_macs(p: Piece) -> int:
    return measure_macs(p.build(), (p.h, p.w), p.cin)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run directory (its search/spec.json) or a spec.json")
    ap.add_argument("--runtime", default="ort", choices=["ort", "torch"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    path = Path(a.run)
    spec = ArchSpec.load(path / "search" / "spec.json" if path.is_dir() else path)
    hw = (a.size, a.size)
    table = LatencyTable(a.runtime, a.threads, cache_dir=cache_root() / "latency", quiet=False)
    pieces = spec_pieces(spec, hw)
    cells_hw = (pieces[-1].h, pieces[-1].w)
    sweep = [Piece(spec.task, "layer", w, w, *cells_hw, (("op", "conv3x3"), ("last", 0))) for w in range(8, 68, 4)]
    table.ensure(pieces + sweep, "headroom")
    print(f"conv 3x3 w -> w at {cells_hw[0]}x{cells_hw[1]} ({table.describe()}):\n")
    print("| width | ms | GMAC/s |\n|---:|---:|---:|")
    peak = 0.0
    for p in sweep:
        rate = piece_macs(p) / table.ms(p) / 1e6
        peak = max(peak, rate)
        print(f"| {p.cin} | {table.ms(p):.2f} | {rate:.1f} |")
    print(f"\npeak dense conv 3x3: {peak:.1f} GMAC/s\n")
    total_ms = table.sum(pieces)
    total_macs = sum(piece_macs(p) for p in pieces)
    print(f"student {path}: {total_macs / 1e9:.2f} GMACs in {total_ms:.1f} ms predicted = "
          f"{total_macs / total_ms / 1e6:.1f} GMAC/s, {100 * total_macs / total_ms / 1e6 / peak:.0f} % of the peak\n")
    print("| piece | MACs (M) | ms | share of time | GMAC/s | % of peak |\n|---|---:|---:|---:|---:|---:|")
    by_key: dict[str, list] = {}
    for p in pieces:
        by_key.setdefault(p.key, [p, 0])[1] += 1
    rows = []
    for key, (p, n) in by_key.items():
        macs, ms = piece_macs(p), table.ms(p)
        rows.append((n * ms, f"| {key}{f' (x{n})' if n > 1 else ''} | {n * macs / 1e6:.0f} | {n * ms:.2f} | "
                              f"{100 * n * ms / total_ms:.0f} % | {macs / ms / 1e6:.1f} | "
                              f"{100 * macs / ms / 1e6 / peak:.0f} % |"))
    for _, line in sorted(rows, reverse=True):
        print(line)


if __name__ == "__main__":
    main()

"""Does int8 pay on this CPU, and from which width? fp32 vs int8 ONNX Runtime time of the same layers.

A chain of conv 3x3 + LeakyReLU layers at width w (the SR students' layer), exported once in fp32
and once quantized as `gancompress export --int8` quantizes an SR student (the `qlinear` recipe:
QLinearConv / QLinearLeakyRelu, 7-bit weights), timed in one process, interleaved round by round,
medians. MACs per second are the chain's MACs (FlopCounterMode convention: conv only) over its time.
On a CPU whose int8 kernels pay (VNNI, AVX-512) the int8 column should fall well below fp32;
where it does not, an int8 student is no faster than its float twin whatever its widths.

    python bench/int8_width.py --widths 8,16,24,32,48,64 --size 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gancompress.latency.runtimes import int8_onnx_bytes, onnx_bytes  # noqa: E402


class Chain(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(layers)])

    def forward(self, x):
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.2)
        return x


def session(model: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="8,16,24,32,48,64")
    ap.add_argument("--layers", type=int, default=4, help="layers in the chain (conversions at its ends only)")
    ap.add_argument("--size", type=int, default=256, help="input side (default 256, the budgets' LR size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(0)
    for w in (int(v) for v in a.widths.split(",")):
        x = torch.rand(1, w, a.size, a.size)
        chain = Chain(w, a.layers).eval()
        sessions = {"fp32": session(onnx_bytes(chain, x), a.threads),
                    "int8": session(int8_onnx_bytes(chain, x, "sr"), a.threads)}
        feed = {"x": x.numpy()}
        times = {k: [] for k in sessions}
        for s in sessions.values():  # warm-up
            s.run(None, feed)
        for _ in range(a.rounds):
            for k, s in sessions.items():
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(1000 * (time.perf_counter() - t))
        ms = {k: statistics.median(v) for k, v in times.items()}
        macs = a.layers * w * w * 9 * a.size * a.size
        row = {"width": w, "layers": a.layers, "size": a.size, "threads": a.threads, "ms": ms,
               "gmacs_per_s": {k: macs / v / 1e6 for k, v in ms.items()}, "int8_vs_fp32": ms["int8"] / ms["fp32"]}
        print(json.dumps(row))
        print(f"width {w:3d}: fp32 {ms['fp32']:7.2f} ms ({row['gmacs_per_s']['fp32']:5.1f} GMAC/s), "
              f"int8 {ms['int8']:7.2f} ms ({row['gmacs_per_s']['int8']:5.1f} GMAC/s), "
              f"int8/fp32 {row['int8_vs_fp32']:.2f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

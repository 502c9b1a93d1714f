"""Peak memory (RSS) of `gancompress upscale` on a big input (BENCHMARKS.md, "Reliability").

Makes a SIDE x SIDE PNG from the bundled photographs (resized, so it looks like a photo), a x4 SR
student (uniform conv 3x3, nf 16, 2 cells x 2 layers: small, so the run takes minutes; the memory
of a tile's activations is a few MB at any usual width, so the peak does not depend on it), then
runs `gancompress upscale` on it in a child process under /usr/bin/time -v and prints the child's
maximum resident set size, the wall time and the output's size (read from its PNG header).

    python bench/upscale_memory.py [--side 10000] [--threads 2] [--work /tmp/gc_upscale_mem]
    python bench/upscale_memory.py --task translate --side 3072   # `apply`, whole-image inference

With --task translate the student is a uniform translation student of width 64 (stem 16, 6 cells
x 2 layers: about the demo's 1/10 student) run by `gancompress apply` on the whole image, which is
what --max-pixels (default 3072^2 for translation) bounds.
"""

from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import time
from pathlib import Path


def make_input(path: Path, side: int) -> None:
    import numpy as np
    from PIL import Image

    from gancompress.data.bundled import bundled_photographs

    Image.MAX_IMAGE_PIXELS = None
    photos = [im for _, im in bundled_photographs("train")]
    cols = 4
    cell = -(-side // cols)
    canvas = Image.new("RGB", (side, side))
    for k in range(cols * cols):
        im = photos[k % len(photos)]
        arr = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        tile = Image.fromarray(arr).resize((cell, cell), Image.BICUBIC)
        canvas.paste(tile, ((k % cols) * cell, (k // cols) * cell))
    canvas.save(path, compress_level=1)


def make_student(folder: Path, task: str) -> None:
    import torch

    from gancompress.arch.build import build_student
    from gancompress.arch.cost import spec_macs
    from gancompress.arch.spec import uniform_sr_spec, uniform_translate_spec
    from gancompress.export.student import save_student

    torch.manual_seed(0)
    spec = uniform_translate_spec(64, 6, 2) if task == "translate" else uniform_sr_spec(4, 16, 2, 2)
    save_student(build_student(spec), spec, folder)
    print(f"student: {spec_macs(spec) / 1e9:.2f} GMACs at 256x256")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/gc_upscale_mem")
    ap.add_argument("--task", default="sr", choices=["sr", "translate"])
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"in_{a.side}.png"
    if not src.is_file():
        make_input(src, a.side)
    make_student(work / f"student_{a.task}", a.task)
    out = work / "out"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "gancompress.cli",
           "apply" if a.task == "translate" else "upscale", str(work / f"student_{a.task}"),
           str(src), "--out", str(out), "--threads", str(a.threads), "--quiet"]
    print(" ".join(cmd[2:]))
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        sys.exit(f"upscale failed ({p.returncode}):\n{p.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    png = out / f"{src.stem}_{'translated' if a.task == 'translate' else 'x4'}.png"
    with open(png, "rb") as f:
        f.read(16)
        w, h = struct.unpack(">II", f.read(8))
    print(f"input {a.side}x{a.side}, output {w}x{h} ({png.stat().st_size / 1e9:.2f} GB PNG); "
          f"peak RSS {rss_kb / 1024 ** 2:.2f} GiB; wall {wall:.0f} s with {a.threads} threads")
    png.unlink()


if __name__ == "__main__":
    main()

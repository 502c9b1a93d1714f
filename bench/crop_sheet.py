"""A crop sheet of a translation run: input / teacher / student for a few held-out images, one row
each, in one JPEG (what a person compares at a glance; BENCHMARKS.md links it).

    python bench/crop_sheet.py RUN --teacher KIND:PATH [--teacher-range 0,1] [--trust-teacher-code] \
        --images bench/out/translate/eval_A --names Set14_001_0,Set14_007_2,Set5_002_2,bundled_chelsea_4 \
        --out bench/sheets/style_1over5.jpg
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--teacher-range", default=None)
    ap.add_argument("--trust-teacher-code", action="store_true")
    ap.add_argument("--images", required=True, help="folder of held-out images")
    ap.add_argument("--names", required=True, help="comma-separated image stems")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quality", type=int, default=88)
    a = ap.parse_args()

    from gancompress import load_student
    from gancompress.cli_options import _parse_range
    from gancompress.teachers.checks import load_task_teacher
    from gancompress.data.images import load_image
    from gancompress.report.images import side_by_side

    rng = _parse_range(a.teacher_range)
    teacher = load_task_teacher("translate", a.teacher, None, rng, trust_code=a.trust_teacher_code)
    student, _ = load_student(a.run)
    rows = []
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for name in a.names.split(","):
            x = load_image(Path(a.images) / f"{name}.png")[None]
            panels = [("input", x), ("teacher", teacher.predict(x)), ("student", student(x).clamp(0, 1))]
            rows.append(Image.open(side_by_side(panels, Path(tmp) / f"{name}.png")).convert("RGB"))
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(a.out, quality=a.quality)
    print(f"wrote {a.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()

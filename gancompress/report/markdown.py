"""Plain Markdown tables and report files.

Reports are written atomically (temporary file in the same folder, then `os.replace`) so a
crash or Ctrl-C mid-write never leaves a half-written report that looks complete.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from ..fileio import atomic_writer

Fmt = Union[str, Callable[[Any], str], None]

MISSING = "n/a"


def _format(value: Any, fmt: Fmt) -> str:
    if value is None:
        return MISSING
    if callable(fmt):
        text = fmt(value)
    elif fmt is None or fmt == "":
        text = str(value)
    elif "{" in fmt:
        text = fmt.format(value)
    else:
        try:
            text = format(value, fmt)
        except (ValueError, TypeError):  # e.g. ".2f" applied to a string: show it as is
            text = str(value)
    # a raw "|" or newline would break the table row
    return str(text).replace("|", "\\|").replace("\n", " ")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, Fmt]]) -> str:
    """A GitHub-flavoured Markdown table.

    `columns` is [(key, header, fmt)], where fmt is a format spec (".2f"), a format string
    ("{:.1f} dB"), a callable, or None for str(). A missing key or None shows as "n/a".
    Columns whose values are all numbers are right-aligned so digits line up.
    """
    if not columns:
        raise ValueError("markdown_table needs at least one column")
    header = "| " + " | ".join(h.replace("|", "\\|") for _, h, _ in columns) + " |"
    aligns = []
    for key, _, _ in columns:
        values = [r.get(key) for r in rows if r.get(key) is not None]
        aligns.append("---:" if values and all(_is_number(v) for v in values) else "---")
    lines = [header, "| " + " | ".join(aligns) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(_format(r.get(key), fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines) + "\n"


def write_report(path: str | os.PathLike, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write `# title` then one `## heading` + body per section to `path`, atomically."""
    parts = [f"# {title}\n"]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body.rstrip()}\n")
    text = "\n".join(parts)
    path = Path(path)
    with atomic_writer(path, 0o644) as f:  # readable like any file
        f.write(text.encode("utf-8"))
    return path

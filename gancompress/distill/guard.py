"""Checks that keep non-finite values out of training: the teacher's targets are checked when they
are computed (a teacher that outputs NaN would train a student on nothing). The training loop's
own guard (roll back, halve the learning rate) lives in `loop.run_loop`."""

from __future__ import annotations

import torch

from ..errors import UserError


def check_finite_targets(names, pairs, teacher: str) -> None:
    """Refuse teacher targets that hold NaN/inf, naming the images they came from."""
    bad = [str(n) for n, (x, t) in zip(names, pairs)
           if not (bool(torch.isfinite(t).all()) and bool(torch.isfinite(x).all()))]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UserError(f"teacher {teacher} outputs non-finite values (NaN/inf) on {len(bad)} of {len(names)} "
                        f"training images ({shown}); nothing was trained or saved: check the teacher file "
                        "(and --teacher-range), or remove those images")

"""The distillation batches of every method, chosen from the run's options in one place."""

from __future__ import annotations

from ..distributed import world


def make_sampler(cfg, pairs, names, patch, batch, seed, teacher, fixed: bool = False, split: bool = True):
    """SR and `--labels whole` cut aligned crops out of (input, teacher output) pairs
    (PatchSampler); translation with `--labels crop` (default) runs the teacher on each crop
    (TeacherViewSampler). `fixed`: no flips or rescaling (held-out scoring). `split`: every rank
    draws its own batches (training); off, all ranks draw the same."""
    from .patches import PatchSampler

    rank, ws = world() if split else (0, 1)
    if cfg.task == "translate" and cfg.labels == "crop":
        from .teacher_views import TeacherViewSampler

        return TeacherViewSampler([p[0] for p in pairs], teacher, patch, batch, seed, names=names, rank=rank,
                                  world_size=ws, augment=not fixed, rescale=not fixed,
                                  reuse=1 if fixed else cfg.label_reuse)
    opts = cfg.sampler_options()
    if fixed:
        opts["augment"] = False
    return PatchSampler(pairs, patch, cfg.scale, batch, seed, names=names, rank=rank, world_size=ws, **opts)

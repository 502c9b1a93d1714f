"""The one training loop every stage uses: resumable, checkpointed atomically, progress-barred,
and ready for `torchrun` (rank 0 alone writes and draws; gradients are averaged across ranks).

A stage hands over a `step(i) -> dict` function and the objects whose state must survive an
interrupt (modules, optimizers, schedulers, samplers: anything with state_dict/load_state_dict).
Checkpoints hold tensors and plain Python values only, so they load with `weights_only=True`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm


from ..distributed import is_main, world


MAGIC = b"GCCKPT1\n"
_DIGEST = 32
PREVIOUS = ".prev"


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be trusted (wrong checksum, truncated, unreadable)."""


def previous_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + PREVIOUS)


def save_atomic(obj, path: Path, keep_previous: bool = True) -> None:
    """Write a checksummed checkpoint atomically; the one it replaces becomes NAME.prev."""
    import hashlib

    from ..fileio import atomic_write_bytes, torch_save_bytes

    path = Path(path)
    payload = torch_save_bytes(obj)
    data = MAGIC + hashlib.sha256(payload).digest() + payload
    if keep_previous and path.is_file():
        # the new file is complete on disk before the old one steps aside: at every instant a good
        # checkpoint exists under one of the two names
        from ..fileio import fsync_dir, temp_path

        tmp = temp_path(path)
        atomic_write_bytes(tmp, data)
        os.replace(path, previous_path(path))
        os.replace(tmp, path)
        fsync_dir(path.parent)
    else:
        atomic_write_bytes(path, data)


def load_checkpoint(path: Path):
    """Load a checkpoint with weights_only=True; raises DamagedCheckpoint if it is torn."""
    import hashlib
    import io

    path = Path(path)
    data = path.read_bytes()
    if data.startswith(MAGIC):
        digest, payload = data[len(MAGIC):len(MAGIC) + _DIGEST], data[len(MAGIC) + _DIGEST:]
        if len(digest) < _DIGEST or hashlib.sha256(payload).digest() != digest:
            raise DamagedCheckpoint(f"{path} is torn (checksum mismatch, {len(data)} bytes)")
    else:
        payload = data
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated archive raises RuntimeError, EOFError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DamagedCheckpoint(f"{path} cannot be read ({first})") from None


def load_resume_checkpoint(path: Path, say=None):
    """The newest good checkpoint of `path` (itself, else NAME.prev), or None if there is none.
    A torn newest one is reported through `say` and skipped; if no copy is good: UserError."""
    from ..errors import UserError, warn

    say = say or warn
    path = Path(path)
    prev = previous_path(path)
    problems = []
    for cand in (path, prev):
        if not cand.is_file():
            continue
        try:
            ck = load_checkpoint(cand)
        except DamagedCheckpoint as e:
            problems.append(str(e))
            continue
        if problems:
            say(f"{problems[0]}; resuming from the previous checkpoint {cand} (step {int(ck['step'])})")
        return ck
    if problems:
        raise UserError(f"{'; '.join(problems)}, and no earlier good copy exists; delete {path}"
                        f"{' and ' + str(prev) if prev.is_file() else ''} to restart this stage from its beginning")
    return None


def curve_path(ckpt_path: Path) -> Path:
    """Where run_loop writes the training curve of the stage checkpointed at `ckpt_path`."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(ckpt_path.stem + ".curve.json")


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint, its previous copy and its curve (a finished job that needs no resume)."""
    for p in (Path(path), previous_path(path), curve_path(path)):
        p.unlink(missing_ok=True)


# ---- non-finite values and divergence ---------------------------------------------------------
MAX_ROLLBACKS = 3


class Diverged(Exception):
    """Raised by a step function that sees its run go wrong while every value is still finite
    (e.g. held-out PSNR collapsing by tens of dB): `run_loop` treats it as a non-finite value,
    rolling back to the last good state with the learning rate halved. The step that raises must
    not have been checkpointed, so the state it judges is never saved."""


def _first_nonfinite(logs, modules) -> str | None:
    """What is not finite after a step: a logged loss value, or a parameter/buffer; else None."""
    import math

    for k, v in (logs or {}).items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = float(v)
        if isinstance(v, float) and not math.isfinite(v):
            return f"loss value {k!r} = {v}"
    for mname, m in modules.items():
        tensors = [t for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
        if not tensors:
            continue
        with torch.no_grad():
            peaks = torch.stack([t.detach().abs().amax() if t.numel() else t.new_zeros(()) for t in tensors])
        if not bool(torch.isfinite(peaks).all()):
            bad = int((~torch.isfinite(peaks)).nonzero()[0])
            names = [n for n, t in (*m.named_parameters(), *m.named_buffers()) if t.is_floating_point()]
            return f"{mname} parameter {names[bad] if bad < len(names) else bad!r}"
    return None


class _LRScale:
    """Scales every optimizer's learning rate by `scale` during `optimizer.step()` only, so the
    schedulers (which set or read the group's lr between steps) never see the scaled value."""

    def __init__(self, optimizers):
        self.scale = 1.0
        self.handles = []
        for opt in optimizers:
            self.handles.append(opt.register_step_pre_hook(self._pre))
            self.handles.append(opt.register_step_post_hook(self._post))

    def _pre(self, opt, args, kwargs):
        if self.scale != 1.0:
            opt._gc_lr = [g["lr"] for g in opt.param_groups]
            for g in opt.param_groups:
                g["lr"] = g["lr"] * self.scale

    def _post(self, opt, args, kwargs):
        saved = opt.__dict__.pop("_gc_lr", None)
        if saved is not None:
            for g, lr in zip(opt.param_groups, saved):
                g["lr"] = lr

    def remove(self):
        for h in self.handles:
            h.remove()


def run_loop(name: str, total: int, step_fn, stateful: dict, ckpt_path: Path, ckpt_every: int = 100,
             quiet: bool = False, extra_state: dict | None = None) -> dict:
    """Run `step_fn(i)` for i in [start, total), resuming from `ckpt_path` if present.

    `stateful`: name -> object with state_dict()/load_state_dict(). `extra_state`: a dict of plain
    values that is saved and restored in place (for things like an adaptive penalty weight).
    Returns the last step's logs. The checkpoint is kept after completion so a re-run is a no-op.
    (Long on purpose: checkpointing, snapshots and NaN rollback are closures over the loop's own
    state; split into functions they would pass that state back and forth on every step.)

    Non-finite values: after every step the logged float values and every parameter of the modules
    in `stateful` are checked. A NaN/inf (or a `Diverged` raised by the step) rolls everything back
    to the last good state (an in-memory copy taken at each checkpoint) and halves the learning
    rate of every optimizer in `stateful` (a multiplier applied during optimizer.step(), kept in
    the checkpoint, so it survives a resume);
    after MAX_ROLLBACKS rollbacks the next one saves the last good state and stops with a UserError
    (re-running the command continues from there, at half the rate again).
    """
    import copy

    from ..errors import UserError, warn

    extra_state = extra_state if extra_state is not None else {}
    start = 0
    ckpt_path = Path(ckpt_path)
    rank, n_ranks = world()
    guard = {"lr_scale": 1.0, "rollbacks": 0}
    curve: list = []  # the logged values averaged between checkpoints: the report's training curves
    ck = load_resume_checkpoint(ckpt_path, say=warn if is_main() else (lambda m: None))
    if ck is not None:
        for k, obj in stateful.items():
            per_rank = ck.get("per_rank", {}).get(k)
            obj.load_state_dict(per_rank[rank] if per_rank and rank < len(per_rank) else ck["state"][k])
        extra_state.update(ck.get("extra", {}))
        guard.update(ck.get("guard", {}))
        torch.set_rng_state(ck["rng"])
        if ck.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        start = int(ck["step"])
        curve = [e for e in ck.get("curve", []) if e["step"] <= start]
    del ck
    modules = {k: o for k, o in stateful.items() if isinstance(o, torch.nn.Module)}
    lr_scale = _LRScale([o for o in stateful.values() if isinstance(o, torch.optim.Optimizer)])
    lr_scale.scale = float(guard["lr_scale"])
    logs: dict = {}
    bar = tqdm(total=total, initial=start, desc=name, disable=quiet or not is_main(), dynamic_ncols=True,
               mininterval=2.0)

    def checkpoint(step):
        # samplers draw different patches on each rank: keep every rank's position
        per_rank = {}
        if n_ranks > 1:
            for k, o in stateful.items():
                if "sampler" in k:
                    gathered = [None] * n_ranks
                    dist.all_gather_object(gathered, o.state_dict())
                    per_rank[k] = gathered
        if is_main():
            save_atomic({"step": step, "state": {k: o.state_dict() for k, o in stateful.items()},
                         "per_rank": per_rank, "extra": dict(extra_state), "guard": dict(guard), "curve": curve,
                         "rng": torch.get_rng_state(),
                         "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                        ckpt_path)

    def snapshot(step):
        return {"step": step, "state": {k: copy.deepcopy(o.state_dict()) for k, o in stateful.items()},
                "extra": copy.deepcopy(extra_state), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def restore(snap):
        for k, o in stateful.items():
            o.load_state_dict(copy.deepcopy(snap["state"][k]))  # a copy: the snapshot may be needed again
        extra_state.clear()
        extra_state.update(copy.deepcopy(snap["extra"]))
        torch.set_rng_state(snap["rng"])
        if snap["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(snap["cuda_rng"])

    good = snapshot(start)
    i = start
    sums: dict = {}

    def record(step):
        """One point of the training curve (the mean of each logged value since the last one),
        also written beside the checkpoint as NAME.curve.json."""
        import json

        from ..fileio import atomic_write_text

        curve.append({"step": step, **{k: s / n for k, (s, n) in sums.items()}})
        sums.clear()
        if is_main():
            atomic_write_text(curve_path(ckpt_path), json.dumps({"name": name, "total": total, "points": curve}))

    try:
        while i < total:
            try:
                logs = step_fn(i)
                bad = _first_nonfinite(logs, modules)
            except Diverged as e:
                logs, bad = {}, str(e)
            if n_ranks > 1:  # every rank rolls back together
                flag = torch.tensor([1.0 if bad else 0.0])
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                bad = bad or ("a non-finite value on another rank" if flag.item() else None)
            if bad:
                restore(good)
                sums.clear()
                lr_scale.scale = guard["lr_scale"] = guard["lr_scale"] * 0.5
                if guard["rollbacks"] >= MAX_ROLLBACKS:
                    guard["rollbacks"] = 0  # a re-run gets its own rollbacks, at the halved rate
                    checkpoint(good["step"])
                    raise UserError(
                        f"{name} diverged: {bad} at step {i + 1} after {MAX_ROLLBACKS} rollbacks with halved "
                        f"learning rates; the last good state (step {good['step']}) is saved in {ckpt_path}: "
                        f"run the same command again to continue from it at x{guard['lr_scale']:g} the learning "
                        "rate, or start over with a lower --lr (and check the teacher and data)")
                guard["rollbacks"] += 1
                if is_main():
                    warn(f"{name}: {bad} at step {i + 1}; rolled back to step {good['step']} with the learning "
                         f"rate halved (x{guard['lr_scale']:g} of the schedule), rollback {guard['rollbacks']} of "
                         f"{MAX_ROLLBACKS}")
                i = good["step"]
                bar.n = i
                bar.refresh()
                continue
            bar.update(1)
            for k, v in (logs or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    acc = sums.setdefault(k, [0.0, 0])
                    acc[0] += float(v)
                    acc[1] += 1
            if logs:
                bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items()},
                                refresh=False)
            if (i + 1) % ckpt_every == 0 or i + 1 == total:
                record(i + 1)
                checkpoint(i + 1)
                good = snapshot(i + 1)
            i += 1
    finally:
        lr_scale.remove()
        bar.close()
    return logs

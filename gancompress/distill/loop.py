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


# ---- distributed helpers ----------------------------------------------------------------------
def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_distributed(device: str) -> str:
    """Join the process group when launched by torchrun; returns the device this rank should use."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        from datetime import timedelta

        # rank 0 evaluates alone at the end while the others wait: allow it time
        dist.init_process_group(backend, timeout=timedelta(hours=3))
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    return device


def barrier() -> None:
    """Wait for every rank (no-op without torchrun): rank 0 writes, the others read after this."""
    if world()[1] > 1:
        dist.barrier()


def finish_distributed() -> None:
    """Let every rank leave together and tear the process group down cleanly (a rank that simply
    exits while another still works aborts inside the communication library)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(params) -> None:
    """All-reduce gradients (DDP semantics) so every rank takes the same step. Done by hand rather
    than with the DDP wrapper because the search runs several forward passes per step over
    sub-networks that use different parameters (the sandwich rule)."""
    _, n = world()
    if n == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= n


def broadcast_parameters(params) -> None:
    """Start every rank from rank 0's weights."""
    if world()[1] > 1:
        for p in params:
            dist.broadcast(p.data, 0)


# ---- checkpoints ------------------------------------------------------------------------------
def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: an interrupt never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def run_loop(name: str, total: int, step_fn, stateful: dict, ckpt_path: Path, ckpt_every: int = 100,
             quiet: bool = False, extra_state: dict | None = None) -> dict:
    """Run `step_fn(i)` for i in [start, total), resuming from `ckpt_path` if present.

    `stateful`: name -> object with state_dict()/load_state_dict(). `extra_state`: a dict of plain
    values that is saved and restored in place (for things like an adaptive penalty weight).
    Returns the last step's logs. The checkpoint is kept after completion so a re-run is a no-op.
    """
    extra_state = extra_state if extra_state is not None else {}
    start = 0
    ckpt_path = Path(ckpt_path)
    rank, n_ranks = world()
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        for k, obj in stateful.items():
            per_rank = ck.get("per_rank", {}).get(k)
            obj.load_state_dict(per_rank[rank] if per_rank and rank < len(per_rank) else ck["state"][k])
        extra_state.update(ck.get("extra", {}))
        torch.set_rng_state(ck["rng"])
        if ck.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        start = int(ck["step"])
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
                         "per_rank": per_rank, "extra": dict(extra_state), "rng": torch.get_rng_state(),
                         "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                        ckpt_path)

    for i in range(start, total):
        logs = step_fn(i)
        bar.update(1)
        if logs:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items()}, refresh=False)
        if (i + 1) % ckpt_every == 0 or i + 1 == total:
            checkpoint(i + 1)
    bar.close()
    return logs

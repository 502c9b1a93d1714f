"""Distributed helpers for `torchrun` (DDP without a home-made launcher): who this process is,
barriers, and gradient/parameter averaging. Off torchrun every helper is a no-op for one process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


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
# A checkpoint file is MAGIC + sha256(payload) + payload (a torch.save archive), written atomically
# and durably (fileio); the one before it is kept as NAME.prev. A file whose checksum does not match
# (torn by a crash of the machine, truncated by a copy) is never loaded: resuming falls back to the
# previous one and says so. Files without MAGIC (written by older versions) load as plain archives.


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (pickled: for small objects such as a latency table's
    entries); `obj` itself outside torchrun."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

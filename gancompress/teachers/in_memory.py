"""Teachers handed over as Python objects (`compress(teacher=my_module)`), not as files.

A run's config.json must name its teacher, and resuming must notice when the teacher changed. A
module is therefore named by a fingerprint of what decides its outputs, its class and its
state_dict: `python:<hex>`. The module itself is kept in this process's registry; a later process
(`gancompress eval RUN` from the shell) cannot rebuild it from the name and is told to pass the
teacher again.

The contract (the same as every teacher): the module takes a float (N, 3, H, W) RGB batch and
returns an RGB batch (for SR, `scale` times larger). It works in [0, 1] unless `teacher_range`
says otherwise (e.g. (-1, 1) for a tanh CycleGAN generator).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from ..errors import UserError

PREFIX = "python:"
_REGISTRY: dict[str, nn.Module] = {}


def module_fingerprint(module: nn.Module) -> str:
    """16 hex digits of sha256 over the module's class and every state_dict entry (name, dtype,
    shape, bytes): equal for the same weights in the same class, different when any weight moves."""
    h = hashlib.sha256()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for name, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r}".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def register_module_teacher(module) -> str:
    """The `python:<fingerprint>` name of a module teacher, registered for this process."""
    from . import Teacher

    if isinstance(module, Teacher):  # already wrapped: its model is what the user gave
        module = module.model
    if not isinstance(module, nn.Module):
        raise UserError(f"teacher must be a torch.nn.Module, a file path or 'KIND:PATH', got "
                        f"{type(module).__name__}")
    ref = PREFIX + module_fingerprint(module)
    _REGISTRY[ref] = module
    return ref


def teacher_ref(teacher) -> str:
    """A teacher as a run's config names it: a path or KIND:PATH as given, a module by fingerprint."""
    import os

    return str(teacher) if isinstance(teacher, (str, os.PathLike)) else register_module_teacher(teacher)


def is_module_ref(ref) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def registered_module(ref: str) -> nn.Module:
    """The module registered under `ref`, or a one-line error saying how to give it again."""
    try:
        return _REGISTRY[ref]
    except KeyError:
        raise UserError(f"teacher {ref} was a Python module handed to gancompress in another process; "
                        "pass the same module again (compress(teacher=module, ...), "
                        "evaluate_run(run, data, teacher=module)) or, from the shell, --teacher KIND:PATH "
                        "(e.g. a TorchScript file saved with torch.jit.trace)") from None

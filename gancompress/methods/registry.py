"""Every compression method, by the name `--method` takes. Adding a method: one module under
methods/ that defines `METHOD` (a methods.base.Method), and its module name here."""

from __future__ import annotations

import importlib

from ..errors import UserError

METHOD_MODULES = ("agd", "gan_compression", "gan_slimming", "uniform", "prune")

METHODS = {m.name: m for m in (importlib.import_module(f"{__package__}.{mod}").METHOD for mod in METHOD_MODULES)}
ALIASES = {a: m.name for m in METHODS.values() for a in m.aliases}


def method_names() -> list[str]:
    """Every accepted --method spelling: names, then aliases."""
    return list(METHODS) + list(ALIASES)


def get_method(name: str):
    m = METHODS.get(ALIASES.get(name, name))
    if m is None:
        raise UserError(f"unknown method {name!r}; available: {', '.join(method_names())}")
    return m

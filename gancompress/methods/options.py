"""CLI options generated from a method's config dataclass, so a method declares each option once:
its field (name, type, default) and `metadata` (help, flag, choices, parse). Every generated
option defaults to None on the command line, and a value not given takes the field's default, so
`--help`, the CLI and the Python API cannot disagree about defaults.

metadata keys: help; flag (default `--` + the field name with dashes); aliases (older flags); choices; type (when the
default is None); parse (text -> value, e.g. a comma list); nested (a dataclass field whose own
fields are options); cli=False (not an option). A bool field is a switch that flips its default
(`--no-NAME` for a field that defaults to True, unless a flag is given); its aliases are the
older switch of a default that was flipped: accepted, and they set the (new) default.
"""

from __future__ import annotations

import dataclasses


def _flag(f: dataclasses.Field) -> str:
    if "flag" in f.metadata:
        return f.metadata["flag"]
    stem = f.name.replace("_", "-")
    return f"--no-{stem}" if f.default is True else f"--{stem}"


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _fields(cls):
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True):
            yield f


def add_dataclass_options(group, cls, seen: set) -> None:
    """Add one option per field of `cls` to an argparse group; flags already in `seen` (added by
    another method that shares the option) are skipped."""
    for f in _fields(cls):
        if f.metadata.get("nested"):
            add_dataclass_options(group, f.default_factory, seen)
            continue
        flag = _flag(f)
        if flag in seen:
            continue
        seen.add(flag)
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            group.add_argument(flag, dest=_dest(flag), action="store_const", const=not default, default=None,
                               help=help_text)
            for alias in f.metadata.get("aliases", ()):  # the switch's older spelling: now the default, kept
                group.add_argument(alias, dest=_dest(flag), action="store_const", const=default,
                                   help=f"the default ({flag} turns it off)")
            continue
        if "(default" not in help_text:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f"{help_text} (default {shown})".strip()
        kind = f.metadata.get("parse") or f.metadata.get("type") or (type(default) if default is not None else str)
        if isinstance(default, tuple) and "parse" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name}: a tuple option needs metadata parse")
        group.add_argument(flag, *f.metadata.get("aliases", ()), dest=_dest(flag), type=kind, default=None,
                           choices=f.metadata.get("choices"), help=help_text.replace("%", "%%"),
                           metavar=f.metadata.get("metavar"))


def dataclass_from_args(cls, args, **fixed):
    """An instance of `cls` from parsed arguments: given options, else the field defaults.
    `fixed`: values that do not come from an option of this dataclass (e.g. the run's seed)."""
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name in fixed:
            kw[f.name] = fixed[f.name]
        elif not f.metadata.get("cli", True):
            continue
        elif f.metadata.get("nested"):
            kw[f.name] = dataclass_from_args(f.default_factory, args, **fixed.get(f.name + "_fixed", {}))
        else:
            v = getattr(args, _dest(_flag(f)), None)
            if v is not None:
                kw[f.name] = v
    return cls(**kw)


def option_flags(cls) -> list[str]:
    """The flags a dataclass's options use (for tests and docs)."""
    out = []
    for f in _fields(cls):
        out += option_flags(f.default_factory) if f.metadata.get("nested") else [_flag(f)]
    return out


"""What a student must fit, in the unit the user thinks in: MACs, milliseconds on their runtime, or
megabytes of weights, at their input size.

`--budget` reads `9.2G` / `800M` (MACs), `40ms` / `0.04s` (latency), `1.5MB` / `800KB` (fp32
weights, 4 bytes per parameter), or a fraction of the teacher: `1/10` or `0.1x` (of its MACs),
`1/10:ms` (of its latency measured on the same runtime), `1/10:MB` (of its weights).
`--budget-size HxW` is the (LR) input the cost is taken at (default 256x256, where MACs have
always been quoted); a latency is predicted by the run's latency table (`latency.table`) for that
size, runtime and thread count.

Every method asks a `Budget` two things only, `cost(spec)` and `fits(spec)`, so one method works
under every unit; AGD also asks `piece_cost` for its differentiable expected cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .arch.cost import DEFAULT_HW, INT8_MAC_COST, spec_cost
from .arch.pieces import Piece, spec_pieces
from .arch.spec import ArchSpec
from .errors import UserError
from .log import info

UNITS = ("MACs", "ms", "MB")
EXAMPLES = "9.2G, 800M, 40ms, 1.5MB, 1/10 (of the teacher's MACs), 1/10:ms or 1/10:MB"
BYTES_PER_PARAM = 4  # fp32 weights: the size of the student's safetensors file, less its header


@dataclass
class BudgetRequest:
    """`--budget` as read: an absolute limit in `unit`, or a `fraction` of the teacher's cost."""
    unit: str
    value: float | None = None
    fraction: float | None = None
    text: str = ""


def _number(s: str, text) -> float:
    try:
        v = float(s)
    except ValueError:
        raise UserError(f"cannot read budget {text!r}: write e.g. {EXAMPLES}") from None
    if not math.isfinite(v) or v <= 0:
        raise UserError(f"budget {text!r} must be positive and finite: write e.g. {EXAMPLES}")
    return v


def parse_budget(text) -> BudgetRequest:
    """Read a budget as written on the command line (or a number: MACs)."""
    if isinstance(text, bool) or text is None:
        raise UserError(f"cannot read budget {text!r}: write e.g. {EXAMPLES}")
    if isinstance(text, (int, float)):
        return BudgetRequest("MACs", _number(str(text), text), text=str(text))
    s = str(text).strip().replace(" ", "")
    if not s:
        raise UserError(f"empty --budget: write e.g. {EXAMPLES}")
    low = s.lower()
    unit = "MACs"
    if ":" in low:  # a fraction of the teacher in another unit: 1/10:ms
        low, u = low.rsplit(":", 1)
        unit = {"ms": "ms", "mb": "MB", "macs": "MACs", "mac": "MACs"}.get(u)
        if unit is None:
            raise UserError(f"unknown budget unit {u!r} in {text!r}: after ':' write ms, MB or MACs")
        if "/" not in low and not low.endswith("x"):
            raise UserError(f"budget {text!r}: ':{u}' follows a fraction of the teacher such as 1/10:{u}; "
                            f"an absolute budget carries its unit, e.g. 40ms or 1.5MB")
    if "/" in low or low.endswith("x"):
        if "/" in low:
            num, den = low.split("/", 1)
            frac = _number(num, text) / _number(den, text)
        else:
            frac = _number(low[:-1], text)
        return BudgetRequest(unit, fraction=frac, text=str(text))
    for suffix, unit, mult in (("ms", "ms", 1.0), ("s", "ms", 1000.0), ("kb", "MB", 1e-3), ("mb", "MB", 1.0),
                               ("gb", "MB", 1e3), ("k", "MACs", 1e3), ("m", "MACs", 1e6),
                               ("g", "MACs", 1e9), ("t", "MACs", 1e12)):
        if low.endswith(suffix):
            return BudgetRequest(unit, _number(low[:-len(suffix)], text) * mult, text=str(text))
    v = _number(low, text)
    if v < 1:
        raise UserError(f"budget {text!r} reads as {v:g} MACs: for a fraction of the teacher write 1/10 or 0.1x")
    return BudgetRequest("MACs", v, text=str(text))


def budget_unit(text) -> str | None:
    """The unit of a budget as written (None if it cannot be read)."""
    try:
        return parse_budget(text).unit
    except UserError:
        return None


def parse_size(text) -> tuple[int, int]:
    """`--budget-size`: HxW (e.g. 720x1280) or one side for a square."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        parts = [int(p) for p in s.split("x")] if "x" in s else [int(s)] * 2
    except ValueError:
        parts = []
    if len(parts) != 2 or min(parts) < 8 or max(parts) > 16384:
        raise UserError(f"cannot read --budget-size {text!r}: write HxW such as 256x256 or 720x1280 "
                        "(sides from 8 to 16384 px)")
    return parts[0], parts[1]


@lru_cache(maxsize=4096)
def _piece_params(piece: Piece) -> int:
    import torch

    with torch.random.fork_rng():
        return sum(p.numel() for p in piece.build().parameters())


@dataclass
class Budget:
    """A limit in one unit and the cost of any spec in it. `table` (a latency.LatencyTable) is
    needed for the ms unit; `int8_cost` is what an int8 MAC counts in a MACs budget."""
    unit: str
    limit: float
    hw: tuple = DEFAULT_HW
    text: str = ""
    table: object = None
    int8_cost: float = INT8_MAC_COST
    teacher_cost: float | None = None  # the teacher's cost in this unit, when known

    @classmethod
    def macs(cls, limit, hw=DEFAULT_HW, **kw) -> "Budget":
        return cls("MACs", float(limit), tuple(hw), **kw)

    def cost(self, spec: ArchSpec) -> float:
        """The spec's cost in this budget's unit (MACs with int8 layers discounted; predicted ms;
        MB of fp32 weights)."""
        if self.unit == "MACs":
            return spec_cost(spec, self.int8_cost, self.hw)
        if spec.graph is not None or spec.spade is not None:  # no pieces: timed whole, or its parameters counted
            if self.unit == "ms":
                return self.table.predict(spec, self.hw)
            from .arch.cost import spec_params

            return spec_params(spec) * BYTES_PER_PARAM / 1e6
        return self.pieces_cost(spec_pieces(spec, self.hw))

    def pieces_cost(self, pieces) -> float:
        if self.unit == "ms":
            return self.table.sum(pieces)
        return sum(self.piece_cost(p) for p in pieces)

    def piece_cost(self, piece: Piece) -> float:
        """One piece's cost (ms or MB; the MACs unit has its analytic formulas in arch.cost)."""
        if self.unit == "ms":
            return self.table.ms(piece)
        if self.unit == "MB":  # an int8 layer's weights are 1 byte each; its conversions have none
            if piece.part:
                return 0.0
            return _piece_params(piece) * (1 if piece.int8 else BYTES_PER_PARAM) / 1e6
        raise ValueError("piece_cost is for ms and MB budgets")

    def fits(self, spec: ArchSpec) -> bool:
        return self.cost(spec) <= self.limit

    def fmt(self, value: float | None = None) -> str:
        v = self.limit if value is None else value
        if self.unit == "ms":
            return f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"
        if self.unit == "MB":
            return f"{v:.2f} MB" if v >= 0.1 else f"{v * 1e3:.1f} KB"
        return f"{v / 1e9:.2f} GMACs" if v >= 1e8 else f"{v / 1e6:.1f} MMACs"

    @property
    def size_text(self) -> str:
        return f"{self.hw[0]}x{self.hw[1]}"

    def where(self) -> str:
        """Where the cost is taken, for messages: 'at 256x256 (LR) input[, ort 1 thread]'."""
        s = f"at {self.size_text} (LR) input"
        if self.unit == "ms":
            s += f", {self.table.describe()}"
        return s

    def to_dict(self) -> dict:
        d = {"unit": self.unit, "limit": self.limit, "text": self.text, "size": self.size_text}
        if self.unit == "ms":
            d.update(runtime=self.table.runtime, threads=self.table.threads)
        if self.teacher_cost is not None:
            d["teacher"] = self.teacher_cost
        return d

    def __format__(self, spec):  # f"{budget}" reads as the limit with its unit
        return self.fmt()

    def __str__(self):
        return self.fmt()


# ---- resolving --budget for a run ------------------------------------------------------------------
def resolve_limit(req: BudgetRequest, teacher_cost: float | None) -> float:
    """The limit in req.unit: the absolute value, or the fraction of the teacher's cost."""
    if req.fraction is None:
        v = req.value
    else:
        if teacher_cost is None:
            raise UserError(f"budget {req.text!r} is relative to the teacher, whose {req.unit} are unknown here; "
                            f"give an absolute budget like " + {"MACs": "9.2G", "ms": "40ms", "MB": "1.5MB"}[req.unit])
        v = req.fraction * teacher_cost
    if req.unit == "MACs":
        if not 1 <= v <= 1e18:
            raise UserError(f"budget {req.text!r} is {v:g} MACs: give a positive, finite budget such as 9.2G, "
                            "800M or 1/10 (of the teacher)")
        return int(v)
    return float(v)


def resolve_budget(text, teacher_macs: int | None) -> int:
    """A MACs budget (absolute, or a fraction of `teacher_macs`) as an int."""
    req = parse_budget(text)
    if req.unit != "MACs":
        raise UserError(f"budget {text!r} is in {req.unit}; a MACs budget (9.2G, 1/10) is expected here")
    return resolve_limit(req, teacher_macs)


def teacher_cost(teacher, unit: str, hw, t_macs: int | None, table=None) -> float | None:
    """The teacher's cost in `unit` at input size hw (None where it cannot be known). Its latency
    is measured whole on the table's runtime; MACs scale with the input's area."""
    if unit == "MACs":
        return None if t_macs is None else t_macs * (hw[0] * hw[1]) / (DEFAULT_HW[0] * DEFAULT_HW[1])
    if unit == "MB":
        n = teacher.num_params()
        return None if not n else n * BYTES_PER_PARAM / 1e6
    return teacher_latency_ms(teacher, table, hw)


def teacher_latency_ms(teacher, table, hw) -> float:
    """The whole teacher timed like the table's pieces (same runtime, threads, estimator), kept in
    the table under its file's content (size and SHA-256) so reruns and resumes reuse it: keyed by
    mtime, a copied or re-synced file was timed again, and a fractional latency budget moved with
    the new timing (0.9 %: the same seed derived another network)."""
    import hashlib

    try:
        h = hashlib.sha256()
        with open(teacher.source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        ident = h.hexdigest()[:24]
    except (OSError, TypeError):  # no file behind it (the bundled demo, a module): measure every time
        return _time_teacher(teacher, table, hw)
    return table.cached(f"teacher/{teacher.kind_name}/sha256:{ident}/{hw[0]}x{hw[1]}",
                        lambda: _time_teacher(teacher, table, hw))


def _time_teacher(teacher, table, hw) -> float:
    import torch

    from .evaluate import teacher_onnx_bytes

    x = torch.rand(1, 3, *hw)
    if table.runtime == "torch":
        if not isinstance(teacher.model, torch.nn.Module):
            raise UserError(f"a {teacher.kind} teacher cannot be timed in PyTorch; give an absolute latency "
                            "budget such as 40ms, or --latency-runtime ort")
        return table.time_whole(teacher, x)
    if teacher.kind_name == "onnx":
        from pathlib import Path

        data = Path(teacher.source).read_bytes()
    else:
        try:
            data = teacher_onnx_bytes(teacher, x)
        except Exception as e:  # noqa: BLE001 - a teacher the ONNX exporter cannot trace
            raise UserError(f"the teacher cannot be exported to ONNX to time it ({type(e).__name__}); give an "
                            "absolute latency budget such as 40ms, or time it in PyTorch with "
                            "--latency-runtime torch") from None
    return table.time_whole(data, x)


def budget_for_run(cfg, teacher, t_macs: int | None, log=info) -> Budget:
    """The run's Budget from --budget, --budget-size and the latency options."""
    req = parse_budget(cfg.budget)
    hw = parse_size(cfg.budget_size)
    if cfg.task == "translate" and (hw[0] % 4 or hw[1] % 4):
        raise UserError(f"--budget-size {cfg.budget_size}: translation students take sides that are multiples "
                        "of 4; round it (e.g. 720x1280)")
    table = None
    if req.unit == "ms":
        if cfg.search.int8_search and cfg.latency_runtime != "ort":
            raise UserError("int8 layers are timed in ONNX Runtime, the int8 export's runtime: use --search-int8 "
                            "with --latency-runtime ort (the default)")
        from .fileio import cache_root
        from .latency.table import LatencyTable

        table = LatencyTable(cfg.latency_runtime, cfg.latency_threads, cfg.device, cache_root() / "latency",
                             quiet=cfg.quiet)
    t_cost = None
    if req.fraction is not None:
        t_cost = teacher_cost(teacher, req.unit, hw, t_macs, table)
        if req.unit == "ms":
            log(f"teacher: {t_cost:.1f} ms at {hw[0]}x{hw[1]} ({table.describe()})")
    elif req.unit == "MACs" and t_macs is not None:
        t_cost = teacher_cost(teacher, "MACs", hw, t_macs)
    limit = resolve_limit(req, t_cost)
    return Budget(req.unit, limit, hw, str(cfg.budget), table,
                  cfg.search.int8_cost if cfg.search.int8_search else INT8_MAC_COST, t_cost)

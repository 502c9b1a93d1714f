"""Cost of an architecture: analytic MACs/params of a spec, and measured MACs/latency of any module.

Convention (printed next to every figure): MACs = FLOPs / 2 as counted by
`torch.utils.flop_counter.FlopCounterMode`, i.e. convolution and matmul multiply-accumulates only
(activations, additions, biases, pixel shuffles are free). SR MACs are quoted for a 256x256 *LR*
input, as AGD does. The analytic count of a spec equals FlopCounterMode on the built module
(tests hold them together), so a search can cost millions of candidates without building any.
"""

from __future__ import annotations

import functools
import json
import statistics
import time

import torch
from torch import nn

from .ops import OPS
from .spec import ArchSpec, frame_side

MACS_RULE = "MACs = FlopCounterMode FLOPs / 2 (conv/matmul only)"
MACS_CONVENTION = MACS_RULE + ", SR at 256x256 LR input"
TRANSLATE_MACS_CONVENTION = MACS_RULE + " (ConvTranspose2d counted from its input), at 256x256 input"


LABEL2IMAGE_MACS_CONVENTION = MACS_RULE + ", at a 256x256 label map"


def macs_convention(task: str) -> str:
    return {"translate": TRANSLATE_MACS_CONVENTION, "label2image": LABEL2IMAGE_MACS_CONVENTION}.get(task, MACS_CONVENTION)
DEFAULT_HW = (256, 256)


def head_trunk_up_macs_per_px(spec_nf: int, scale: int, up_kind: str, up_width: int, unshuffle: int = 1) -> int:
    """MACs per frame pixel (LR, or 1/unshuffle of it per side) of the fixed parts: head conv,
    trunk conv and upsampler (+ final conv); an unshuffled frame's upsampler shuffles by scale * u."""
    scale *= unshuffle
    m = 9 * 3 * unshuffle * unshuffle * spec_nf + 9 * spec_nf * spec_nf
    if up_kind == "pixelshuffle":
        m += 9 * spec_nf * 3 * scale * scale
    else:
        factors = [2, 2] if scale == 4 else [scale]
        cin, area = spec_nf, 1
        for f in factors:
            m += area * 9 * cin * up_width * f * f
            area *= f * f
            cin = up_width
        m += area * 9 * up_width * 3
    return m


def cells_area(spec: ArchSpec, hw: tuple[int, int] = DEFAULT_HW) -> int:
    """Pixels per channel at which the cells run: the (LR) input size for SR (1/unshuffle per
    side, rounded up: the input is padded), 1/4 per side for translation (after two stride-2 convs)."""
    if spec.task == "translate":
        return (hw[0] // 4) * (hw[1] // 4)
    h, w = frame_side(hw, spec.unshuffle)
    return h * w


def frame_macs(spec: ArchSpec, hw: tuple[int, int] = DEFAULT_HW) -> int:
    """MACs of everything outside the cells (these do not change during an AGD search)."""
    from .build import skip_macs

    if spec.task == "translate":
        f = spec.frame
        return translate_frame_macs(spec.nf, f.stem, f.down[0], f.up[0], f.up[1], f.up_kind, hw, f.stem_k, f.out_k)
    u = spec.unshuffle
    h, w = frame_side(hw, u)
    per_px = head_trunk_up_macs_per_px(spec.nf, spec.scale, spec.upsampler.kind, spec.upsampler.width, u)
    return per_px * h * w + skip_macs(spec.skip, spec.scale, (h * u, w * u), u)


def translate_frame_macs(nf, stem, down, up0, up1, up_kind: str, hw=DEFAULT_HW, stem_k=7, out_k=7):
    """MACs of the translation frame for these widths (ints, or expected widths as tensors: the
    AGD search differentiates through this with independent per-layer width distributions)."""
    h, w = hw
    full, half, quarter = h * w, (h // 2) * (w // 2), (h // 4) * (w // 4)
    m = stem_k * stem_k * 3 * stem * full + 9 * stem * down * half + 9 * down * nf * quarter
    # a ConvTranspose2d is counted from its input (FlopCounterMode's rule); resize+conv at the output
    m = m + 9 * nf * up0 * (quarter if up_kind == "deconv" else half)
    m = m + 9 * up0 * up1 * (half if up_kind == "deconv" else full)
    return m + out_k * out_k * up1 * 3 * full


def spec_macs(spec: ArchSpec, hw: tuple[int, int] = DEFAULT_HW) -> int:
    """Analytic MACs of the student built from `spec` for an (LR) input of size hw (a graph
    student's are counted by FlopCounterMode: no formula for an arbitrary graph)."""
    if spec.graph is not None:
        return _graph_macs(json.dumps(spec.graph, sort_keys=True), tuple(hw))
    if spec.spade is not None:
        from .spade import spade_macs

        return spade_macs(spec, hw)
    per_px = sum(OPS[layer.op].macs(cin, layer.width) for _, _, cin, layer in spec.layers())
    return frame_macs(spec, hw) + per_px * cells_area(spec, hw)


# Cost of one int8 multiply-accumulate relative to an fp32 one in the budget when AGD searches
# precision. Whole-model int8 SR students ran at 0.55-0.8x their fp32 latency on ONNX Runtime
# (BENCHMARKS.md, int8 section), so an int8 layer is charged half its MACs; a partly int8 student
# gained no speed there (the report says so when that happens).
INT8_MAC_COST = 0.5


@functools.lru_cache(maxsize=256)
def _graph_macs(graph_json: str, hw: tuple[int, int]) -> int:
    from .graph import GraphNet, GraphSpec

    from torch.utils.flop_counter import FlopCounterMode

    spec = GraphSpec.from_dict(json.loads(graph_json))
    with torch.device("meta"):  # shapes only: counting runs no convolution
        net = GraphNet(spec)
        x = torch.zeros(1, spec.in_channels, *hw)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() // 2


def has_int8_layers(spec: ArchSpec) -> bool:
    return any(OPS[layer.op].bits == 8 for _, _, _, layer in spec.layers())


def spec_cost(spec: ArchSpec, int8_cost: float = INT8_MAC_COST, hw: tuple[int, int] = DEFAULT_HW) -> float:
    """The budget's cost: MACs, with int8 layers charged `int8_cost` per MAC (equals spec_macs
    for an all-float spec)."""
    int8_px = sum(OPS[layer.op].macs(cin, layer.width) for _, _, cin, layer in spec.layers()
                  if OPS[layer.op].bits == 8)
    return spec_macs(spec, hw) - (1.0 - int8_cost) * int8_px * cells_area(spec, hw)


def spec_params(spec: ArchSpec) -> int:
    """Parameter count of the built student (computed by building it: exact and cheap at these sizes)."""
    from .build import build_student

    return sum(p.numel() for p in build_student(spec).parameters())


def measure_macs(model: nn.Module, hw: tuple[int, int] = DEFAULT_HW, channels: int | None = None) -> int:
    """MACs of one forward pass on a 1 x C x H x W input, by FlopCounterMode (FLOPs / 2); C: the
    model's `in_channels` (a label-map network's one-hot channels), else 3."""
    from torch.utils.flop_counter import FlopCounterMode

    channels = channels or int(getattr(model, "in_channels", 3))
    x = torch.zeros(1, channels, *hw, device=module_device(model))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def module_device(model) -> torch.device:
    """Where a module's parameters live (CPU for parameter-free or non-module callables)."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fmt_macs(macs: float) -> str:
    return f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.1f} M"


def latency_ms(fn, x: torch.Tensor, warmup: int = 2, repeats: int = 5) -> float:
    """Median wall time of `fn(x)` in milliseconds (batch and size fixed by `x`)."""
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)

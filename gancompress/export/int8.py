"""int8 deployment of any student: ONNX Runtime static quantization, calibrated on the user's images.

QDQ format (QuantizeLinear / DequantizeLinear pairs around each quantizable op), weights int8
symmetric per output channel, activations uint8 with ranges from MinMax calibration over
`calib` inputs. Ops the quantizer has no int8 form for stay float (listed in the result), and
ONNX Runtime's CPU kernels may still run some quantized ops in float; the latency ratio
int8 / fp32 measured here is what a user gets.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import torch

from ..errors import UserError


def _op_types(path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


# Recipes (format, quantized op types, node-name prefixes kept in float), measured in BENCHMARKS.md.
# "qlinear" (SR default): ONNX Runtime's QOperator format, where conv, LeakyReLU and add run as
# int8 kernels (QLinearConv, com.microsoft QLinearLeakyRelu / QLinearAdd), so activations stay int8
# between layers; in QDQ form each LeakyReLU broke the int8 chain and the model ran no faster than
# fp32. Only the bicubic skip stays float (a fixed interpolation int8 cannot hold exactly).
# "conv" (translation default): QDQ around the convolutions only; the output conv and every
# ConvTranspose2d stay float. ONNX Runtime's int8 ConvTranspose alone took the demo translation
# student to 24.8 dB PSNR against its own fp32 output (per channel or per tensor alike), against
# 35.2 dB with all the other convs int8; quantizing InstanceNormalization, Relu, Pad as well made
# it no faster.
# label2image (SPADE students, "conv"): every conv int8 (the SPADE layers' mlp convs included) but
# the RGB output conv `conv_img`, as translation keeps its output conv float.
RECIPES = {
    "qlinear": ("QOperator", ("Conv", "LeakyRelu", "Add"),
                {"sr": ("/skip/",), "translate": ("/out/",), "label2image": ("/conv_img/",)}),
    "conv": ("QDQ", ("Conv",), {"sr": ("/skip/", "/upsampler/"), "translate": ("/out/",),
                                "label2image": ("/conv_img/",)}),
}
DEFAULT_RECIPE = {"sr": "qlinear", "translate": "conv", "label2image": "conv"}


def compact_names(path: Path, out: Path | None = None) -> None:
    """Rename every internal tensor and node to a short id (in place, or written atomically to
    `out`). Quantization writes names like `/cells/cells.0/layers.0/conv/Conv_output_0_QuantizeLinear_Output`
    four times per layer: for a small student they were a third of the int8 file. Graph inputs and
    outputs keep theirs."""
    import onnx

    from ..fileio import atomic_write_bytes

    m = onnx.load(str(path))
    g = m.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    names: dict[str, str] = {}

    def short(n):
        if not n or n in keep:
            return n
        return names.setdefault(n, f"t{len(names)}")

    for t in g.initializer:
        t.name = short(t.name)
    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    del g.value_info[:]
    atomic_write_bytes(Path(out or path), m.SerializeToString())


def onnx_prefix(module_name: str) -> str:
    """The node-name prefix torch.onnx.export gives a module: `cells.0.layers.1` ->
    `/cells/cells.0/layers.1/`."""
    parts, out = module_name.split("."), []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            out += [parts[i], f"{parts[i]}.{parts[i + 1]}"] if i == 0 else [f"{parts[i]}.{parts[i + 1]}"]
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return "/" + "/".join(out) + "/"


def quantize_onnx_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calib: list[torch.Tensor],
                       task: str = "sr", recipe: str | None = None, per_channel: bool = True,
                       only_layers: list[str] | None = None) -> dict:
    """Write an int8 model of `fp32_path` calibrated on `calib` ((1, C, h, w) inputs as the model takes) with
    `recipe` (default: the task's, see RECIPES); with `only_layers` (module names), every node
    outside those layers stays float. Returns {path, bytes, float_ops: {op: count}, float_nodes:
    [...], recipe} (float_ops: op types left in float)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calib:
        raise UserError("int8 calibration needs at least one image; point --calib-data at a folder of "
                        "images like the ones the model will see")

    input_name = onnx.load(str(fp32_path)).graph.input[0].name  # `lr`, or `labels` (label2image)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {input_name: x.detach().cpu().numpy()}

    recipe = recipe or DEFAULT_RECIPE[task]
    if recipe not in RECIPES:
        raise UserError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    fmt, ops, floats = RECIPES[recipe]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # temporary names that fileio.remove_stale_temp_files recognises after a kill
    tmp = out_path.with_name(f".{out_path.name}.q.tmp{os.getpid()}")
    pre = out_path.with_name(f".{out_path.name}.pre.tmp{os.getpid()}")
    try:
        # ONNX Runtime's own pre-processing (constant folding, redundant-node removal) first, as its
        # quantizer recommends: fewer leftover shape ops, smaller file
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        nodes = [n.name for n in onnx.load(str(pre)).graph.node]
        if only_layers is not None:  # a mixed-precision AGD student: just the layers searched as int8
            prefixes = tuple(onnx_prefix(m) for m in only_layers)
            kept = [n for n in nodes if not n.startswith(prefixes)]
        else:
            kept = [n for n in nodes if n.startswith(tuple(floats[task]))]
        # reduce_range: weights in [-64, 64]. On AVX2 CPUs without VNNI ONNX Runtime's u8 x s8 conv
        # kernels sum pairs of products in int16, which full-range weights saturate: SRGAN 1/50
        # students lost 0.18-0.51 dB Set5 PSNR-Y to their fp32 with it off, 0.04-0.08 with it on
        # (BENCHMARKS.md, int8). Fake quantization trains on the same grid (quant/fake.py).
        quantize_static(str(pre), str(tmp), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept,
                        op_types_to_quantize=list(ops))
        compact_names(tmp, out_path)  # written atomically and durably
    finally:
        for extra in [pre, tmp]:
            extra.unlink(missing_ok=True)
    plumbing = {"QuantizeLinear", "DequantizeLinear", "Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Cast"}
    float_ops = {op: n for op, n in _op_types(out_path).items()
                 if op not in plumbing and not op.startswith("QLinear") and not op.startswith("ConvInteger")}
    # in QDQ form a quantized op keeps its type name (it reads DequantizeLinear outputs): not listed
    if fmt == "QDQ":
        float_ops = {op: n for op, n in float_ops.items() if op not in ops}
    return {"path": str(out_path), "bytes": out_path.stat().st_size, "float_ops": float_ops, "float_nodes": kept,
            "recipe": recipe}

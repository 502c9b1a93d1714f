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


# Kept in float by default: the layers that write the output image directly. The bicubic skip is a
# fixed interpolation whose taps int8 cannot hold exactly, and the last conv's rounding lands on
# every output pixel; both cost little time (measured in BENCHMARKS.md).
FLOAT_PREFIXES = {"sr": ("/skip/", "/upsampler/"), "translate": ("/out/",)}
# Only the convolutions are quantized. Measured on the two demo students (BENCHMARKS.md): also
# quantizing every other op the quantizer knows (InstanceNormalization, Relu, Pad, ...) made the SR
# student lose 0.54 instead of 0.20 dB PSNR to the teacher, and the translation student ran no faster
# than fp32 (int8/fp32 latency 1.01 instead of 0.68).
QUANTIZED_OPS = ("Conv", "ConvTranspose")


def quantize_onnx_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calib: list[torch.Tensor],
                       per_channel: bool = True, keep_float: tuple = ()) -> dict:
    """Write an int8 QDQ model of `fp32_path` calibrated on `calib` ((1, 3, h, w) inputs in [0, 1]).
    Nodes whose name starts with one of `keep_float` stay float. Returns {path, bytes, float_ops:
    {op: count}, float_nodes: [...]} (float_ops: op types with no int8 form)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if not calib:
        raise UserError("int8 calibration needs at least one image; point --calib-data at a folder of "
                        "images like the ones the model will see")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"lr": x.detach().cpu().numpy()}

    kept = [n.name for n in onnx.load(str(fp32_path)).graph.node if n.name.startswith(tuple(keep_float))]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    try:
        quantize_static(str(fp32_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept,
                        op_types_to_quantize=list(QUANTIZED_OPS))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
        for extra in Path(out_path.parent).glob(f".{out_path.name}.tmp*"):
            extra.unlink(missing_ok=True)
    plumbing = {"QuantizeLinear", "DequantizeLinear", "Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Cast"}
    float_ops = {op: n for op, n in _op_types(fp32_path).items() if op not in QUANTIZED_OPS and op not in plumbing}
    return {"path": str(out_path), "bytes": out_path.stat().st_size, "float_ops": float_ops, "float_nodes": kept}

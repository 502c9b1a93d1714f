"""A network written as a graph of standard layers: `GraphSpec` (data, JSON) and `GraphNet` (the
plain nn.Module that runs it).

Why: a teacher whose layout the student skeleton cannot express can still be a student if its
computation is rewritten layer by layer (teachers/graph_reader.py reads one from TorchScript);
pruning then cuts its channels (arch/graph_channels.py) and the result stays data like any spec.
Ops: conv (incl. transposed), inorm/bnorm, prelu, relu/lrelu/tanh/sigmoid/clamp, pad, scale
(x * mul + add), resize, pixel_shuffle, cat (channels), add (a + alpha * b). Value 0 is the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

GRAPH_VERSION = 1


@dataclass
class GraphOp:
    """One layer: `op` kind, input value ids, output value id, attributes (JSON-serialisable)."""

    op: str
    inputs: list[int]
    output: int
    attrs: dict = field(default_factory=dict)


@dataclass
class GraphSpec:
    """The layers of a graph network in execution order; value 0 is the input image."""

    ops: list[GraphOp]
    output: int
    in_channels: int = 3
    version: int = GRAPH_VERSION

    def to_dict(self) -> dict:
        return {"version": self.version, "in_channels": self.in_channels, "output": self.output,
                "ops": [{"op": o.op, "inputs": o.inputs, "output": o.output, **({"attrs": o.attrs} if o.attrs else {})}
                        for o in self.ops]}

    @classmethod
    def from_dict(cls, d: dict) -> "GraphSpec":
        ops = [GraphOp(o["op"], [int(i) for i in o["inputs"]], int(o["output"]), dict(o.get("attrs", {})))
               for o in d["ops"]]
        return cls(ops, int(d["output"]), int(d.get("in_channels", 3)), int(d.get("version", GRAPH_VERSION)))

    def summary(self) -> str:
        convs = [o.attrs for o in self.ops if o.op == "conv"]
        return (f"graph of {len(self.ops)} layers ({len(convs)} convolutions); conv widths "
                + " ".join(str(a["cout"]) for a in convs))


OPS = {"conv", "inorm", "bnorm", "prelu", "relu", "lrelu", "tanh", "sigmoid", "clamp", "pad", "scale", "resize",
       "pixel_shuffle", "cat", "add"}


def check_graph(spec: GraphSpec) -> None:
    """Raise ValueError unless every op is known and reads values defined before it."""
    seen = {0}
    for i, op in enumerate(spec.ops):
        if op.op not in OPS:
            raise ValueError(f"layer {i}: unknown graph op {op.op!r}")
        if not op.inputs or any(v not in seen for v in op.inputs):
            raise ValueError(f"layer {i} ({op.op}) reads a value not defined before it")
        if op.op == "conv" and min(int(op.attrs["cin"]), int(op.attrs["cout"])) < 1:
            raise ValueError(f"layer {i}: a convolution needs at least one input and output channel")
        seen.add(op.output)
    if spec.output not in seen:
        raise ValueError("the graph's output value is never computed")


# --------------------------------------------------------------------------- the module
class _Fn(nn.Module):
    """A parameter-free layer (activation, padding, scaling, resize, concat, add)."""

    def __init__(self, op: GraphOp):
        super().__init__()
        self.kind, self.a = op.op, op.attrs

    def forward(self, *xs):
        k, a = self.kind, self.a
        x = xs[0]
        if k == "relu":
            return F.relu(x)
        if k == "lrelu":
            return F.leaky_relu(x, a["slope"])
        if k == "tanh":
            return torch.tanh(x)
        if k == "sigmoid":
            return torch.sigmoid(x)
        if k == "clamp":
            return torch.clamp(x, a.get("min"), a.get("max"))
        if k == "pad":
            if not any(a["pads"]):
                return x
            return F.pad(x, a["pads"], mode=a["mode"], value=a.get("value", 0.0)) if a["mode"] == "constant" \
                else F.pad(x, a["pads"], mode=a["mode"])
        if k == "scale":
            return x * a["mul"] + a["add"]
        if k == "resize":
            return F.interpolate(x, scale_factor=a["factor"], mode=a["mode"],
                                 align_corners=a.get("align_corners"))
        if k == "pixel_shuffle":
            return F.pixel_shuffle(x, a["r"])
        if k == "cat":
            return torch.cat(xs, 1)
        if k == "add":
            return xs[0] + a.get("alpha", 1.0) * xs[1]
        raise ValueError(f"unknown graph op {k!r}")


class _Norm(nn.Module):
    """Instance norm (statistics per image) or batch norm in eval form (stored statistics)."""

    def __init__(self, op: GraphOp):
        super().__init__()
        a = op.attrs
        c, self.eps, self.kind = int(a["channels"]), float(a["eps"]), op.op
        self.weight = nn.Parameter(torch.ones(c)) if a.get("affine", True) else None
        self.bias = nn.Parameter(torch.zeros(c)) if a.get("affine", True) else None
        if self.kind == "bnorm":
            self.register_buffer("running_mean", torch.zeros(c))
            self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        if self.kind == "inorm":
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _conv(a: dict) -> nn.Module:
    k = tuple(a["k"])
    kw = dict(stride=tuple(a["stride"]), padding=tuple(a["padding"]), dilation=tuple(a["dilation"]),
              groups=int(a["groups"]), bias=bool(a["bias"]))
    if a["transposed"]:
        return nn.ConvTranspose2d(a["cin"], a["cout"], k, output_padding=tuple(a["output_padding"]), **kw)
    return nn.Conv2d(a["cin"], a["cout"], k, **kw)


class GraphNet(nn.Module):
    """Runs a GraphSpec; parameters are named `layers.<op index>.weight|bias`."""

    def __init__(self, spec: GraphSpec):
        super().__init__()
        self.spec = spec
        layers = []
        for op in spec.ops:
            if op.op == "conv":
                layers.append(_conv(op.attrs))
            elif op.op in ("inorm", "bnorm"):
                layers.append(_Norm(op))
            elif op.op == "prelu":
                layers.append(nn.PReLU(int(op.attrs["channels"])))
            else:
                layers.append(_Fn(op))
        self.layers = nn.ModuleList(layers)
        self._wiring = [(op.inputs, op.output) for op in spec.ops]
        self._out = spec.output

    def forward(self, x):
        return self.values(x)[self._out]

    def values(self, x, edit=None) -> dict:
        """Every value of the forward pass, by value id (0 the input): the intermediate features
        a student cut from this graph is matched to (distill/hints.py). `edit(value_id, tensor)`,
        if given, replaces each value as it is computed (bench/feature_rank.py projects them)."""
        env = {0: x}
        for layer, (ins, out) in zip(self.layers, self._wiring):
            env[out] = layer(*[env[i] for i in ins])
            if edit is not None:
                env[out] = edit(out, env[out])
        return env

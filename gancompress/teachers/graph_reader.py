"""A traced teacher read as a graph of standard layers (arch/graph.py), so it can be pruned.

Why: a student trained from scratch fits a real style-transfer teacher's pixel-exact texture
slowly, while a network that *starts* from the teacher's weights starts at its output. A
TorchScript graph carries the whole computation and the weights; when it is made of standard
layers we rewrite it as a `GraphSpec` + weights whose `GraphNet` computes the teacher's function,
checked numerically (at two input sizes for a loaded teacher) before it is used.

Anything else in the graph (control flow, arbitrary tensor maths) raises `GraphImportError`
naming the operator; callers fall back to the space network and say why.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch.graph import GraphNet, GraphOp, GraphSpec


class GraphImportError(Exception):
    """The TorchScript graph holds something `GraphNet` does not express (message says what)."""


# --------------------------------------------------------------------------- the reader
class _V(int):
    """A tensor value of the graph being read (its id), as opposed to a constant."""


_IDENTITY = {"aten::contiguous", "aten::detach", "aten::clone", "aten::dropout", "aten::feature_dropout",
             "aten::alpha_dropout"}
_POINTWISE = {"aten::relu": "relu", "aten::relu_": "relu", "aten::tanh": "tanh", "aten::sigmoid": "sigmoid"}


def _scalar(v):
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.reshape(()))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _pair(v, n=2):
    v = list(v) if isinstance(v, (list, tuple)) else [v] * n
    return [int(x) for x in v]


def _channels(value) -> int | None:
    """The channel count a traced graph recorded for a value (None when it has no shape)."""
    try:
        sizes = value.type().sizes()
    except (RuntimeError, AttributeError):
        return None
    return int(sizes[1]) if sizes and len(sizes) == 4 and sizes[1] is not None else None


class _Reader:
    def __init__(self, module):
        self.module = module
        self.ops: list[GraphOp] = []
        self.weights: dict[str, torch.Tensor] = {}
        self.env: dict = {}
        self.next_id = 1

    def emit(self, kind, inputs, attrs, tensors=None) -> _V:
        out = _V(self.next_id)
        self.next_id += 1
        i = len(self.ops)
        self.ops.append(GraphOp(kind, [int(v) for v in inputs], int(out), attrs))
        for name, t in (tensors or {}).items():
            if t is not None:
                self.weights[f"layers.{i}.{name}"] = t.detach().clone().float()
        return out

    def value(self, node_input):
        return self.env[node_input.unique()]

    def tensor_in(self, node, i, what) -> _V:
        v = self.value(node.inputsAt(i))
        if not isinstance(v, _V):
            raise GraphImportError(f"{node.kind()} takes a constant tensor as its {what}; only layers of the "
                                   "network's own activations are expressible")
        return v

    def read(self, graph) -> tuple[GraphSpec, dict]:
        inputs = list(graph.inputs())
        if len(inputs) != 2:
            raise GraphImportError(f"the network takes {len(inputs) - 1} inputs; one image tensor is expected")
        self.env[inputs[0].unique()] = self.module
        self.env[inputs[1].unique()] = _V(0)
        for node in graph.nodes():
            self.node(node)
        outs = list(graph.return_node().inputs())
        out = self.value(outs[0]) if len(outs) == 1 else None
        if not isinstance(out, _V):
            raise GraphImportError("the network does not return one tensor")
        return GraphSpec(self.ops, int(out)), self.weights

    def node(self, node):  # noqa: C901 (one branch per TorchScript operator)
        k = node.kind()
        outs = list(node.outputs())
        args = [self.env.get(i.unique()) for i in node.inputs()]
        if k == "prim::Constant":
            self.env[outs[0].unique()] = outs[0].toIValue()
            return
        if k == "prim::GetAttr":
            self.env[outs[0].unique()] = getattr(args[0], node.s("name"))
            return
        if k in ("prim::ListConstruct", "prim::TupleConstruct"):
            self.env[outs[0].unique()] = list(args)
            return
        if k in ("prim::TupleUnpack", "prim::ListUnpack"):
            for out, v in zip(outs, args[0]):
                self.env[out.unique()] = v
            return
        if k in _IDENTITY:
            self.env[outs[0].unique()] = self.tensor_in(node, 0, "input")
            return
        if len(outs) != 1:
            raise GraphImportError(f"operator {k} is not supported")
        o = outs[0].unique()
        if k in ("aten::_convolution", "aten::conv2d", "aten::conv_transpose2d"):
            self.env[o] = self.conv(node, k, args)
        elif k in ("aten::instance_norm", "aten::batch_norm"):
            self.env[o] = self.norm(node, k, args)
        elif k in _POINTWISE:
            self.env[o] = self.emit(_POINTWISE[k], [self.tensor_in(node, 0, "input")], {})
        elif k == "aten::prelu":
            x, slope = self.tensor_in(node, 0, "input"), args[1]
            if not isinstance(slope, torch.Tensor):
                raise GraphImportError("aten::prelu without a stored slope is not supported")
            self.env[o] = self.emit("prelu", [x], {"channels": int(slope.numel())}, {"weight": slope})
        elif k in ("aten::leaky_relu", "aten::leaky_relu_"):
            self.env[o] = self.emit("lrelu", [self.tensor_in(node, 0, "input")], {"slope": float(args[1])})
        elif k in ("aten::clamp", "aten::hardtanh"):
            lo, hi = (_scalar(a) if a is not None else None for a in args[1:3])
            self.env[o] = self.emit("clamp", [self.tensor_in(node, 0, "input")], {"min": lo, "max": hi})
        elif k in ("aten::pad", "aten::reflection_pad2d", "aten::replication_pad2d", "aten::constant_pad_nd"):
            self.env[o] = self.pad(node, k, args)
        elif k == "aten::cat":
            self.env[o] = self.cat(node, args)
        elif k in ("aten::add", "aten::sub", "aten::mul", "aten::div", "aten::add_", "aten::mul_"):
            self.env[o] = self.arith(node, k.rstrip("_"), args)
        elif k in ("aten::upsample_nearest2d", "aten::upsample_bilinear2d"):
            self.env[o] = self.resize(node, k, args)
        elif k == "aten::pixel_shuffle":
            x = self.tensor_in(node, 0, "input")
            self.env[o] = self.emit("pixel_shuffle", [x], {"r": int(args[1])})
        else:
            raise GraphImportError(f"operator {k} is not one gancompress can rewrite")

    def conv(self, node, k, a):
        x = self.tensor_in(node, 0, "input")
        w, b = a[1], a[2]
        if not isinstance(w, torch.Tensor) or w.dim() != 4:
            raise GraphImportError(f"{k}: a 2-d convolution with a stored weight is expected")
        if k == "aten::_convolution":
            stride, padding, dilation, transposed, out_pad, groups = a[3], a[4], a[5], bool(a[6]), a[7], a[8]
        elif k == "aten::conv2d":
            stride, padding, dilation, groups, transposed, out_pad = a[3], a[4], a[5], a[6], False, [0, 0]
        else:
            stride, padding, out_pad, groups, dilation, transposed = a[3], a[4], a[5], a[6], a[7], True
        if isinstance(padding, str):
            raise GraphImportError(f"{k}: padding={padding!r} is not supported")
        groups = int(groups)
        if groups != 1:
            raise GraphImportError(f"{k}: grouped convolutions (groups={groups}) are not supported yet")
        cin, cout = (w.shape[0], w.shape[1] * groups) if transposed else (w.shape[1] * groups, w.shape[0])
        attrs = {"cin": int(cin), "cout": int(cout), "k": [int(w.shape[2]), int(w.shape[3])],
                 "stride": _pair(stride), "padding": _pair(padding), "dilation": _pair(dilation),
                 "transposed": transposed, "output_padding": _pair(out_pad), "groups": groups,
                 "bias": isinstance(b, torch.Tensor)}
        return self.emit("conv", [x], attrs, {"weight": w, "bias": b if isinstance(b, torch.Tensor) else None})

    def norm(self, node, k, a):
        x = self.tensor_in(node, 0, "input")
        w, b, rm, rv = a[1], a[2], a[3], a[4]
        if k == "aten::instance_norm":
            if not a[5]:
                raise GraphImportError("instance norm with stored statistics (use_input_stats=False) is not supported")
            affine = isinstance(w, torch.Tensor)
            c = w.numel() if affine else _channels(node.inputsAt(0))
            if c is None:
                raise GraphImportError("instance norm without affine parameters in a graph without shapes "
                                       "(save the teacher with torch.jit.trace)")
            return self.emit("inorm", [x], {"channels": int(c), "eps": float(a[7]), "affine": affine},
                             {"weight": w, "bias": b} if affine else None)
        if a[5]:
            raise GraphImportError("batch norm in training mode; save the teacher in eval mode (model.eval())")
        c = rm.numel()
        w = w if isinstance(w, torch.Tensor) else torch.ones(c)
        b = b if isinstance(b, torch.Tensor) else torch.zeros(c)
        return self.emit("bnorm", [x], {"channels": int(c), "eps": float(a[7]), "affine": True},
                         {"weight": w, "bias": b, "running_mean": rm, "running_var": rv})

    def pad(self, node, k, a):
        x = self.tensor_in(node, 0, "input")
        pads = [int(p) for p in a[1]]
        if k == "aten::pad":
            mode, value = a[2], a[3]
        else:
            mode, value = {"aten::reflection_pad2d": ("reflect", None), "aten::replication_pad2d": ("replicate", None),
                           "aten::constant_pad_nd": ("constant", a[2])}[k]
        if len(pads) != 4 or mode not in ("reflect", "replicate", "constant"):
            raise GraphImportError(f"{k}: only 2-d reflect/replicate/constant padding is supported")
        attrs = {"pads": pads, "mode": mode}
        if mode == "constant":
            attrs["value"] = float(value or 0.0)
        return self.emit("pad", [x], attrs)

    def cat(self, node, a):
        parts, dim = a[0], int(a[1])
        if dim not in (1, -3) or not all(isinstance(p, _V) for p in parts):
            raise GraphImportError("concatenation is supported along channels of the network's activations only")
        return self.emit("cat", parts, {})

    def arith(self, node, k, a):
        x, y = a[0], a[1]
        alpha = _scalar(a[2]) if len(a) > 2 and k in ("aten::add", "aten::sub") and a[2] is not None else 1.0
        if isinstance(x, _V) and isinstance(y, _V):
            if k not in ("aten::add", "aten::sub"):
                raise GraphImportError(f"{k} of two activations is not supported")
            return self.emit("add", [x, y], {"alpha": alpha if k == "aten::add" else -alpha})
        c = _scalar(y) if isinstance(x, _V) else _scalar(x)
        v = x if isinstance(x, _V) else y
        if not isinstance(v, _V) or c is None:
            raise GraphImportError(f"{k} with a non-scalar constant is not supported")
        if k == "aten::mul":
            return self.emit("scale", [v], {"mul": c, "add": 0.0})
        if k == "aten::div" and v is x:
            return self.emit("scale", [v], {"mul": 1.0 / c, "add": 0.0})
        if k == "aten::add":
            return self.emit("scale", [v], {"mul": 1.0, "add": alpha * c if v is x else c})
        if k == "aten::sub" and v is x:
            return self.emit("scale", [v], {"mul": 1.0, "add": -alpha * c})
        if k == "aten::sub":
            return self.emit("scale", [v], {"mul": -alpha, "add": c})
        raise GraphImportError(f"{k} of a constant by an activation is not supported")

    def resize(self, node, k, a):
        x = self.tensor_in(node, 0, "input")
        size, scales = a[1], a[-1]
        if size is not None or not scales or len(set(scales)) != 1:
            raise GraphImportError(f"{k}: only resizes by one scale factor are supported")
        attrs = {"factor": float(scales[0]), "mode": "nearest" if "nearest" in k else "bilinear"}
        if attrs["mode"] == "bilinear":
            attrs["align_corners"] = bool(a[2])
        return self.emit("resize", [x], attrs)


def read_torchscript(module, check_sizes=((64, 64),), reference=None) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """(spec, state dict) of a GraphNet computing `module`'s function, checked against `reference`
    (default: the module itself) on a random image of every size in `check_sizes`."""
    graph = getattr(module, "inlined_graph", None)
    if graph is None:
        raise GraphImportError("not a TorchScript module")
    if any(n.kind() in ("prim::If", "prim::Loop") for n in graph.nodes()):
        raise GraphImportError("the TorchScript program has control flow (saved with torch.jit.script); a teacher "
                               "saved with torch.jit.trace can be read")
    spec, weights = _Reader(module).read(graph)
    net = GraphNet(spec)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise GraphImportError(f"the rewritten network does not take the teacher's weights (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
    net.eval()
    reference = module if reference is None else reference
    for seed, (h, w) in enumerate(check_sizes):
        x = torch.rand(1, spec.in_channels, h, w, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            want, got = reference(x).float(), net(x)
        if want.shape != got.shape or not torch.allclose(want, got, atol=1e-4, rtol=1e-4):
            err = f"{(want - got).abs().max().item():.2g}" if want.shape == got.shape else f"shape {tuple(got.shape)}"
            raise GraphImportError(f"the rewritten network does not reproduce the teacher at {h}x{w} (max difference "
                                   f"{err}); a traced graph can depend on the size it was traced at")
    return spec, weights


def read_teacher(teacher) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """A loaded `Teacher` (its [0, 1] mapping included) as a graph: traced when it is an
    nn.Module (zoo, module:, TorchScript), checked at the traced size and another, non-square one.
    GraphImportError says why not."""
    import warnings

    model = getattr(teacher, "model", None)
    if not isinstance(model, nn.Module):
        raise GraphImportError(f"a {teacher.kind} teacher is not a PyTorch module (ONNX or exported program)")
    if any(t.device.type != "cpu" for t in teacher.state_dict().values()):
        import copy

        teacher = copy.deepcopy(teacher).cpu()  # read on the CPU; the run's teacher stays where it is
    side = 32 if teacher.scale > 1 else 64
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(teacher, x, check_trace=False)
    except Exception as e:  # noqa: BLE001 - tracing fails in many ways (data-dependent control flow, ...)
        raise GraphImportError(f"the teacher could not be traced ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    return read_torchscript(traced, check_sizes=((side, side), (2 * side, side)), reference=teacher)

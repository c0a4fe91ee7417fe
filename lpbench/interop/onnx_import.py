"""ONNX -> :class:`~lpbench.network.Network`.

The graph must be a chain: one tensor (the *stream*) flows from the input to the output through
Gemm, MatMul, Conv, Relu, LeakyRelu, Sigmoid, Tanh, Flatten, Reshape, BatchNormalization and
elementwise Add/Sub/Mul/Div by constants; every other tensor is a constant (initializers,
Constant nodes, and subgraphs of constants such as Shape -> Gather -> Concat -> Reshape, folded
with onnx's reference evaluator). Elementwise affine maps on the stream (input normalisation
``(x - mean) / std``, a bias Add after MatMul, batch norm) are folded, in float64, into the next
affine layer or, after an affine layer, into that layer; layers whose weights are folded hold
float64 arrays, the others keep the file's float32 weights. A leading batch dimension (1 or
symbolic) is dropped; a Reshape before the first layer only redefines the input shape (same
C-order flattening). Anything else is a :class:`~lpbench.errors.ModelError` naming the operator
and the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpbench.activations import parse_activation
from lpbench.errors import LpbenchError, ModelError
from lpbench.interop import require_onnx
from lpbench.network import Act, Conv2d, Dense, Flatten, Network


@dataclass(frozen=True, eq=False)
class Imported:
    """A network read from ONNX and how its input and output look in the file."""

    network: Network
    onnx_input_shape: tuple[int, ...]  # with the batch dimension as 1 when there is one
    input_name: str
    output_name: str


def load_onnx(path: str | Path) -> Imported:
    """Read an ONNX file; ModelError when it is missing, unreadable or unsupported."""
    onnx = require_onnx()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX file {path} not found")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf raises its own DecodeError (and friends)
        raise ModelError(f"cannot read ONNX file {path}: {type(err).__name__}: {err}") from None
    return from_onnx(model, name=path.stem, where=str(path))


def from_onnx(model, name: str = "", where: str = "ONNX model") -> Imported:
    onnx = require_onnx()
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise ModelError(f"{where}: invalid ONNX model: {str(err).strip().splitlines()[0]}") from None
    g = model.graph
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ModelError(f"{where}: expected one input and one output, got {len(inputs)} and {len(g.output)}")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    batch = len(dims) >= 2 and dims[0] in (1, -1)
    shape = tuple(dims[1:] if batch else dims)
    if not shape or any(d <= 0 for d in shape):
        raise ModelError(f"{where}: input {inputs[0].name!r} has unsupported shape {dims}")
    b = _Builder(shape, batch, where)
    stream, dead = inputs[0].name, set()
    for node in g.node:
        label = f"{node.op_type} (node {node.name!r})"
        names = [n for n in node.input if n]
        for n in names:
            if n in dead:
                raise ModelError(f"{where}: {label} reads tensor {n!r} again: only chains are supported")
            if n != stream and n not in consts:
                raise ModelError(f"{where}: {label} reads tensor {n!r}, which no earlier node produces")
        if stream not in names:
            consts.update(_fold(node, consts, where, label))
            continue
        if node.op_type == "Shape":  # a constant: the stream's shape (batch 1); the stream goes on
            from onnx.helper import get_attribute_value
            attr = {a.name: get_attribute_value(a) for a in node.attribute}
            full = ((1,) if batch else ()) + b.shape
            consts[node.output[0]] = np.array(full[attr.get("start", 0):attr.get("end", len(full))], np.int64)
            continue
        b.node(node, [consts.get(n) for n in node.input], node.input[0] == stream, label)
        dead.add(stream)
        stream = node.output[0]
    if g.output[0].name != stream:
        raise ModelError(f"{where}: the graph output {g.output[0].name!r} is not computed from the input")
    net = b.finish(name)
    return Imported(net, ((1,) if batch else ()) + shape, inputs[0].name, g.output[0].name)


def _fold(node, consts, where, label) -> dict[str, np.ndarray]:
    """Evaluate a node whose inputs are all constants."""
    onnx = require_onnx()
    if node.op_type == "Constant":
        return {node.output[0]: onnx.numpy_helper.to_array(node.attribute[0].t)}
    if node.op_type == "Identity":
        return {node.output[0]: consts[node.input[0]]}
    from onnx.reference import ReferenceEvaluator
    try:
        outs = ReferenceEvaluator(node).run(None, {n: consts[n] for n in node.input if n})
    except Exception as err:
        raise ModelError(f"{where}: cannot evaluate constant {label}: {err}") from None
    return dict(zip(node.output, (np.asarray(o) for o in outs)))


@dataclass(eq=False)
class _Aff:
    """A dense or conv layer under construction (weights may still be folded)."""

    weight: np.ndarray
    bias: np.ndarray
    conv: bool = False
    stride: int = 1
    padding: int = 0
    folded: bool = False

    def layer(self):
        dt = np.float64 if self.folded else self.weight.dtype
        w, bias = self.weight.astype(dt), self.bias.astype(dt)
        return Conv2d(w, bias, self.stride, self.padding) if self.conv else Dense(w, bias)


class _Builder:
    """The chain of layers, with a pending elementwise map ``x -> scale * x + shift`` on the
    stream (None: identity)."""

    ACTS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}

    def __init__(self, shape, batch, where):
        self.layers, self.input_shape, self.shape, self.batch, self.where = [], shape, shape, batch, where
        self.scale = self.shift = None

    def err(self, label, msg) -> ModelError:
        return ModelError(f"{self.where}: {label}: {msg}")

    def node(self, node, args, stream_first, label):
        from onnx.helper import get_attribute_value
        op = node.op_type
        attr = {a.name: get_attribute_value(a) for a in node.attribute}
        if op in ("Identity", "Dropout"):
            return
        if op in ("Add", "Sub", "Mul", "Div"):
            return self.elementwise(op, args[1] if stream_first else args[0], stream_first, label)
        if not stream_first:
            raise self.err(label, "the network input must be its first operand")
        if op == "Gemm":
            if attr.get("transA", 0) or args[1] is None or args[1].ndim != 2:
                raise self.err(label, "only A @ B (+ C) with a constant 2-d B and transA=0 is supported")
            alpha, beta = attr.get("alpha", 1.0), attr.get("beta", 1.0)
            w = args[1] if attr.get("transB", 0) else args[1].T
            c = args[2] if len(args) > 2 and args[2] is not None else np.zeros(w.shape[0], w.dtype)
            scaled = alpha != 1.0 or beta != 1.0
            if scaled:
                w, c = alpha * w.astype(np.float64), beta * np.asarray(c, np.float64)
            bias = np.array(np.broadcast_to(c, (1, w.shape[0]))[0])
            return self.affine(_Aff(np.ascontiguousarray(w), bias, folded=scaled), label)
        if op == "MatMul":
            if args[1] is None or args[1].ndim != 2:
                raise self.err(label, "only x @ W with a constant 2-d W is supported")
            return self.affine(_Aff(np.ascontiguousarray(args[1].T), np.zeros(args[1].shape[1], args[1].dtype)), label)
        if op == "Conv":
            return self.affine(self.conv(args, attr, label), label)
        if op in self.ACTS or op == "LeakyRelu":
            spec = self.ACTS.get(op) or f"leaky_relu({attr.get('alpha', 0.01)!r})"
            try:
                act = parse_activation(spec)
            except LpbenchError as e:
                raise self.err(label, f"activation not supported by lpbench ({e})") from None
            self.flush(label)
            self.layers.append(Act(act))
            return
        if op == "Flatten":
            if attr.get("axis", 1) != (1 if self.batch else 0):
                raise self.err(label, f"axis={attr.get('axis', 1)} would merge the batch dimension")
            return self.reshape((int(np.prod(self.shape)),), label)
        if op == "Reshape":
            return self.reshape_to(args[1], attr.get("allowzero", 0), label)
        if op == "BatchNormalization":
            scale, bias, mean, var = (np.asarray(a, np.float64) for a in args[1:5])
            a = scale / np.sqrt(var + attr.get("epsilon", 1e-5))
            ch = (-1,) + (1,) * (len(self.shape) - 1)
            self.compose(a.reshape(ch), (bias - mean * a).reshape(ch), label)
            return
        raise ModelError(f"{self.where}: unsupported ONNX operator {op} (node {node.name!r})")

    # -- elementwise affine maps ------------------------------------------------------------
    def full(self, c, label) -> np.ndarray:
        full = ((1,) if self.batch else ()) + self.shape
        if c is None:
            raise self.err(label, "only elementwise operations with a constant are supported")
        try:
            if np.broadcast_shapes(np.shape(c), full) != full:
                raise ValueError
        except ValueError:
            raise self.err(label, f"constant of shape {np.shape(c)} does not broadcast to {full}") from None
        arr = np.broadcast_to(np.asarray(c, np.float64), full)
        return np.array(arr[0] if self.batch else arr)

    def elementwise(self, op, c, stream_first, label):
        c = self.full(c, label)
        one = np.ones(self.shape)
        if op == "Add":
            self.compose(one, c, label)
        elif op == "Sub":
            self.compose(one, -c, label) if stream_first else self.compose(-one, c, label)
        elif op == "Mul":
            self.compose(c, 0 * one, label)
        elif stream_first:  # Div
            if np.any(c == 0):
                raise self.err(label, "division by zero")
            self.compose(1 / c, 0 * one, label, divide=c)
        else:
            raise self.err(label, "division by the network input is not linear")

    def compose(self, a, s, label, divide=None):
        """Apply ``x -> a * x + s`` (``divide``: a = 1 / divide, kept exact as a division)."""
        a, s = np.broadcast_to(a, self.shape), np.broadcast_to(s, self.shape)
        if self.scale is None:
            self.scale, self.shift = np.ones(self.shape), np.zeros(self.shape)
        if divide is not None:
            self.scale, self.shift = self.scale / divide, self.shift / divide
        else:
            self.scale, self.shift = a * self.scale, a * self.shift + s

    def pending(self) -> bool:
        return self.scale is not None and (np.any(self.scale != 1) or np.any(self.shift != 0))

    def affine(self, aff: _Aff, label):
        expect = (aff.weight.shape[1],) if not aff.conv else None
        if not aff.conv and self.shape != expect:
            raise self.err(label, f"expects a flat input {expect}, the tensor has shape {self.shape}")
        if aff.conv and (len(self.shape) != 3 or self.shape[0] != aff.weight.shape[1]):
            raise self.err(label, f"expects ({aff.weight.shape[1]}, H, W), the tensor has shape {self.shape}")
        if self.pending():  # fold the pending map into this layer's inputs
            w = aff.weight.astype(np.float64)
            if aff.conv:
                a, s = self.per_channel(self.scale, label), self.per_channel(self.shift, label)
                if np.any(s != 0) and aff.padding:
                    raise self.err(label, "a shift of a zero-padded conv input cannot be folded")
                aff.bias = aff.bias + w.sum(axis=(2, 3)) @ s
                aff.weight = w * a[None, :, None, None]
            else:
                aff.bias = aff.bias + w @ self.shift
                aff.weight = w * self.scale[None, :]
            aff.folded = True
        self.scale = self.shift = None
        self.layers.append(aff)
        self.shape = aff.layer().out_shape(self.shape)

    def conv(self, args, attr, label) -> _Aff:
        w = args[1]
        if w is None or w.ndim != 4:
            raise self.err(label, "only 2-d convolutions with constant weights are supported")
        auto = attr.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        strides, pads = list(attr.get("strides", [1, 1])), list(attr.get("pads", [0, 0, 0, 0]))
        if attr.get("group", 1) != 1 or any(d != 1 for d in attr.get("dilations", [1, 1])) \
                or auto not in ("NOTSET", "VALID") or len(set(strides)) != 1 or len(set(pads)) != 1:
            raise self.err(label, f"unsupported conv settings (group={attr.get('group', 1)}, "
                           f"dilations={attr.get('dilations')}, auto_pad={auto}, strides={strides}, "
                           f"pads={pads}): lpbench needs group 1, no dilation, equal strides and pads")
        b = args[2] if len(args) > 2 and args[2] is not None else np.zeros(w.shape[0], w.dtype)
        return _Aff(w, np.asarray(b), conv=True, stride=int(strides[0]), padding=int(pads[0]))

    def per_channel(self, arr, label) -> np.ndarray:
        if np.any(arr != arr[:, :1, :1]):
            raise self.err(label, "an elementwise map that is not per channel cannot be folded into a conv layer")
        return arr[:, 0, 0]

    def flush(self, label):
        """Fold the pending map into the previous affine layer (or make it a layer)."""
        if not self.pending():
            self.scale = self.shift = None
            return
        last = self.layers[-1] if self.layers else None
        if isinstance(last, _Aff):
            a, s = self.scale, self.shift
            if last.conv:
                a, s = self.per_channel(a, label), self.per_channel(s, label)
            w = last.weight.astype(np.float64)
            last.weight = a.reshape(-1, *[1] * (w.ndim - 1)) * w
            last.bias, last.folded = a * last.bias + s, True
        elif len(self.shape) == 1:
            self.layers.append(_Aff(np.diag(self.scale), self.shift.copy(), folded=True))
        elif len(self.shape) == 3:
            a, s = self.per_channel(self.scale, label), self.per_channel(self.shift, label)
            self.layers.append(_Aff(np.diag(a)[:, :, None, None], s, conv=True, folded=True))
        else:
            raise self.err(label, f"cannot represent an elementwise map on shape {self.shape}")
        self.scale = self.shift = None

    # -- shapes ------------------------------------------------------------------------------
    def reshape_to(self, target, allowzero, label):
        if target is None:
            raise self.err(label, "the target shape must be a constant")
        cur = ((1,) if self.batch else ()) + self.shape
        t = [int(d) for d in np.asarray(target).ravel()]
        if not allowzero:
            t = [cur[k] if d == 0 and k < len(cur) else d for k, d in enumerate(t)]
        try:
            new = np.empty(cur, dtype=np.int8).reshape(t).shape
        except ValueError:
            raise self.err(label, f"cannot reshape {cur} to {t}") from None
        if self.batch and (len(new) < 2 or new[0] != 1):
            raise self.err(label, f"reshape to {tuple(new)} does not keep the batch dimension")
        self.reshape(tuple(new[1:] if self.batch else new), label)

    def reshape(self, new, label):
        if new == self.shape:
            return
        if self.pending():
            self.scale, self.shift = self.scale.reshape(new), self.shift.reshape(new)
        if len(new) != 1 and all(isinstance(l, Flatten) for l in self.layers):
            self.layers.clear()  # before the first layer: only the input's view changes
            self.input_shape = self.shape = new
            return
        if len(new) != 1:
            raise self.err(label, f"reshape of {self.shape} to {new} after the first layer is not supported")
        self.layers.append(Flatten())
        self.shape = new

    def finish(self, name) -> Network:
        self.flush("output")
        layers = tuple(l.layer() if isinstance(l, _Aff) else l for l in self.layers)
        return Network(layers, self.input_shape, name)

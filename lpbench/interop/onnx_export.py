"""Network -> ONNX, and running ONNX models with onnxruntime.

The exported graph takes ``X`` of shape (batch, *input_shape) float32 and returns ``Y`` of shape
(batch, n_outputs): Gemm (transB=1) per dense layer, Conv per conv layer, Flatten(axis=1), and
Relu / LeakyRelu / Sigmoid / Tanh. Weights are written as float32, exactly the zoo's weights
(a network whose weights are not float32 numbers, e.g. one with folded normalisation, is
rounded to float32; :func:`is_float32_exact` tells).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lpbench.errors import ModelError
from lpbench.interop import require_onnx, require_onnxruntime
from lpbench.network import Act, Conv2d, Dense, Flatten, Network

OPSET = 13
IR_VERSION = 8  # what every onnxruntime since 1.10 reads


def is_float32_exact(net: Network) -> bool:
    """True if every weight and bias is a float32 number (the export is then lossless)."""
    for layer in net.layers:
        if isinstance(layer, (Dense, Conv2d)):
            for arr in (layer.weight, layer.bias):
                if not np.array_equal(np.asarray(arr, np.float32).astype(np.float64), np.asarray(arr, np.float64)):
                    return False
    return True


def export_onnx(net: Network, path: str | Path | None = None, batch: int | None = 1):
    """The network as an ONNX ModelProto (written to ``path`` when given). ``batch=None``
    makes the batch dimension symbolic (``"N"``)."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper
    n = "N" if batch is None else batch
    if not net.layers or len(net.shapes[-1]) != 1:
        raise ModelError(f"network {net.name}: export needs at least one layer and a flat output, "
                         f"got output shape {net.shapes[-1]}")
    nodes, inits, cur = [], [], "X"
    for i, layer in enumerate(net.layers):
        out = "Y" if i == len(net.layers) - 1 else f"t{i}"
        if isinstance(layer, (Dense, Conv2d)):
            inits += [numpy_helper.from_array(np.asarray(layer.weight, np.float32), f"W{i}"),
                      numpy_helper.from_array(np.asarray(layer.bias, np.float32), f"B{i}")]
            if isinstance(layer, Dense):
                nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], f"dense{i}", transB=1))
            else:
                k = list(layer.weight.shape[2:])
                nodes.append(helper.make_node("Conv", [cur, f"W{i}", f"B{i}"], [out], f"conv{i}", kernel_shape=k,
                                              strides=[layer.stride] * 2, pads=[layer.padding] * 4))
        elif isinstance(layer, Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [out], f"flatten{i}", axis=1))
        elif isinstance(layer, Act):
            nodes.append(_activation(layer, cur, out, i))
        cur = out
    graph = helper.make_graph(
        nodes, net.name or "lpbench",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, *net.input_shape])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, net.n_classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="lpbench", ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def _activation(layer: Act, cur: str, out: str, i: int):
    from onnx import helper
    a = layer.activation
    if a.name == "leaky_relu":
        return helper.make_node("LeakyRelu", [cur], [out], f"act{i}", alpha=float(a.params[0]))
    op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}.get(a.name)
    if op is None:
        raise ModelError(f"activation {a.spec} has no ONNX operator lpbench can write")
    return helper.make_node(op, [cur], [out], f"act{i}")


class OrtModel:
    """An ONNX model (file or ModelProto) run by onnxruntime on one CPU thread."""

    def __init__(self, model) -> None:
        ort = require_onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        data = model.SerializeToString() if hasattr(model, "SerializeToString") else str(Path(model))
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ModelError(f"onnxruntime cannot load the model: {err}") from None
        inp = self.session.get_inputs()[0]
        self.name = inp.name
        self.shape = [d if isinstance(d, int) else -1 for d in inp.shape]
        self.fixed_batch = len(self.shape) >= 2 and self.shape[0] == 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (B, n_out) float64 for inputs (B, ...) (any shape with B * prod(input) entries)."""
        x = np.asarray(x, np.float32)
        b = x.shape[0]
        per = [d for d in self.shape[1:]] if len(self.shape) >= 2 and self.shape[0] in (1, -1) else None
        if per is None:  # no batch dimension: one sample at a time
            return np.stack([self._run(xi.reshape(self.shape)).ravel() for xi in x]).astype(np.float64)
        if self.fixed_batch:
            return np.stack([self._run(xi.reshape(1, *per)).ravel() for xi in x]).astype(np.float64)
        return self._run(x.reshape(b, *per)).reshape(b, -1).astype(np.float64)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.name: x})[0])

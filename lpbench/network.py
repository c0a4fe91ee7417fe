"""The network intermediate representation (IR).

A :class:`Network` is a feed-forward sequence of layers acting on one sample of shape
``input_shape`` (e.g. ``(1, 28, 28)``):

* :class:`Dense` -- ``y = W x + b`` on a flat vector, ``W`` of shape (out, in);
* :class:`Conv2d` -- a 2-d convolution on a (C, H, W) tensor (torch semantics);
* :class:`Flatten` -- (C, H, W) -> C*H*W in torch NCHW order (channel, row, column);
* :class:`Act` -- an elementwise activation from :mod:`lpbench.activations`.

Weights are kept as float32 numpy arrays exactly as stored; every consumer casts them to the
precision it needs (bound propagation works in float64, attacks in float32). Convolutions can be
lowered to sparse matrices (:meth:`Conv2d.to_sparse`) for the LP and MILP formulations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Sequence, Union

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from lpbench.activations import Activation, ParamRamp, parse_activation
from lpbench.errors import ModelError

Shape = tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Dense:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)

    def out_shape(self, in_shape: Shape) -> Shape:
        if in_shape != (self.weight.shape[1],):
            raise ModelError(f"dense layer expects input ({self.weight.shape[1]},), got {in_shape}")
        return (self.weight.shape[0],)


@dataclass(frozen=True, eq=False)
class Conv2d:
    weight: np.ndarray  # (C_out, C_in, kh, kw)
    bias: np.ndarray  # (C_out,)
    stride: int = 1
    padding: int = 0

    def out_shape(self, in_shape: Shape) -> Shape:
        c_out, c_in, kh, kw = self.weight.shape
        if len(in_shape) != 3 or in_shape[0] != c_in:
            raise ModelError(f"conv layer expects input ({c_in}, H, W), got {in_shape}")
        h = (in_shape[1] + 2 * self.padding - kh) // self.stride + 1
        w = (in_shape[2] + 2 * self.padding - kw) // self.stride + 1
        if h <= 0 or w <= 0:
            raise ModelError(f"conv kernel {kh}x{kw} does not fit input {in_shape}")
        return (c_out, h, w)

    def to_sparse(self, in_shape: Shape) -> sp.csr_matrix:
        """The convolution as a (out_numel, in_numel) sparse matrix in NCHW flatten order."""
        c_out, c_in, kh, kw = self.weight.shape
        _, h_in, w_in = in_shape
        _, h_out, w_out = self.out_shape(in_shape)
        co, ci, ki, kj, oi, oj = np.meshgrid(np.arange(c_out), np.arange(c_in), np.arange(kh),
                                             np.arange(kw), np.arange(h_out), np.arange(w_out),
                                             indexing="ij")
        ii = oi * self.stride - self.padding + ki
        jj = oj * self.stride - self.padding + kj
        keep = (ii >= 0) & (ii < h_in) & (jj >= 0) & (jj < w_in)
        rows = (co * h_out + oi) * w_out + oj
        cols = (ci * h_in + ii) * w_in + jj
        vals = self.weight[co, ci, ki, kj]
        m = sp.coo_matrix((vals[keep].astype(np.float64), (rows[keep], cols[keep])),
                          shape=(c_out * h_out * w_out, c_in * h_in * w_in))
        return m.tocsr()


@dataclass(frozen=True)
class Flatten:
    def out_shape(self, in_shape: Shape) -> Shape:
        return (int(np.prod(in_shape)),)


@dataclass(frozen=True)
class Act:
    activation: Activation

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape


Layer = Union[Dense, Conv2d, Flatten, Act]
AFFINE = (Dense, Conv2d, Flatten)


@dataclass(frozen=True, eq=False)
class Network:
    """A feed-forward network: ``layers`` applied in order to one sample of ``input_shape``."""

    layers: tuple[Layer, ...]
    input_shape: Shape
    name: str = ""
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.shapes  # validates the chain of shapes
        for i, layer in enumerate(self.layers):
            r = layer.activation.r if isinstance(layer, Act) else None
            if r is not None and r.shape != self.shapes[i]:
                raise ModelError(f"layer {i} {layer.activation.spec}: per-neuron r of shape {r.shape}, "
                                 f"the layer has shape {self.shapes[i]}")

    @cached_property
    def shapes(self) -> tuple[Shape, ...]:
        """shapes[i] is the input shape of layer i; shapes[-1] is the output shape."""
        out = [tuple(self.input_shape)]
        for layer in self.layers:
            out.append(layer.out_shape(out[-1]))
        return tuple(out)

    @property
    def n_classes(self) -> int:
        return int(np.prod(self.shapes[-1]))

    @property
    def activation_indices(self) -> tuple[int, ...]:
        return tuple(i for i, layer in enumerate(self.layers) if isinstance(layer, Act))

    @property
    def n_neurons(self) -> int:
        """Number of activation neurons (hidden units)."""
        return sum(int(np.prod(self.shapes[i])) for i in self.activation_indices)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_spec(cls, input_shape: Sequence[int], layers: Sequence[str],
                  params: Mapping[str, np.ndarray], name: str = "") -> "Network":
        """Build from a manifest layer list (``"conv(16,k=4,s=2,p=1)"``, ``"relu"``,
        ``"flatten"``, ``"linear(100)"``) with parameters keyed ``"<index>.weight"`` /
        ``"<index>.bias"`` as in a torch ``nn.Sequential`` state dict."""
        built: list[Layer] = []
        for i, spec in enumerate(layers):
            s = spec.strip()
            if s == "flatten":
                built.append(Flatten())
            elif s.startswith("linear(") or s.startswith("conv("):
                w, b = _param(params, i, "weight"), _param(params, i, "bias")
                if s.startswith("linear("):
                    out = int(_args(s)[0])
                    if w.ndim != 2 or w.shape[0] != out or b.shape != (out,):
                        raise ModelError(f"layer {i} {s}: weight {w.shape}, bias {b.shape}")
                    built.append(Dense(w, b))
                else:
                    args = _args(s)
                    kw = dict(a.split("=") for a in args[1:])
                    c_out, k = int(args[0]), int(kw["k"])
                    if w.ndim != 4 or w.shape[0] != c_out or w.shape[2:] != (k, k):
                        raise ModelError(f"layer {i} {s}: weight {w.shape}")
                    built.append(Conv2d(w, b, int(kw.get("s", 1)), int(kw.get("p", 0))))
            else:
                act = parse_activation(s)
                if f"{i}.r" in params:  # ParamRamp with a per-neuron threshold
                    act = act.with_r(np.asarray(params[f"{i}.r"], dtype=np.float64))
                built.append(Act(act))
        return cls(tuple(built), tuple(int(d) for d in input_shape), name)

    @classmethod
    def from_torch(cls, module: torch.nn.Module, input_shape: Sequence[int], name: str = "") -> "Network":
        """Build from a torch ``nn.Sequential`` of Linear, Conv2d, Flatten, ReLU, LeakyReLU, Tanh,
        Sigmoid and :class:`lpbench.activations.ParamRamp`."""
        built: list[Layer] = []
        for m in module.children() if isinstance(module, torch.nn.Sequential) else [module]:
            if isinstance(m, torch.nn.Linear):
                built.append(Dense(_np(m.weight), _np(m.bias, m.out_features)))
            elif isinstance(m, torch.nn.Conv2d):
                if m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1] or m.groups != 1 \
                        or m.dilation != (1, 1):
                    raise ModelError(f"unsupported conv settings in {m}")
                built.append(Conv2d(_np(m.weight), _np(m.bias, m.out_channels), m.stride[0], m.padding[0]))
            elif isinstance(m, torch.nn.Flatten):
                built.append(Flatten())
            elif isinstance(m, torch.nn.ReLU):
                built.append(Act(parse_activation("relu")))
            elif isinstance(m, torch.nn.LeakyReLU):
                built.append(Act(parse_activation(f"leaky_relu({m.negative_slope})")))
            elif isinstance(m, (torch.nn.Tanh, torch.nn.Sigmoid)):
                built.append(Act(parse_activation(type(m).__name__.lower())))
            elif isinstance(m, ParamRamp):
                r = m.r.detach().clamp_min(1e-4).cpu().numpy().astype(np.float64)
                act = parse_activation(f"param_ramp({m.eta},{float(r.mean())})")
                built.append(Act(act.with_r(r)))
            else:
                raise ModelError(f"unsupported torch module {type(m).__name__}")
        return cls(tuple(built), tuple(int(d) for d in input_shape), name)

    # -- evaluation -----------------------------------------------------------------------
    def torch_params(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> list:
        """Per layer, the (weight, bias) tensors in ``dtype`` on ``device`` (cached)."""
        key = (dtype, str(device))
        if key not in self._torch_cache:
            self._torch_cache[key] = [
                (torch.as_tensor(l.weight, dtype=dtype, device=device),
                 torch.as_tensor(l.bias, dtype=dtype, device=device))
                if isinstance(l, (Dense, Conv2d)) else None for l in self.layers]
        return self._torch_cache[key]

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Run layers ``[0, upto)`` on a batch ``x`` of shape (B, *input_shape); the network's
        dtype and device follow ``x``."""
        params = self.torch_params(x.dtype, x.device)
        for i, layer in enumerate(self.layers[:upto]):
            x = apply_layer(layer, params[i], x)
        return x

    def logits64(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Reference float64 forward pass on CPU; the semantics every verdict is checked against."""
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(-1, *self.input_shape)
        with torch.no_grad():
            return self.forward(xt).reshape(xt.shape[0], -1).numpy()

    def check_input_shape(self, shape: Sequence[int]) -> None:
        if tuple(shape) != tuple(self.input_shape):
            raise ModelError(f"network {self.name or ''} expects inputs of shape {tuple(self.input_shape)}, "
                             f"data has shape {tuple(shape)}")


def apply_layer(layer: Layer, params, x: torch.Tensor) -> torch.Tensor:
    """One layer on a batch (B, *shape)."""
    if isinstance(layer, Dense):
        return F.linear(x, *params)
    if isinstance(layer, Conv2d):
        return F.conv2d(x, params[0], params[1], stride=layer.stride, padding=layer.padding)
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)
    return layer.activation.forward(x)


def _args(spec: str) -> list[str]:
    return [a.strip() for a in re.search(r"\((.*)\)", spec).group(1).split(",")]


def _param(params: Mapping[str, np.ndarray], i: int, kind: str) -> np.ndarray:
    key = f"{i}.{kind}"
    if key not in params:
        raise ModelError(f"missing parameter {key!r} (have {sorted(params)})")
    return np.asarray(params[key], dtype=np.float32)


def _np(t: torch.Tensor | None, n: int = 0) -> np.ndarray:
    if t is None:
        return np.zeros(n, dtype=np.float32)
    return t.detach().cpu().numpy().astype(np.float32)

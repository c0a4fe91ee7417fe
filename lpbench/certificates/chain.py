"""A network as a chain of float64 affine maps between elementwise activations.

The certificates of this package reason about ``z_i = W_i a_{i-1} + b_i``, ``a_i = act(z_i)``
on flat vectors: flattens are identities (NCHW order) and convolutions are lowered to their
dense matrices (:meth:`lpbench.network.Conv2d.to_sparse`). Which activations a certificate
accepts is its own business; :func:`affine_chain` checks it and names the method in the error.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.network import Act, Conv2d, Dense, Flatten, Network

#: Above this many entries a conv layer is not lowered to a dense matrix.
MAX_DENSE_ENTRIES = 40_000_000


@dataclass(frozen=True, eq=False)
class Affine:
    """``z = W a + b`` on flat vectors (float64); ``conv`` keeps the layer a conv came from."""

    weight: np.ndarray
    bias: np.ndarray
    conv: Conv2d | None = None
    in_shape: tuple[int, ...] = ()

    @cached_property
    def spectral(self) -> float:
        """An upper bound of ||W||_2: LAPACK's largest singular value (backward stable: within a
        few ulps times the dimension of the exact one) raised by a relative 1e-9."""
        return float(np.linalg.norm(self.weight, 2)) * (1 + 1e-9) if self.weight.size else 0.0

    @cached_property
    def row_norms(self) -> np.ndarray:
        return np.linalg.norm(self.weight, axis=1)


#: Per network, its lowered chain (networks are immutable; dropped with the network).
_CACHE: "weakref.WeakKeyDictionary[Network, list[Affine]]" = weakref.WeakKeyDictionary()


def affine_chain(net: Network, method: str, activations: tuple[str, ...] = ("relu",)) -> list[Affine]:
    """The affine layers of ``net`` in order; between two of them exactly one activation from
    ``activations``, the network starting with an affine layer (after flattens) and ending with
    one. Anything else is an :class:`LpbenchError` naming ``method``."""
    for i in net.activation_indices:
        act = net.layers[i].activation
        if act.name not in activations:
            raise LpbenchError(f"{method} needs {' or '.join(activations)} activations; network "
                               f"{net.name or '(unnamed)'} has {act.spec} at layer {i}")
    if net in _CACHE:
        return _CACHE[net]
    chain: list[Affine] = []
    pending_act = False
    for i, layer in enumerate(net.layers):
        shape = net.shapes[i]
        if isinstance(layer, Flatten):
            continue
        if isinstance(layer, Act):
            if not chain or pending_act:
                raise LpbenchError(f"{method} needs one activation between affine layers "
                                   f"(network {net.name or '(unnamed)'}, layer {i})")
            pending_act = True
            continue
        if isinstance(layer, Dense):
            w = layer.weight.astype(np.float64)
            b = layer.bias.astype(np.float64)
            conv = None
        elif isinstance(layer, Conv2d):
            out = net.shapes[i + 1]
            if math.prod(out) * math.prod(shape) > MAX_DENSE_ENTRIES:
                raise LpbenchError(f"{method}: conv layer {i} is too large to lower to a dense matrix "
                                   f"({math.prod(out)} x {math.prod(shape)})")
            w = layer.to_sparse(shape).toarray()
            b = np.repeat(layer.bias.astype(np.float64), math.prod(out[1:]))
            conv = layer
        else:
            raise LpbenchError(f"{method}: unsupported layer {type(layer).__name__} at {i}")
        if chain and not pending_act:
            raise LpbenchError(f"{method} needs an activation between affine layers "
                               f"(network {net.name or '(unnamed)'}, layer {i})")
        chain.append(Affine(w, b, conv, tuple(shape)))
        pending_act = False
    if not chain or pending_act:
        raise LpbenchError(f"{method} needs a network ending with an affine layer "
                           f"({net.name or '(unnamed)'})")
    _CACHE[net] = chain
    return chain


def check_norm(method: str, norm: str, supported: tuple[str, ...]) -> None:
    if norm not in supported:
        raise LpbenchError(f"{method} does not support the {norm} norm (supported: {', '.join(supported)})")


def dual_norm(v: np.ndarray, norm: str, axis: int = -1) -> np.ndarray:
    """``||v||_q`` along ``axis`` for the threat-model norm ``norm`` (1/p + 1/q = 1)."""
    a = np.abs(v)
    if norm == "linf":
        return a.sum(axis)
    if norm == "l2":
        return np.sqrt((a * a).sum(axis))
    return a.max(axis)


def safe_ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """``num / den`` rounded down safely: a relative 1e-9 off for float64 rounding in the
    computation of both (errors there are ~1e-13 relative); 0 for a non-positive numerator, inf
    for a zero denominator with a positive numerator."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(num > 0, num / den, 0.0)
    return np.where(np.isfinite(r), np.maximum(r * (1 - 1e-9), 0.0), r)


_U = 2.0 ** -53


def forward_with_error(chain: list[Affine], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The logits of a ReLU chain at x in float64 and a bound on their rounding error: with e the
    error of a layer's input, a computed ``z = W a + b`` is off by at most
    ``|W| e + gamma_n (|W| |a| + |b|)`` (gamma_n = n u / (1 - n u), doubled; Higham's bound for
    sums of n products); a ReLU passes the error on, except where ``z < -err`` (then both the
    exact and the computed output are 0)."""
    a = np.asarray(x, np.float64).ravel()
    e = np.zeros_like(a)
    for i, layer in enumerate(chain):
        w, b = layer.weight, layer.bias
        n = w.shape[1] + 2
        gamma = 2.0 * n * _U / (1.0 - n * _U)
        aw = np.abs(w)
        z = w @ a + b
        e = aw @ e + gamma * (aw @ np.abs(a) + np.abs(b)) + 4 * _U * np.abs(z)
        if i < len(chain) - 1:
            e = np.where(z < -e, 0.0, e)
            a = np.maximum(z, 0.0)
        else:
            a = z
    return a, e

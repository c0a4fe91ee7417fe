"""HOW bounds travel: interval propagation (IBP) and layer-by-layer backward linear bounds.

``propagate`` computes sound bounds of ``spec @ f(x')`` over the perturbation set for a batch of
samples. The pre-activation bounds of every activation layer are computed first, layer by layer,
either by intervals (IBP) or by the backward engine with a slope policy (Fast-Lin, CROWN and the
greedy dual of Wong & Kolter); the final specification gets one more backward pass. All methods in
:mod:`lpbench.methods` are compositions of these two choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lpbench.bounds.backward import ABS_SLACK, REL_SLACK, backward_bounds
from lpbench.bounds.interval import interval_layer
from lpbench.bounds.relaxations import Lines, activation_lines
from lpbench.network import Act, Conv2d, Dense, Network
from lpbench.problem import Perturbation


@dataclass(frozen=True, eq=False)
class Bounds:
    """``lower``/``upper``: (B, m) bounds of the specification; ``pre``: for each activation layer
    index, the (lo, hi) bounds of its input, each (B, *shape)."""

    lower: torch.Tensor
    upper: torch.Tensor
    pre: dict[int, tuple[torch.Tensor, torch.Tensor]]


def _widen(lo, hi, mag):
    slack = REL_SLACK * mag + ABS_SLACK
    return lo - slack, hi + slack


def interval_bounds(net: Network, x: torch.Tensor, pset: Perturbation, spec: torch.Tensor) -> Bounds:
    """IBP (Gowal et al. 2018): intervals layer by layer; the specification is folded into the
    last dense layer so margins do not lose the correlation of the logits."""
    params = net.torch_params(x.dtype, x.device)
    lo, hi = pset.enclosing_box(x)
    pre = {}
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Act):
            pre[i] = (lo, hi)
        if i == last and isinstance(layer, Dense):
            break
        lo, hi, mag = interval_layer(layer, params[i], lo, hi)
        lo, hi = _widen(lo, hi, mag)
    if isinstance(net.layers[last], Dense):
        w, b = params[last]
        lam, bias = spec @ w, spec @ b  # (B, m, in), (B, m)
    else:
        lam, bias = spec, torch.zeros(spec.shape[:2], dtype=x.dtype, device=x.device)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    c = torch.einsum("bmn,bn->bm", lam, mid) + bias
    r = torch.einsum("bmn,bn->bm", lam.abs(), rad)
    mag = torch.einsum("bmn,bn->bm", lam.abs(), torch.maximum(lo.abs(), hi.abs())) + bias.abs()
    lower, upper = _widen(c - r, c + r, mag)
    return Bounds(lower, upper, pre)


def linear_bounds(net: Network, x: torch.Tensor, pset: Perturbation, spec: torch.Tensor,
                  policy: str, intermediate: str = "backward") -> Bounds:
    """Backward linear bounds with the ReLU lower-slope ``policy``; pre-activation bounds from
    the same backward engine (``intermediate="backward"``) or from IBP (``"interval"``)."""
    if intermediate not in ("backward", "interval"):
        raise ValueError(f"intermediate must be 'backward' or 'interval', got {intermediate!r}")
    params = net.torch_params(x.dtype, x.device)
    if intermediate == "interval":
        pre = interval_bounds(net, x, pset, spec).pre
    else:
        pre = {}
    lines: dict[int, Lines] = {}
    for i in net.activation_indices:
        if i not in pre:
            pre[i] = _pre_activation_bounds(net, params, i, lines, x, pset)
        lo, hi = pre[i]
        lines[i] = activation_lines(net.layers[i].activation, lo, hi, policy)
    k = len(net.layers)
    lower, upper = backward_bounds(net, params, k, spec.reshape(*spec.shape[:2], *net.shapes[k]),
                                   lines, x, pset)
    return Bounds(lower, upper, pre)


def _pre_activation_bounds(net, params, i, lines, x, pset):
    """Bounds of the input of activation layer i: one backward pass with the identity spec."""
    shape = net.shapes[i]
    n = math.prod(shape)
    if pset.norm == "linf" and _single_affine(net.layers[:i]):
        # one affine map of a box: intervals are exact and far cheaper than 2n backward rows
        lo, hi = pset.enclosing_box(x)
        for j in range(i):
            lo, hi, mag = interval_layer(net.layers[j], params[j], lo, hi)
            lo, hi = _widen(lo, hi, mag)
        return lo, hi
    eye = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *shape)
    lam = eye.unsqueeze(0).expand(x.shape[0], *eye.shape)
    lower, upper = backward_bounds(net, params, i, lam, lines, x, pset)
    return lower.reshape(-1, *shape), upper.reshape(-1, *shape)


def _single_affine(layers) -> bool:
    """True if ``layers`` hold no activation and at most one dense/conv layer (plus flattens)."""
    return not any(isinstance(l, Act) for l in layers) and \
        sum(isinstance(l, (Dense, Conv2d)) for l in layers) <= 1

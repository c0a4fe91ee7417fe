"""HOW bounds travel: interval propagation (IBP) and layer-by-layer backward linear bounds.

``propagate`` computes sound bounds of ``spec @ f(x')`` over the perturbation set for a batch of
samples. The pre-activation bounds of every activation layer are computed first, layer by layer,
either by intervals (IBP), by the backward engine with a bounding-line strategy (Fast-Lin, CROWN
and the greedy dual of Wong & Kolter) or by relaxed CROWN-v / LBP (:mod:`lpbench.bounds.relaxed`);
the final specification gets one more backward pass (or a relaxed one). All methods in
:mod:`lpbench.methods` are compositions of these choices (Lyu et al. 2021, Section 3):

* CROWN = backward intermediates + backward final; CROWN-IBP = IBP intermediates + backward final;
* LBP = relaxed CROWN-1 throughout; CROWN-LBP = LBP intermediates + backward final;
* relaxed CROWN-v = v-step back-substitution throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lpbench.bounds.backward import ABS_SLACK, REL_SLACK, backward_bounds
from lpbench.bounds.interval import interval_layer
from lpbench.bounds.relaxations import Lines, activation_lines
from lpbench.bounds.relaxed import relaxed_bounds_of
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
    """Backward linear bounds with the bounding-line strategy ``policy`` (see
    :mod:`lpbench.bounds.relaxations`); pre-activation bounds from the same backward engine
    (``intermediate="backward"``: CROWN), from IBP (``"interval"``: CROWN-IBP) or from LBP
    (``"lbp"``: CROWN-LBP)."""
    if intermediate not in ("backward", "interval", "lbp"):
        raise ValueError(f"intermediate must be 'backward', 'interval' or 'lbp', got {intermediate!r}")
    if intermediate == "lbp" and x.shape[0] > _lbp_batch(net):
        return _in_chunks(lambda xs, cs: linear_bounds(net, xs, pset, cs, policy, intermediate), x, spec, _lbp_batch(net))
    params = net.torch_params(x.dtype, x.device)
    if intermediate == "interval":
        pre = interval_bounds(net, x, pset, spec).pre
    elif intermediate == "lbp":
        pre, _, _ = _relaxed_pre(net, params, x, pset, policy, 1)
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


def relaxed_bounds(net: Network, x: torch.Tensor, pset: Perturbation, spec: torch.Tensor,
                   policy: str, v: int = 1) -> Bounds:
    """Relaxed CROWN-v (Lyu et al. 2021, eq. 15-16) for every layer and the specification;
    ``v = 1`` is LBP (linear bound propagation, Theorem 1)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"relaxed CROWN needs an integer v >= 1, got {v!r}")
    if x.shape[0] > _lbp_batch(net):
        return _in_chunks(lambda xs, cs: relaxed_bounds(net, xs, pset, cs, policy, v), x, spec, _lbp_batch(net))
    params = net.torch_params(x.dtype, x.device)
    pre, lines, lin = _relaxed_pre(net, params, x, pset, policy, v)
    k = len(net.layers)
    lower, upper, _ = relaxed_bounds_of(net, params, k, spec.reshape(*spec.shape[:2], *net.shapes[k]),
                                        lines, lin, v, x, pset)
    return Bounds(lower, upper, pre)


#: Memory for the stored linear bounds of relaxed CROWN / LBP (both sides, every layer) per call.
LBP_BYTES = 1 << 30


def _lbp_batch(net: Network) -> int:
    """Samples per call so that the stored (B, n_j, n_in) linear bounds fit in LBP_BYTES."""
    n_in = math.prod(net.input_shape)
    per_sample = 16 * n_in * sum(math.prod(net.shapes[i]) for i in net.activation_indices)
    return max(1, LBP_BYTES // max(1, per_sample))


def _in_chunks(fn, x, spec, size: int) -> Bounds:
    parts = [fn(x[s:s + size], spec[s:s + size]) for s in range(0, x.shape[0], size)]
    pre = {i: (torch.cat([p.pre[i][0] for p in parts]), torch.cat([p.pre[i][1] for p in parts]))
           for i in parts[0].pre}
    return Bounds(torch.cat([p.lower for p in parts]), torch.cat([p.upper for p in parts]), pre)


def _relaxed_pre(net, params, x, pset, policy, v):
    """Pre-activation bounds, lines and stored linear bounds of every activation layer by
    relaxed CROWN-v, layer by layer."""
    pre, lines, lin = {}, {}, {}
    for i in net.activation_indices:
        shape = net.shapes[i]
        n = math.prod(shape)
        eye = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *shape)
        lam = eye.unsqueeze(0).expand(x.shape[0], *eye.shape)
        lo, hi, lin[i] = relaxed_bounds_of(net, params, i, lam, lines, lin, v, x, pset, keep=True)
        pre[i] = (lo.reshape(-1, *shape), hi.reshape(-1, *shape))
        lines[i] = activation_lines(net.layers[i].activation, *pre[i], policy)
    return pre, lines, lin


def crown_ibp_bounds(net: Network, x: torch.Tensor, pset: Perturbation, spec: torch.Tensor,
                     policy: str, beta: float = 1.0) -> Bounds:
    """CROWN-IBP (Zhang et al. 2020): IBP intermediate bounds and one backward pass; with
    ``beta < 1`` the bounds are the convex combination ``(1 - beta) IBP + beta CROWN-IBP`` used in
    certified training (each is sound, so the mixture is)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"CROWN-IBP beta must lie in [0, 1], got {beta!r}")
    b = linear_bounds(net, x, pset, spec, policy, intermediate="interval")
    if beta == 1.0:
        return b
    ibp = interval_bounds(net, x, pset, spec)
    mix = lambda a, c: (1 - beta) * a + beta * c  # noqa: E731
    lower, upper = mix(ibp.lower, b.lower), mix(ibp.upper, b.upper)
    slack = REL_SLACK * (ibp.lower.abs() + b.lower.abs() + ibp.upper.abs() + b.upper.abs()) + ABS_SLACK
    return Bounds(lower - slack, upper + slack, b.pre)

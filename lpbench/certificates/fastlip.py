"""Fast-Lip (Weng et al. 2018), the local-Lipschitz baseline of Zhang et al. 2018 (CROWN).

On the ball of radius s around x, Fast-Lin's pre-activation bounds (lpbench's backward engine,
policy "same-slope", within the input box) fix each ReLU's derivative to {1} (lower bound > 0),
{0} (upper bound < 0) or [0, 1]. Propagating the margin rows ``W^K_y - W^K_t`` backwards through
these interval diagonals and the weights gives an interval Jacobian of ``g_t = f_y - f_t`` valid
on the whole ball, hence ``L_t(s) = || max(|J_lo|, |J_hi|) ||_q``.

As in the CROWN paper's baseline, the bound is integrated over the radius: with steps
``e_1 < ... < e_n = eps_max`` (equal width h), ``g_t(x') >= g_t(x) - sum_{e_k <= r} L_t(e_k) h``
for ``||x' - x|| <= r`` (L_t grows with the radius, so each step uses its right end). The certified
radius of t is where that budget first reaches 0 (interpolated within the step); eps_max is doubled
while every target survives it and cut by 5 while the radius is below eps_max / 5 (every attempt is
sound; the largest is kept).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lpbench.bounds.propagate import linear_bounds
from lpbench.certificates.chain import affine_chain, check_norm, dual_norm, safe_ratio
from lpbench.methods import margin_spec
from lpbench.network import Network
from lpbench.problem import Perturbation

NORMS = ("linf", "l2", "l1")
#: First eps_max per norm (the CROWN code's MNIST choices: 0.05, x20 for l2, x30 for l1).
EPS_MAX = {"linf": 0.05, "l2": 1.0, "l1": 1.5}


def jacobian_interval(net: Network, x: np.ndarray, labels: np.ndarray, pset: Perturbation
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sample of the batch ``x``, (mid, rad), each (K, D): every (generalised) Jacobian of
    ``f_label - f_t`` at a point of the set ``pset`` around x lies in ``[mid - rad, mid + rad]``
    (row t; row label is 0)."""
    check_norm("fast-lip", pset.norm, NORMS)
    chain = affine_chain(net, "fast-lip")
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels))
    with torch.no_grad():
        pre = linear_bounds(net, xt, pset, margin_spec(y, net.n_classes, xt.dtype, xt.device), "same-slope").pre
    acts = [pre[i] for i in net.activation_indices]
    out = []
    w_last = chain[-1].weight
    for b, label in enumerate(np.asarray(labels)):
        mid = w_last[label][None, :] - w_last  # (K, N) exact rows
        rad = np.zeros_like(mid)
        for k in range(len(chain) - 2, -1, -1):
            lo_z = acts[k][0][b].reshape(-1).numpy()
            hi_z = acts[k][1][b].reshape(-1).numpy()
            d_lo = (lo_z > 0).astype(np.float64)
            d_hi = (hi_z >= 0).astype(np.float64)
            a_lo, a_hi = mid - rad, mid + rad
            prods = np.stack([a_lo * d_lo, a_lo * d_hi, a_hi * d_lo, a_hi * d_hi])
            n_lo, n_hi = prods.min(0), prods.max(0)
            mid, rad = (n_lo + n_hi) / 2, (n_hi - n_lo) / 2
            w = chain[k].weight
            mid, rad = mid @ w, (rad @ np.abs(w)) * (1 + 1e-11) + 1e-11 * (np.abs(mid) @ np.abs(w))
        out.append((mid, rad))
    return out


def lipschitz_intervals(net: Network, x: np.ndarray, labels: np.ndarray, pset: Perturbation) -> np.ndarray:
    """(B, K) local Lipschitz bounds L_t of ``f_label - f_t`` on the set ``pset`` around each x
    (a batch (B, *input_shape)); 0 at t = label."""
    out = np.zeros((len(labels), net.n_classes))
    for b, ((mid, rad), label) in enumerate(zip(jacobian_interval(net, x, labels, pset), np.asarray(labels))):
        out[b] = dual_norm(np.abs(mid) + rad, pset.norm) * (1 + 1e-9)
        out[b, label] = 0.0
    return out


def integrated_margins(net: Network, x: np.ndarray, labels: np.ndarray, margins: np.ndarray, eps: float,
                       norm: str, box, steps: int = 30) -> np.ndarray:
    """(B, K) lower bounds of the margins over the eps-ball, integrating L_t(s) over [0, eps]."""
    h = eps / steps
    out = np.array(margins, np.float64, copy=True)
    for k in range(1, steps + 1):
        out -= lipschitz_intervals(net, x, labels, Perturbation(min(k * h * (1 + 1e-12), eps), norm, box)) * h
    return out


def fast_lip_radius(net: Network, x: np.ndarray, label: int, margins: np.ndarray, norm: str,
                    box=(0.0, 1.0), steps: int = 30, attempts: int = 6) -> float:
    """Certified radius of one sample (``margins``: safe f_label - f_t at x, (K,))."""
    check_norm("fast-lip", norm, NORMS)
    eps_max = EPS_MAX[norm]
    best = 0.0
    xb, lb = np.asarray(x)[None], np.array([label])
    for _ in range(attempts):
        h = eps_max / steps
        budget = np.where(np.arange(len(margins)) == label, math.inf, margins).astype(np.float64)
        radius = np.full(len(margins), eps_max)
        alive = budget > 0
        radius[~alive] = 0.0
        for k in range(1, steps + 1):
            if not alive.any():
                break
            L = lipschitz_intervals(net, xb, lb, Perturbation(k * h, norm, box))[0]
            after = budget - L * h
            dead = alive & (after <= 0)
            radius[dead] = (k - 1) * h + safe_ratio(budget[dead], L[dead])
            radius[dead] = np.minimum(radius[dead], k * h)
            alive &= ~dead
            budget = np.where(alive, after, budget)
        r = float(radius.min())
        best = max(best, r)
        if r >= eps_max:
            eps_max *= 2
        elif 0 < r <= eps_max / 5:
            eps_max /= 5
        else:
            break
    return best

"""The decision-boundary certificate of Singla & Feizi 2019 (Theorem 4): one hidden layer only.

For ``f(x) = W2 relu(W1 x + b1) + b2`` with predicted class k, the closest adversarial point
lies, for some activation pattern theta and class j, on the hyperplane where the pattern's
affine map ties j and k. Relaxing theta to [0, 1]^N,

    rho >= min_j  min_theta |g_j(theta)| / max_theta ||(W2_j - W2_k) diag(theta) W1||_q,

with ``g_j(theta) = sum_i theta_i c_i + c_0``, ``c_i = (W2_ji - W2_ki) z1_i(x)`` and
``c_0 = b2_j - b2_k``. The numerator has a closed form (lo = c_0 + sum min(c_i, 0), hi =
c_0 + sum max(c_i, 0); 0 when lo <= 0 <= hi, else min(|lo|, |hi|)). The denominator is bounded
by ``||W2_j - W2_k||_2 ||W1||_2`` (spectral norm; the paper's l_2 setting) and, for every norm, by
``sum_i |W2_ji - W2_ki| ||W1_i||_q`` (triangle inequality); the smaller of the valid bounds is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lpbench.certificates.chain import affine_chain, check_norm, dual_norm, safe_ratio
from lpbench.errors import LpbenchError
from lpbench.network import Network

NORMS = ("l2", "linf", "l1")


@dataclass(frozen=True)
class BoundaryResult:
    radius: float
    target: int  # the class j of the minimum (-1 if none)
    zero_terms: int  # classes whose relaxed numerator is 0


def decision_boundary_certificate(net: Network, x: np.ndarray, norm: str = "l2") -> BoundaryResult:
    """Theorem 4 of Singla & Feizi 2019 at ``x`` for its predicted class."""
    check_norm("decision-boundary", norm, NORMS)
    chain = affine_chain(net, "decision-boundary")
    if len(chain) != 2:
        raise LpbenchError(f"decision-boundary certificate needs a network with one hidden layer; "
                           f"{net.name or 'this network'} has {len(chain) - 1}")
    (w1, b1), (w2, b2) = (chain[0].weight, chain[0].bias), (chain[1].weight, chain[1].bias)
    u = np.asarray(x, np.float64).ravel()
    z1 = w1 @ u + b1
    logits = w2 @ np.maximum(z1, 0) + b2
    k = int(np.argmax(logits))
    v = w2 - w2[k]  # (K, N) rows W2_j - W2_k
    c = v * z1[None, :]
    mag = (np.abs(v) * (np.abs(w1) @ np.abs(u) + np.abs(b1))[None, :]).sum(1) + np.abs(b2) + abs(b2[k])
    slack = 1e-10 * (mag + 1.0)
    c0 = b2 - b2[k]
    lo = c0 + np.minimum(c, 0).sum(1) - slack
    hi = c0 + np.maximum(c, 0).sum(1) + slack
    num = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    den = np.abs(v) @ dual_norm(w1, norm)
    if norm == "l2":
        den = np.minimum(den, np.linalg.norm(v, axis=1) * chain[0].spectral)
    r = safe_ratio(num, den * (1 + 1e-9))
    r[k] = math.inf
    j = int(np.argmin(r))
    return BoundaryResult(float(r[j]) if math.isfinite(r[j]) else math.inf, j,
                          int(np.sum(num[np.arange(len(num)) != k] == 0)))


def spectral_norm_dense(w: np.ndarray) -> float:
    """An upper bound of ||w||_2: LAPACK's largest singular value (backward stable, so within a
    few ulps times the dimension of the exact one) raised by a relative 1e-9."""
    return float(np.linalg.norm(w, 2)) * (1 + 1e-9) if w.size else 0.0

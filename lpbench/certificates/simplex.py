"""The simplex certificate of Singla & Feizi 2019 (Theorem 3), for l_2 and, by dual norms,
l_inf and l_1.

With the activation region ``S = {P x' + q >= 0}`` and local map ``C x' + d`` at u (predicted
class k; :mod:`lpbench.certificates.region`):

* ``P_min = min_i (P_i u + q_i) / ||P_i||_q`` -- the radius of the largest l_p ball around u
  inside S (distance to the nearest ReLU hyperplane);
* ``d_min = min_{j != k} (f_k - f_j)(u) / ||C_k - C_j||_q`` -- distance to the nearest local
  decision hyperplane;
* every adversarial point is at least ``min(d_min, P_min)`` away from u (q the dual exponent).

When ``d_min <= P_min`` the bound is EXACT: the l_p-projection of u onto the nearest decision
hyperplane lies in the ball of radius P_min, hence in S, and f has a tie there
(:attr:`SimplexResult.boundary_point`).

``region_distance`` solves the convex program inside the region (an LP for l_inf / l_1 through
the LP backends, certified from the duals; for l_2 a QP whose dual is maximised by coordinate
ascent, certified by weak duality from whatever dual point it reaches). Note: the "tighter
variant" min(P_min, min_j region_distance_j) equals ``min(d_min, P_min)`` (when d_min <= P_min
the projection lies inside S; otherwise both equal P_min); the test-suite checks this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lpbench.certificates.chain import check_norm, dual_norm, safe_ratio
from lpbench.certificates.region import Region, activation_region
from lpbench.network import Network
from lpbench.solvers import LinearProgram, get_backend

NORMS = ("l2", "linf", "l1")
#: Relative allowance (to the absolute-value computation) for float64 rounding.
REL_SLACK = 1e-10


@dataclass(frozen=True, eq=False)
class SimplexResult:
    """``radius = min(d_min, p_min)``; ``binding``: "d_min" or "p_min"; ``exact``: radius is the
    minimum adversarial distance (d_min <= p_min); ``target``: the class of d_min; ``face``:
    index of the nearest face in region.P; ``boundary_point``: the projection of u onto the
    target's local decision hyperplane (a point where f_k = f_target when exact)."""

    radius: float
    d_min: float
    p_min: float
    binding: str
    exact: bool
    target: int
    face: int
    boundary_point: np.ndarray
    region: Region


def simplex_certificate(net: Network, x: np.ndarray, norm: str = "l2") -> SimplexResult:
    """Theorem 3 of Singla & Feizi 2019 at ``x`` for its predicted class."""
    check_norm("simplex", norm, NORMS)
    reg = activation_region(net, x, "simplex")
    u = np.asarray(x, np.float64).ravel()
    f = reg.C @ u + reg.d
    k = int(np.argmax(f))
    grad = reg.C[k][None, :] - reg.C  # row j: gradient of f_k - f_j
    marg = f[k] - f
    f_err, p_err = reg.value_error(u)
    g_err = 1e-10 * (reg.C_mag[k][None, :] + reg.C_mag)  # rounding allowance of the gradients
    dist = safe_ratio(marg - f_err[k] - f_err, dual_norm(grad, norm) + dual_norm(g_err, norm))
    dist[k] = math.inf
    target = int(np.argmin(dist))
    d_min = float(dist[target])
    if reg.P.shape[0]:
        face_val = reg.P @ u + reg.q
        faces = safe_ratio(face_val - p_err, dual_norm(reg.P, norm) + dual_norm(1e-10 * reg.P_mag, norm))
        face = int(np.argmin(faces))
        p_min = float(faces[face])
    else:
        face, p_min = -1, math.inf
    exact = d_min <= p_min
    point = _project(u, grad[target], marg[target], norm) if math.isfinite(d_min) else u.copy()
    return SimplexResult(min(d_min, p_min), d_min, p_min, "d_min" if exact else "p_min", exact, target,
                         face, point.reshape(np.shape(x)), reg)


def _project(u: np.ndarray, a: np.ndarray, g: float, norm: str) -> np.ndarray:
    """The l_p-closest point to u on the hyperplane ``a.(x - u) = -g`` (where f_k - f_j = 0)."""
    if norm == "l2":
        return u - g * a / (a @ a)
    if norm == "linf":
        return u - g * np.sign(a) / np.abs(a).sum()
    i = int(np.argmax(np.abs(a)))
    out = u.copy()
    out[i] -= g / a[i]
    return out


def region_distance(reg: Region, x: np.ndarray, target: int, norm: str, cap: float = 10.0,
                    backend: str = "highs") -> float:
    """A certified lower bound of ``min ||x' - x||_p`` over ``x' in S`` with ``f_target >= f_k``
    (k the class of x) under the local map, capped at ``cap`` (``cap`` when no such x' lies within
    ``cap``). l_inf / l_1: an LP solved by ``backend``, certified from its duals; l_2: the QP's
    dual by coordinate ascent, certified by weak duality."""
    check_norm("simplex region distance", norm, NORMS)
    u = np.asarray(x, np.float64).ravel()
    f = reg.C @ u + reg.d
    k = int(np.argmax(f))
    # rows A x' >= c: the faces, and (C_t - C_k) x' >= d_k - d_t
    A = np.vstack([reg.P, (reg.C[target] - reg.C[k])[None]])
    c = np.concatenate([-reg.q, [reg.d[k] - reg.d[target]]])
    if norm == "l2":
        return min(cap, _l2_dual(A, c, u, cap))
    return min(cap, _lp(A, c, u, norm, cap, backend))


def _lp(A, c, u, norm, cap, backend) -> float:
    m, n = A.shape
    if norm == "linf":  # vars (x, t): min t, -t <= x - u <= t
        eye = sp.identity(n, format="csr")
        one = sp.csr_matrix(np.ones((n, 1)))
        a = sp.vstack([sp.hstack([sp.csr_matrix(A), sp.csr_matrix((m, 1))]),
                       sp.hstack([eye, -one]), sp.hstack([eye, one])]).tocsr()
        lo = np.concatenate([c, np.full(n, -np.inf), u])
        hi = np.concatenate([np.full(m, np.inf), u, np.full(n, np.inf)])
        var_lo, var_hi = np.append(u - cap, 0.0), np.append(u + cap, cap)
        obj = np.append(np.zeros(n), 1.0)
    else:  # l1, vars (x, s): min sum s, -s <= x - u <= s
        eye = sp.identity(n, format="csr")
        a = sp.vstack([sp.hstack([sp.csr_matrix(A), sp.csr_matrix((m, n))]),
                       sp.hstack([eye, -eye]), sp.hstack([eye, eye])]).tocsr()
        lo = np.concatenate([c, np.full(n, -np.inf), u])
        hi = np.concatenate([np.full(m, np.inf), u, np.full(n, np.inf)])
        var_lo, var_hi = np.concatenate([u - cap, np.zeros(n)]), np.concatenate([u + cap, np.full(n, cap)])
        obj = np.concatenate([np.zeros(n), np.ones(n)])
    lp = LinearProgram(a, lo, hi, var_lo, var_hi)
    with get_backend(backend).open(lp) as session:
        res = session.minimize(obj)
    if res.status.value == "infeasible":
        return cap  # nothing within cap (the variable bounds restrict x' to the cap-ball)
    return max(0.0, res.certified_bound) if math.isfinite(res.certified_bound) else 0.0


def _l2_dual(A, c, u, cap, sweeps: int = 500) -> float:
    """max over lam >= 0 of lam.(c - A u) / ||A^T lam||_2 (weak duality: a lower bound of the
    distance for every lam >= 0), lam from coordinate ascent on lam.r - ||A^T lam||^2 / 2."""
    r = c - A @ u
    norms2 = np.einsum("ij,ij->i", A, A)
    if np.any((norms2 == 0) & (r > 0)):
        return cap  # a row 0 >= positive: no such point at all
    lam = np.zeros(len(r))
    w = np.zeros(A.shape[1])
    best = 0.0
    slack_scale = np.abs(A) @ np.abs(u) + np.abs(c) + 1.0
    for _ in range(sweeps):
        moved = 0.0
        for i in np.flatnonzero(norms2 > 0):
            new = max(0.0, lam[i] + (r[i] - A[i] @ w) / norms2[i])
            if new != lam[i]:
                w += (new - lam[i]) * A[i]
                moved = max(moved, abs(new - lam[i]) * math.sqrt(norms2[i]))
                lam[i] = new
        num = lam @ r - REL_SLACK * (lam @ slack_scale)
        nw = float(np.sqrt(w @ w))
        if num > 0:
            best = max(best, cap if nw == 0 else float(safe_ratio(num, nw * (1 + 1e-12))))
        if best >= cap or moved <= 1e-13 * (1.0 + nw):
            break
    return best

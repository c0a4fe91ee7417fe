"""BCP, Box Constraint Propagation (Lee et al. 2020; Lee 2021, Section 3.2 and Appendix B).

Two outer bounds of every hidden layer travel together: a ball ``B2(a_k(x), rho_k)`` with
``rho_k = ||W_k||_2 rho_{k-1}`` (ReLU is 1-Lipschitz) and a box. At each affine layer the box of
the pre-activations is the INTERSECTION of the box circumscribing the ball's image
(``z_i(x) +- ||W_k,i||_2 rho_{k-1}``, eq. 3.2.6) and the interval-arithmetic box (eq. 3.2.7).
The thesis's eq. 3.2.8 writes the hull (max of the upper ends, min of the lower ends) while
calling it an intersection; both boxes contain the reachable set, so the intersection is sound
and never wider -- that is what is implemented (and tested).

The last layer needs the worst margin over ``B2(a_{K-1}(x), rho) ∩ box``:
``min c.zeta`` with ``c = W^K_y - W^K_m``. Instead of the thesis's iterative primal solver
(eq. 3.2.11, kept in :func:`ball_box_primal` for comparison), the bound is the Lagrangian dual
``max_{mu >= 0} sum_i min_{zeta_i in box} [c_i zeta_i + mu/2 (zeta_i - z_i)^2] - mu rho^2 / 2``,
a lower bound for EVERY mu (weak duality), maximised by bisection on mu (strong duality holds).

Threat models: l_2 (the paper's); l_1 through ``B1(x, eps) ⊂ B2(x, eps)``; l_inf through
``B_inf(x, eps) ⊂ B2(x, sqrt(D) eps)`` (Appendix B's l_p extension). The input box is the eps box
intersected with the valid-input box.
"""

from __future__ import annotations

import math

import numpy as np

from lpbench.certificates.chain import Affine, check_norm

NORMS = ("l2", "linf", "l1")
_SLACK = 1e-11


def bcp_margins(chain: list[Affine], x: np.ndarray, label: int, eps: float, norm: str,
                box=(0.0, 1.0), combine: str = "intersection") -> np.ndarray:
    """(K,) lower bounds of ``f_label - f_t`` over the eps-ball (NaN at the label)."""
    check_norm("bcp", norm, NORMS)
    u = np.asarray(x, np.float64).ravel()
    rho = eps * (math.sqrt(u.size) if norm == "linf" else 1.0)
    lo, hi = u - eps, u + eps
    if box is not None:
        lo, hi = np.maximum(lo, box[0]), np.minimum(hi, box[1])
    a = u
    delta = 0.0  # a bound on the distance of the computed ball centre from the exact one
    for layer in chain[:-1]:
        w, b = layer.weight, layer.bias
        z = w @ a + b
        r_ball = layer.row_norms * (rho + delta) * (1 + 1e-9)
        z_err = _SLACK * (np.abs(w) @ np.abs(a) + np.abs(b) + 1.0)
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        m_ibp, r_ibp = w @ mid + b, np.abs(w) @ rad
        err = _SLACK * (np.abs(w) @ np.maximum(np.abs(lo), np.abs(hi)) + np.abs(b) + 1.0)
        b_lo, b_hi = z - r_ball - z_err, z + r_ball + z_err
        i_lo, i_hi = m_ibp - r_ibp - err, m_ibp + r_ibp + err
        if combine == "intersection":
            zl, zh = np.maximum(b_lo, i_lo), np.minimum(b_hi, i_hi)
        elif combine == "hull":
            zl, zh = np.minimum(b_lo, i_lo), np.maximum(b_hi, i_hi)
        else:
            raise ValueError(f"combine must be 'intersection' or 'hull', got {combine!r}")
        lo, hi = np.maximum(zl, 0.0), np.maximum(zh, 0.0)
        a = np.maximum(z, 0.0)
        delta = layer.spectral * delta + float(np.linalg.norm(z_err)) * (1 + 1e-9)
        rho = layer.spectral * rho
    w, b = chain[-1].weight, chain[-1].bias
    c = w[label][None, :] - w
    out = ball_box_min(c, a, rho + delta, lo, hi) + (b[label] - b)
    out[label] = np.nan
    return out


def ball_box_min(c: np.ndarray, z: np.ndarray, rho: float, lo: np.ndarray, hi: np.ndarray,
                 iters: int = 200) -> np.ndarray:
    """(T,) certified lower bounds of ``min c_t . zeta`` over ``||zeta - z||_2 <= rho, lo <= zeta <= hi``
    (rows c_t of c), from the dual function at the best mu found by bisection and at mu = 0."""
    t = c.shape[0]

    def g(mu):  # (T,) dual function values, each a lower bound
        with np.errstate(divide="ignore", invalid="ignore"):
            zeta = np.where(mu[:, None] > 0, np.clip(z[None, :] - c / mu[:, None], lo, hi),
                            np.where(c > 0, lo, hi))
        terms = c * zeta + mu[:, None] / 2 * (zeta - z[None, :]) ** 2
        val = terms.sum(1) - mu * rho * rho / 2
        mag = np.abs(terms).sum(1) + mu * rho * rho / 2 + 1.0
        return val - 1e-10 * mag, np.sqrt(((zeta - z[None, :]) ** 2).sum(1))

    best, dist0 = g(np.zeros(t))
    need = dist0 > rho  # the box's minimiser lies outside the ball: mu* > 0
    mu_lo = np.full(t, 1e-12)
    mu_hi = np.maximum(np.abs(c).max(1), 1e-300) / max(rho, 1e-300) * 1e3 + 1.0
    for _ in range(iters):
        mid = np.sqrt(mu_lo * mu_hi)
        _, dist = g(mid)
        outside = dist > rho
        mu_lo = np.where(outside, mid, mu_lo)
        mu_hi = np.where(outside, mu_hi, mid)
    for mu in (mu_lo, mu_hi):
        val, _ = g(mu)
        best = np.where(need, np.maximum(best, val), best)
    return best


def ball_box_primal(c: np.ndarray, z: np.ndarray, rho: float, lo: np.ndarray, hi: np.ndarray,
                    max_iter: int = 1000) -> np.ndarray:
    """The thesis's iterative solver (eq. 3.2.11) for one row c: a FEASIBLE point (so c.p is an
    upper bound of the minimum). Start at ``z - rho c/||c||``; clamp the coordinates outside the
    box and rescale the others about z so the point stays on the sphere; repeat."""
    nc = np.linalg.norm(c)
    if nc == 0:
        return np.clip(z, lo, hi)
    p = z - rho * c / nc
    fixed = np.zeros(z.size, bool)
    for _ in range(max_iter):
        out = (p < lo) | (p > hi)
        if not out.any():
            break
        fixed |= out
        p[fixed] = np.clip(p[fixed], lo[fixed], hi[fixed])
        left = rho * rho - ((p[fixed] - z[fixed]) ** 2).sum()
        free = ~fixed
        dz = p[free] - z[free]
        nd = np.linalg.norm(dz)
        if left <= 0 or nd == 0:
            p[free] = z[free]
            break
        p[free] = z[free] + dz * math.sqrt(left) / nd
    return np.clip(p, lo, hi)

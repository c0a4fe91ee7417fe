"""Certified LP lower bounds from any row-dual vector (weak duality, evaluated safely).

For ``min c.v + c0 s.t. row_lo <= A v <= row_hi, var_lo <= v <= var_hi`` and ANY vector y,

    g(y) = c0 + sum_i (y_i > 0 ? y_i row_lo_i : y_i row_hi_i)
              + sum_j min(r_j var_lo_j, r_j var_hi_j),        r = c - A^T y,

is a lower bound of the LP optimum: for every feasible v, ``c.v = y.(A v) + r.v`` and each of the
two sums bounds its part from below. Rows whose needed side is infinite get y_i = 0 (that term
would be -inf); the finite variable bounds absorb any dual infeasibility of y, so the solver's
duals need no cleaning. This is how every LP value in lpbench becomes a certified bound
(Salman et al. 2019 solve the LPs of Section 5.1 with a floating-point solver; a bound used for
"verified" must not rest on the solver's tolerances).

The sums are evaluated in float64 and the result is lowered by an allowance that covers their
rounding error: by Higham's bound for recursive summation, each computed sum of K terms is within
gamma_K = K u / (1 - K u) of the exact one relative to the sum of magnitudes (u = 2^-53); the
allowance takes twice that over every term (including the rounding of r, whose effect is at most
|delta r_j| * max(|var_lo_j|, |var_hi_j|)) plus 1e-12 absolute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lpbench.solvers.base import LinearProgram

_U = 2.0 ** -53


class Certifier:
    """Precomputed data of one LP for fast repeated certification (one per LP, any objective)."""

    def __init__(self, lp: "LinearProgram") -> None:
        self.lp = lp
        self.a_t = lp.a.T.tocsr()
        self.reach = np.maximum(np.abs(lp.var_lo), np.abs(lp.var_hi))
        self.row_reach = abs(lp.a) @ self.reach  # (|A| reach)_i, so (|A|^T |y|).reach = |y|.row_reach
        self.lo_ok, self.hi_ok = np.isfinite(lp.row_lo), np.isfinite(lp.row_hi)
        self.row_lo = np.where(self.lo_ok, lp.row_lo, 0.0)
        self.row_hi = np.where(self.hi_ok, lp.row_hi, 0.0)
        per_col = int(np.diff(self.a_t.indptr).max()) if self.a_t.nnz else 0
        k = lp.n_rows + lp.n_vars + per_col + 4
        self.rel = 2.0 * k * _U / (1.0 - k * _U)

    def bound(self, c: np.ndarray, c0: float, y: np.ndarray) -> float:
        """A rigorous lower bound of ``min c.v + c0`` over the LP from row duals ``y``."""
        lp = self.lp
        y = np.asarray(y, np.float64)
        y = np.where(np.isfinite(y) & ((y > 0) & self.lo_ok | (y < 0) & self.hi_ok), y, 0.0)
        row_terms = y * np.where(y > 0, self.row_lo, self.row_hi)
        c = np.asarray(c, np.float64)
        r = c - self.a_t @ y
        col_terms = np.where(r != 0, r * np.where(r > 0, lp.var_lo, lp.var_hi), 0.0)
        total = float(c0) + row_terms.sum() + col_terms.sum()
        if not np.isfinite(total):
            return -np.inf
        mag = (abs(float(c0)) + np.abs(row_terms).sum() + np.abs(col_terms).sum()
               + np.abs(c) @ self.reach + np.abs(y) @ self.row_reach)
        return float(total - (self.rel * mag + 1e-12))


def certified_bound(lp: "LinearProgram", c: np.ndarray, c0: float, y: np.ndarray) -> float:
    """A rigorous lower bound of the LP minimum ``min c.v + c0`` from row duals ``y`` (any real
    vector); for many objectives on one LP build a :class:`Certifier` once."""
    return Certifier(lp).bound(c, c0, y)

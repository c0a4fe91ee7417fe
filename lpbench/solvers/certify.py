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
allowance takes twice that over every term (including the rounding of r, whose effect is
|delta r_j| * max(|var_lo_j|, |var_hi_j|)) plus 1e-12 absolute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from lpbench.solvers.base import LinearProgram

_U = 2.0 ** -53


def certified_bound(lp: LinearProgram, c: np.ndarray, c0: float, y: np.ndarray,
                    a_t: sp.csr_matrix | None = None, abs_a_t: sp.csr_matrix | None = None) -> float:
    """A rigorous lower bound of the LP minimum from row duals ``y`` (any real vector).

    ``a_t`` / ``abs_a_t`` are optional cached ``A^T`` and ``|A|^T`` (CSR) for repeated calls."""
    y = np.where(np.isfinite(y), np.asarray(y, np.float64), 0.0)
    y = np.where(((y > 0) & ~np.isfinite(lp.row_lo)) | ((y < 0) & ~np.isfinite(lp.row_hi)), 0.0, y)
    a_t = lp.a.T.tocsr() if a_t is None else a_t
    abs_a_t = abs(a_t) if abs_a_t is None else abs_a_t
    side = np.where(y > 0, lp.row_lo, np.where(y < 0, lp.row_hi, 0.0))
    row_terms = np.where(y != 0, y * np.where(np.isfinite(side), side, 0.0), 0.0)
    c = np.asarray(c, np.float64)
    r = c - a_t @ y
    col_terms = np.where(r > 0, r * lp.var_lo, np.where(r < 0, r * lp.var_hi, 0.0))
    total = float(c0) + float(row_terms.sum()) + float(col_terms.sum())
    if not np.isfinite(total):
        return -np.inf
    reach = np.maximum(np.abs(lp.var_lo), np.abs(lp.var_hi))
    mag = (abs(float(c0)) + float(np.abs(row_terms).sum()) + float(np.abs(col_terms).sum())
           + float(((np.abs(c) + abs_a_t @ np.abs(y)) * reach).sum()))
    per_col = int(np.diff(a_t.indptr).max()) if a_t.shape[0] and a_t.nnz else 0
    k = lp.n_rows + lp.n_vars + per_col + 4
    return total - (2.0 * k * _U / (1.0 - k * _U) * mag + 1e-12)

"""The joint MILP of several targets of one sample (``targets="joint"`` of
:func:`lpbench.milp.verify.verify_sample`): one MILP whose optimum is the smallest margin over the
targets the LP relaxation leaves open, from each target's sound bounds of its margin."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from lpbench.milp.formulation import MILP
from lpbench.solvers.base import LinearProgram, LPStatus


def margin_box(session, model: MILP, label: int, open_: list[tuple[int, float]]
                ) -> list[tuple[int, float, float]] | None:
    """(target, certified lower, certified upper bound) of each open margin over the LP
    relaxation, or None if an LP did not give one (the joint MILP then is not built)."""
    box = []
    for j, lo in open_:
        c, c0 = model.margin(label, j)
        up = session.minimize(-c, -c0)
        if not (math.isfinite(lo) and up.status is LPStatus.OPTIMAL and math.isfinite(up.certified_bound)):
            return None
        box.append((j, lo, -up.certified_bound))
    return box


def joint_milp(model: MILP, label: int, box: list[tuple[int, float, float]]) -> tuple[LinearProgram, np.ndarray]:
    """One MILP for several targets: ``min t`` with a binary ``s_j`` per target, ``sum s = 1``
    and ``t >= m_j(v) - M_j (1 - s_j)``, ``M_j = U_j - L`` (``box`` holds each target's sound
    lower and upper bound of its margin m_j; ``L`` the smallest lower bound, ``t >= L``): for
    s_j = 1 the other rows are slack, so the optimum is min_j min_v m_j(v) exactly. Returns the
    program and its objective (the column of t, the last one)."""
    lp, k = model.rel.lp, len(box)
    n = lp.n_vars
    floor = min(lo for _, lo, _ in box)
    floor -= 1e-6 * (1.0 + abs(floor))  # rows stay valid whatever the rounding of the bounds
    cs = [model.margin(label, j) for j, _, _ in box]
    big = np.array([up - floor + 1e-6 * (1.0 + abs(up)) for _, _, up in box])
    # rows: t - c_j.v - M_j s_j >= c0_j - M_j ; sum_j s_j = 1
    c_rows = sp.csr_matrix(np.vstack([c for c, _ in cs]))
    a = sp.vstack([sp.hstack([lp.a, sp.csr_matrix((lp.n_rows, k + 1))]),
                   sp.hstack([-c_rows, sp.diags(-big), sp.csr_matrix(np.ones((k, 1)))]),
                   sp.hstack([sp.csr_matrix((1, n)), sp.csr_matrix(np.ones((1, k))), sp.csr_matrix((1, 1))])]).tocsr()
    c0s = np.array([c0 for _, c0 in cs])
    full = LinearProgram(a, np.concatenate([lp.row_lo, c0s - big, [1.0]]),
                         np.concatenate([lp.row_hi, np.full(k, np.inf), [1.0]]),
                         np.concatenate([lp.var_lo, np.zeros(k), [floor]]),
                         np.concatenate([lp.var_hi, np.ones(k), [max(up for _, _, up in box) + 1e-6]]),
                         np.concatenate([lp.integrality, np.ones(k, bool), [False]]))
    obj = np.zeros(n + k + 1)
    obj[-1] = 1.0
    return full, obj

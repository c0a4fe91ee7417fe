"""Minimum adversarial distortion under l_inf: the "closest adversarial example" MILP of Tjeng,
Xiao & Tedrake 2019 (Section 4.2): ``min eps`` subject to a point within ``eps`` of x (and in the
box) on which some class j scores at least the label.

The encoding is the exact MILP of :mod:`lpbench.milp.formulation` built for the ball of radius
``eps_max`` (the search radius; its bounds fix the big-M constants), plus a variable ``eps`` in
``[0, eps_max]`` with ``|v - x| <= eps`` and, per target j, the row ``f_y - f_j <= 0``. The
result is a bracket: ``lower`` is the smallest safe dual bound over the targets (the solver's
proved bound less :func:`lpbench.milp.verify.tolerance`), so every point closer than ``lower``
is classified correctly; ``upper`` the l_inf distance of a point re-checked in float64 to be
misclassified (the incumbent, or the incumbent pushed a hair further from x where it sits on the
decision boundary, or the optimum of the MILP asking for a margin of -PUSH). A target whose MILP
the solver calls infeasible is not taken on the solver's word: the target's margin MILP over the
``eps_max`` ball (:func:`lpbench.milp.verify.verify_sample`'s safe dual bound) must prove that
margin positive before ``eps_max`` bounds it from below; otherwise that target bounds nothing (0)
and the result is not exact. The per-target time limit counts CPU seconds by default, as in
:func:`lpbench.milp.verify.verify_sample`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lpbench.milp.formulation import DEFAULT_TIGHTENING, milp, tightened_bounds
from lpbench.milp.verify import CLOCKS, tolerance
from lpbench.network import Network
from lpbench.problem import Perturbation
from lpbench.solvers.base import Backend, LinearProgram, MILPStatus


#: The margin asked for when the optimal point of ``f_y - f_j <= 0`` sits exactly on the decision
#: boundary and does not re-check as misclassified: the upper bound then comes from ``<= -PUSH``.
PUSH = 1e-6


@dataclass(frozen=True, eq=False)
class Distortion:
    """``lower <= minimum l_inf distortion <= upper`` (``upper`` inf when no re-checked point was
    found within eps_max); ``point`` the re-checked adversarial point; ``exact`` when every target
    was solved to optimality."""

    lower: float
    upper: float
    point: np.ndarray | None
    exact: bool
    eps_max: float

    @property
    def note(self) -> str:
        """Why ``upper`` is inf: nothing adversarial within eps_max (exact), or a time limit."""
        if math.isfinite(self.upper):
            return ""
        return f"no adversarial point within {self.eps_max:g}" if self.exact else \
            "a target MILP stopped at the time limit: none found, the bracket is [lower, inf]"


def min_distortion(net: Network, x: np.ndarray, label: int, backend: Backend, eps_max: float = 0.5,
                   time_limit: float = 60.0, tightening: str = DEFAULT_TIGHTENING,
                   lp_backend: Backend | None = None, clock: str = "cpu") -> Distortion:
    """The minimum l_inf distortion of a correctly classified ``x`` (inputs in [0, 1]);
    ``time_limit`` per target MILP, in the ``clock``'s seconds (see :data:`lpbench.milp.verify.CLOCKS`)."""
    if not (eps_max > 0 and math.isfinite(eps_max)):
        raise ValueError(f"eps_max must be a positive number, got {eps_max!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {tuple(CLOCKS)}, got {clock!r}")
    cpu = clock == "cpu"
    x64 = np.asarray(x, np.float64)
    pset = Perturbation(float(eps_max))
    pre, _ = tightened_bounds(net, x64, label, pset, tightening, lp_backend or backend)
    model = milp(net, x64, pset, pre, tightening)
    lp, inp = model.rel.lp, model.rel.block(-1, "input")
    n, k, e = lp.n_vars, inp.stop - inp.start, lp.n_vars  # e: the column of eps
    ar = np.arange(k)
    # v - eps <= x and v + eps >= x on the input block
    ball = sp.csr_matrix((np.concatenate([np.ones(k), -np.ones(k), np.ones(k), np.ones(k)]),
                          (np.concatenate([ar, ar, k + ar, k + ar]),
                           np.concatenate([inp.start + ar, np.full(k, e), inp.start + ar, np.full(k, e)]))),
                         shape=(2 * k, n + 1))
    flat = x64.ravel()
    lower, upper, point, exact = math.inf, math.inf, None, True
    for j in range(net.n_classes):
        if j == label:
            continue
        c, c0 = model.margin(label, j)
        row = sp.csr_matrix(np.append(c, 0.0)[None])
        a = sp.vstack([sp.hstack([lp.a, sp.csr_matrix((lp.n_rows, 1))]), ball, row]).tocsr()
        obj = np.zeros(n + 1)
        obj[e] = 1.0

        def solve(slack: float):
            full = LinearProgram(a, np.concatenate([lp.row_lo, np.full(k, -np.inf), flat, [-np.inf]]),
                                 np.concatenate([lp.row_hi, flat, np.full(k, np.inf), [-c0 - slack]]),
                                 np.append(lp.var_lo, 0.0), np.append(lp.var_hi, eps_max),
                                 np.append(lp.integrality, False))
            return full, backend.solve_milp(full, obj, 0.0, time_limit, cpu_time=cpu)
        full, res = solve(0.0)
        if res.status is MILPStatus.INFEASIBLE:  # j never beats the label within eps_max, if proved
            tol = tolerance(lp, c, c0)
            proof = backend.solve_milp(lp, c, c0, time_limit, stop_above=tol, stop_below=-tol, cpu_time=cpu)
            if not (proof.status in (MILPStatus.OPTIMAL, MILPStatus.STOPPED) and proof.dual_bound - tol > 0):
                lower, exact = 0.0, False
            continue
        exact &= res.status is MILPStatus.OPTIMAL
        lower = min(lower, max(0.0, res.dual_bound - tolerance(full, obj, 0.0)))
        cand = None if res.primal is None else _recheck(net, res.primal[inp.slice], flat, label)
        if cand is None and res.primal is not None:  # on the boundary: ask for a margin of -PUSH
            _, res = solve(PUSH)
            cand = None if res.primal is None else _recheck(net, res.primal[inp.slice], flat, label)
        if cand is not None and float(np.abs(cand - flat).max()) < upper:
            point, upper = cand, float(np.abs(cand - flat).max())
    lower = min(lower, eps_max)
    return Distortion(lower, upper, None if point is None else point.reshape(x64.shape), exact, float(eps_max))


def _recheck(net: Network, v: np.ndarray, x: np.ndarray, label: int) -> np.ndarray | None:
    """``v`` (or ``v`` moved slightly further from x) if it lies in [0, 1] and the float64 forward
    pass scores some class strictly above ``label``; else None."""
    for push in (0.0, 1e-9, 1e-7, 1e-5, 1e-3):
        cand = np.clip(x + (v - x) * (1.0 + push), 0.0, 1.0)
        logits = net.logits64(cand.reshape((1,) + tuple(net.input_shape)))[0]
        if np.delete(logits, label).max() > logits[label]:
            return cand
    return None

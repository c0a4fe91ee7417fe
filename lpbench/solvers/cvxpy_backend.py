"""The cvxpy backend: a readable reference formulation of the same LP (the per-neuron LPs of
Salman et al. 2019, Section 5.1).

Every solve writes the problem out afresh, row by row as it reads in Salman et al. 2019 (C):
equality rows, ``>=`` rows, ``<=`` rows and the variable box, then hands it to a conic solver
(Clarabel by default, an interior-point method independent of HiGHS's simplex). Rebuilding the
problem for every objective is also the per-neuron approach of the paper's released code, which
``lpbench bench lp`` uses as the baseline.
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from lpbench.solvers.base import Backend, LinearProgram, LPStatus, RawSolution, Session

_STATUS = {"optimal": LPStatus.OPTIMAL, "infeasible": LPStatus.INFEASIBLE,
           "infeasible_inaccurate": LPStatus.INFEASIBLE, "user_limit": LPStatus.TIME_LIMIT}
_TIMED = ("CLARABEL", "HIGHS")  # cvxpy solvers that take a ``time_limit`` keyword


@dataclass(frozen=True)
class CvxpyBackend(Backend):
    """``solver``: the cvxpy solver name (any LP solver cvxpy knows; default Clarabel)."""

    solver: str = "CLARABEL"
    name = "cvxpy"
    supports_integer = False
    module = "cvxpy"

    def _session(self, time_limit: float | None) -> Session:
        return _CvxpySession(time_limit, self.solver)


class _CvxpySession(Session):
    def __init__(self, time_limit: float | None, solver: str) -> None:
        super().__init__(time_limit)
        self._cp = importlib.import_module("cvxpy")
        self._solver = solver

    def _load(self, lp: LinearProgram, old: LinearProgram | None) -> None:
        lo, hi = lp.row_lo, lp.row_hi
        self._eq = np.flatnonzero(lo == hi)
        self._ge = np.flatnonzero(np.isfinite(lo) & (lo != hi))
        self._le = np.flatnonzero(np.isfinite(hi) & (lo != hi))

    def _solve(self, c: np.ndarray) -> RawSolution:
        cp, lp = self._cp, self.lp
        v = cp.Variable(lp.n_vars)
        eq = lp.a[self._eq] @ v == lp.row_lo[self._eq]
        ge = lp.a[self._ge] @ v >= lp.row_lo[self._ge]
        le = lp.a[self._le] @ v <= lp.row_hi[self._le]
        rows = [con for con, idx in ((eq, self._eq), (ge, self._ge), (le, self._le)) if idx.size]
        problem = cp.Problem(cp.Minimize(c @ v), rows + [v >= lp.var_lo, v <= lp.var_hi])
        timed = self.time_limit is not None and self._solver in _TIMED
        kwargs = {"time_limit": self.time_limit} if timed else {}
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():  # "inaccurate" warnings: the status says it
                warnings.simplefilter("ignore")
                problem.solve(solver=self._solver, **kwargs)
        except cp.error.SolverError:
            late = self.time_limit is not None and time.perf_counter() - t0 >= self.time_limit
            return RawSolution(LPStatus.TIME_LIMIT if late else LPStatus.ERROR)
        status = _STATUS.get(problem.status, LPStatus.ERROR)
        if status is not LPStatus.OPTIMAL or v.value is None:
            return RawSolution(status if status is not LPStatus.OPTIMAL else LPStatus.ERROR)
        y = np.zeros(lp.n_rows)
        for con, idx, sign in ((eq, self._eq, -1.0), (ge, self._ge, 1.0), (le, self._le, -1.0)):
            if idx.size:  # cvxpy's duals: >= 0 for inequalities; equality y = -dual
                y[idx] += sign * np.asarray(con.dual_value, np.float64).ravel()
        value = float(problem.value)
        return RawSolution(status, value if math.isfinite(value) else math.nan, np.asarray(v.value), y)

"""The PuLP backend: the LPs of Salman et al. 2019, Section 5.1, solved by COIN-OR CBC (its
simplex code, Clp), a third independent solver for cross-checks.

PuLP writes the model to an MPS file (13 significant digits) and runs the CBC binary once per
solve; the duals it reads back are checked against the original float64 data by
:mod:`lpbench.solvers.certify`, so the file's rounding cannot make a bound unsound.
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from lpbench.solvers.base import (Backend, LinearProgram, LPStatus, MILPResult, MILPStatus, RawSolution,
                                  Session, child_cpu)


@dataclass(frozen=True)
class PulpBackend(Backend):
    name = "pulp"
    supports_integer = True
    module = "pulp"

    def available(self) -> bool:
        try:
            pulp = importlib.import_module("pulp")
        except ImportError:
            return False
        return _cbc(pulp) is not None

    def _session(self, time_limit: float | None) -> Session:
        return _PulpSession(time_limit)

    def _solve_milp(self, lp: LinearProgram, c: np.ndarray, c0: float, time_limit: float | None,
                    stop_above: float | None, stop_below: float | None, cpu_time: bool = False) -> MILPResult:
        """CBC's branch and cut (one thread, gaps 0). PuLP reports no dual bound: an optimal end
        gives the incumbent's value as the bound (CBC proved it up to its gap of 0), any other end
        -inf. No early stop (PuLP has no callback); the solve runs to optimality or the limit.
        CBC's limit counts its own CPU seconds (its default ``timeMode``); ``cpu_time`` only
        decides which clock tells a limit's end from a failure here."""
        pulp = importlib.import_module("pulp")
        session = _PulpSession(time_limit)
        session._load(lp, None)
        for j in np.flatnonzero(lp.integrality if lp.integrality is not None else np.zeros(0)):
            session._vars[j].cat = pulp.LpInteger
        nz = np.flatnonzero(c)
        session._prob.setObjective(pulp.LpAffineExpression([(session._vars[j], float(c[j])) for j in nz]))
        solver = _cbc(pulp, mip=True, msg=False, timeLimit=time_limit, gapRel=0.0, gapAbs=0.0, threads=1)
        t0, c0_cpu = time.perf_counter(), child_cpu()
        try:
            session._prob.solve(solver)
        except pulp.PulpSolverError as e:
            return MILPResult(MILPStatus.ERROR, message=str(e))
        spent = child_cpu() - c0_cpu if cpu_time else time.perf_counter() - t0
        late = time_limit is not None and spent >= 0.9 * time_limit
        prob = session._prob
        # a variable in no row and not in the objective is not written out: any value in its box
        free = np.clip(0.0, lp.var_lo, lp.var_hi)
        primal = np.array([v.varValue if v.varValue is not None else free[j]
                           for j, v in enumerate(session._vars)], np.float64)
        has_point = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) \
            and np.isfinite(primal).all()
        value = float(c @ primal) + c0 if has_point else math.nan
        message = pulp.LpStatus.get(prob.status, str(prob.status))
        if prob.status == pulp.LpStatusInfeasible:
            return MILPResult(MILPStatus.INFEASIBLE, message=message)
        if prob.status == pulp.LpStatusOptimal and prob.sol_status == pulp.LpSolutionOptimal:
            return MILPResult(MILPStatus.OPTIMAL, value, value, primal, message=message)
        status = MILPStatus.TIME_LIMIT if late or prob.sol_status == pulp.LpSolutionIntegerFeasible \
            else MILPStatus.ERROR
        return MILPResult(status, value, -math.inf, primal if has_point else None, message=message)


class _PulpSession(Session):
    def __init__(self, time_limit: float | None) -> None:
        super().__init__(time_limit)
        self._pulp = importlib.import_module("pulp")

    def _load(self, lp: LinearProgram, old: LinearProgram | None) -> None:
        pulp = self._pulp
        self._prob = pulp.LpProblem("lpbench", pulp.LpMinimize)
        self._vars = [self._prob.add_variable(f"v{j}", float(lp.var_lo[j]), float(lp.var_hi[j]))
                      for j in range(lp.n_vars)]
        self._cons: list[tuple[int, object]] = []  # (row, constraint)
        a = lp.a.tocsr()
        for i in range(lp.n_rows):
            cols, vals = a.indices[a.indptr[i]:a.indptr[i + 1]], a.data[a.indptr[i]:a.indptr[i + 1]]
            if cols.size == 0:  # 0 within its bounds (the session checks): no constraint
                continue
            expr = pulp.LpAffineExpression([(self._vars[j], float(v)) for j, v in zip(cols, vals)])
            lo, hi = lp.row_lo[i], lp.row_hi[i]
            if lo == hi:
                self._add(i, pulp.LpConstraint(expr, pulp.LpConstraintEQ, rhs=float(lo)))
                continue
            if np.isfinite(lo):
                self._add(i, pulp.LpConstraint(expr, pulp.LpConstraintGE, rhs=float(lo)))
            if np.isfinite(hi):
                self._add(i, pulp.LpConstraint(expr, pulp.LpConstraintLE, rhs=float(hi)))

    def _add(self, row: int, con) -> None:
        self._prob += con, f"r{len(self._cons)}"
        self._cons.append((row, con))

    def _solve(self, c: np.ndarray) -> RawSolution:
        pulp = self._pulp
        nz = np.flatnonzero(c)
        self._prob.setObjective(pulp.LpAffineExpression([(self._vars[j], float(c[j])) for j in nz]))
        solver = _cbc(pulp, mip=False, msg=False, timeLimit=self.time_limit)
        t0 = time.perf_counter()
        try:
            self._prob.solve(solver)
        except pulp.PulpSolverError as e:
            self.last_error = str(e)
            return RawSolution(LPStatus.ERROR)
        late = self.time_limit is not None and time.perf_counter() - t0 >= self.time_limit
        status = self._prob.status
        if status == pulp.LpStatusInfeasible:
            return RawSolution(LPStatus.INFEASIBLE)
        if status != pulp.LpStatusOptimal or self._prob.sol_status != pulp.LpSolutionOptimal:
            return RawSolution(LPStatus.TIME_LIMIT if late else LPStatus.ERROR)
        y = np.zeros(self.lp.n_rows)
        for row, con in self._cons:  # CBC's duals (pi) follow the convention r = c - A^T pi
            y[row] += con.pi if con.pi is not None else math.nan
        primal = np.array([v.varValue if v.varValue is not None else math.nan for v in self._vars])
        value = float(c @ np.nan_to_num(primal))
        return RawSolution(LPStatus.OPTIMAL, value, primal, y)


def _cbc(pulp, **kwargs):
    """PuLP's CBC command: a CBC on the path (COIN_CMD, PuLP 4's way) or the one bundled with
    PuLP 3 (PULP_CBC_CMD, deprecated there); None if neither is available."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in ("COIN_CMD", "PULP_CBC_CMD"):
            cls = getattr(pulp, name, None)
            if cls is not None and cls(msg=False).available():
                return cls(**kwargs) if kwargs else cls
    return None

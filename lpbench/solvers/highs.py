"""The HiGHS backend (through highspy): the default solver of the per-neuron LPs of LP-ALL and
LP-LAST (Salman et al. 2019, Section 5.1).

The model is passed once per session (one per sample and layer prefix in LP-ALL); each solve
changes only the objective coefficients that differ from the previous objective and re-runs the
simplex method from the previous basis (a warm start). An LP with the same sparsity pattern (the
next sample of a uniform relaxation) only updates bounds and coefficients, keeping the basis.
HiGHS runs with one thread, so one worker per core does not oversubscribe the machine, and
without output.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from lpbench.solvers.base import (Backend, LinearProgram, LPStatus, MILPResult, MILPStatus, RawSolution,
                                  Session)


@dataclass(frozen=True)
class HighsBackend(Backend):
    """HiGHS options. Dual simplex (``simplex_strategy`` 1) re-solves fastest after an objective
    change, every column being boxed. Presolve and scaling are off by default: on these small,
    well-scaled LPs with a dense first layer, presolve costs ~45 ms per model (five times a cold
    simplex solve) and HiGHS re-scales the whole matrix on every re-solve."""

    simplex_strategy: int = 1
    simplex_scale_strategy: int = 0
    presolve: str = "off"
    options: Mapping[str, Any] = field(default_factory=dict)  # any further HiGHS options
    name = "highs"
    supports_integer = True
    supports_cutoff = True
    module = "highspy"

    def _solve_milp(self, lp: LinearProgram, c: np.ndarray, c0: float, time_limit: float | None,
                    stop_above: float | None, stop_below: float | None, cutoff: float | None = None,
                    cpu_time: bool = False) -> MILPResult:
        return _solve_milp(lp, c, c0, time_limit, stop_above, stop_below, dict(self.options), cutoff, cpu_time)

    def _session(self, time_limit: float | None) -> Session:
        return _HighsSession(time_limit, {"simplex_strategy": self.simplex_strategy,
                                          "simplex_scale_strategy": self.simplex_scale_strategy,
                                          "presolve": self.presolve, **self.options})


_BANNER_DONE = False


def new_highs():
    """A ``highspy.Highs`` instance. HiGHS prints its banner from the constructor of the first one
    in a process, before any option can turn logging off, onto file descriptor 1, where it would
    corrupt ``--json`` output and fill sweep logs; that first one is built with descriptor 1 on
    the null device (C's stdio buffers flushed before it is put back)."""
    global _BANNER_DONE
    highspy = importlib.import_module("highspy")
    if _BANNER_DONE:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
            ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_DONE = True
    return h


class _HighsSession(Session):
    def __init__(self, time_limit: float | None, options: dict) -> None:
        super().__init__(time_limit)
        highspy = importlib.import_module("highspy")
        self._hs = highspy
        h = new_highs()
        for key, value in {"output_flag": False, "threads": 1, **options}.items():
            if h.setOptionValue(key, value) != highspy.HighsStatus.kOk:
                raise ValueError(f"HiGHS rejects option {key}={value!r}")
        self._h = h
        self._cost = np.zeros(0)
        self._status = {
            highspy.HighsModelStatus.kOptimal: LPStatus.OPTIMAL,
            highspy.HighsModelStatus.kInfeasible: LPStatus.INFEASIBLE,
            highspy.HighsModelStatus.kUnboundedOrInfeasible: LPStatus.INFEASIBLE,
            highspy.HighsModelStatus.kTimeLimit: LPStatus.TIME_LIMIT,
        }

    def _load(self, lp: LinearProgram, old: LinearProgram | None) -> None:
        h = self._h
        if old is None or not _same_pattern(lp, old):
            self._pass(lp)
            return
        # same rows, columns and sparsity: change the numbers only, the basis stays for a warm start
        cols = np.flatnonzero((lp.var_lo != old.var_lo) | (lp.var_hi != old.var_hi))
        if cols.size:
            h.changeColsBounds(cols.size, cols.astype(np.int32), lp.var_lo[cols], lp.var_hi[cols])
        rows = np.flatnonzero((lp.row_lo != old.row_lo) | (lp.row_hi != old.row_hi))
        if rows.size:
            h.changeRowsBounds(rows.size, rows.astype(np.int32), lp.row_lo[rows], lp.row_hi[rows])
        a = lp.a
        for k in np.flatnonzero(a.data != old.a.data):
            row = int(np.searchsorted(a.indptr, k, side="right") - 1)
            h.changeCoeff(row, int(a.indices[k]), float(a.data[k]))

    def _pass(self, lp: LinearProgram) -> None:
        highspy = self._hs
        model = highspy.HighsLp()
        model.num_col_, model.num_row_ = lp.n_vars, lp.n_rows
        model.col_cost_ = np.zeros(lp.n_vars)
        model.col_lower_, model.col_upper_ = lp.var_lo, lp.var_hi
        model.row_lower_, model.row_upper_ = lp.row_lo, lp.row_hi  # kHighsInf is float inf
        csc = lp.a.tocsc()
        model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        model.a_matrix_.start_ = csc.indptr.astype(np.int32)
        model.a_matrix_.index_ = csc.indices.astype(np.int32)
        model.a_matrix_.value_ = csc.data
        self._h.passModel(model)
        self._cost = np.zeros(lp.n_vars)

    def _solve(self, c: np.ndarray) -> RawSolution:
        h = self._h
        changed = np.flatnonzero(c != self._cost)
        if changed.size:
            h.changeColsCost(changed.size, changed.astype(np.int32), c[changed])
            self._cost = c.copy()
        if self.time_limit is not None:
            # HiGHS compares its limit with the clock of the Highs object, which runs across solves
            h.setOptionValue("time_limit", h.getRunTime() + self.time_limit)
        h.run()
        status = self._status.get(h.getModelStatus(), LPStatus.ERROR)
        info = h.getInfo()
        iters = int(info.simplex_iteration_count)
        if status is not LPStatus.OPTIMAL:
            return RawSolution(status, iterations=iters)
        sol = h.getSolution()
        return RawSolution(status, float(info.objective_function_value), np.array(sol.col_value),
                           np.array(sol.row_dual), iters)

    def close(self) -> None:
        self._h = None


#: With a CPU-time limit, HiGHS's own (wall-clock) limit is this many times longer (plus 10 s).
CPU_BACKSTOP = 4.0

#: MILP defaults: one thread, no output, gaps 0 so that "optimal" means the dual bound met the
#: incumbent (the verdict only ever rests on the dual bound, so the gap is about speed, not
#: soundness). The RINS and RENS sub-MIP heuristics are off and pseudo-costs count as reliable
#: after one observation (default 8): on the hard NOR-MLP-B targets (eps 0.02, LP-ALL bounds)
#: the sub-MIPs took half the time and strong branching most of the rest; with these settings the
#: targets of the first 40 test images that the LP relaxation leaves open took 590 s instead of
#: 700 s with the sub-MIPs off only (7 instead of 9 hitting 60 s); one target took 32 s with the
#: HiGHS defaults, 15 s without sub-MIPs and 8 s with both changes. Presolve is off as well: on six
#: hard targets it turned two 60 s timeouts into 23 s and 40 s solves, and on the first 60 NOR images
#: (bench milp, 60 s) 3 timeouts became 2.
_MILP_OPTIONS = {"output_flag": False, "threads": 1, "mip_rel_gap": 0.0, "mip_abs_gap": 0.0,
                 "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                 "mip_pscost_minreliable": 1, "presolve": "off"}


def _solve_milp(lp: LinearProgram, c: np.ndarray, c0: float, time_limit: float | None,
                stop_above: float | None, stop_below: float | None, options: dict,
                cutoff: float | None = None, cpu_time: bool = False) -> MILPResult:
    """The HiGHS branch and bound on ``lp`` with integrality; a MIP-interrupt callback stops it
    once ``dual bound + c0 > stop_above`` or ``incumbent + c0 < stop_below``.

    ``cpu_time``: ``time_limit`` counts the CPU seconds of the calling thread (HiGHS runs its
    single-threaded search there), checked by the same callback, which HiGHS calls between nodes;
    its own wall-clock limit becomes a backstop at ``CPU_BACKSTOP`` times the limit (plus 10 s),
    so a starved process still ends, with a time-limit status.

    ``cutoff`` goes to HiGHS as ``objective_bound``, its initial upper limit: nodes whose bound
    reaches it are pruned, and reduced-cost fixing and objective propagation start at once instead
    of waiting for an incumbent. The offset ``c0`` is then kept out of the model (HiGHS compares
    the limit with its objective; leaving the constant out makes that comparison unambiguous) and
    added back here. When the search has nothing left below the cutoff, the result says so with
    ``dual_bound == cutoff``, whether HiGHS ends it as infeasible or the callback stops it on a
    bound of +inf."""
    highspy = importlib.import_module("highspy")
    h = new_highs()
    opts = {**_MILP_OPTIONS, **options}
    if time_limit is not None:
        opts["time_limit"] = float(time_limit) * (CPU_BACKSTOP if cpu_time else 1.0) + (10.0 if cpu_time else 0.0)
    cpu_limit = float(time_limit) if cpu_time and time_limit is not None else math.inf
    shift = 0.0
    if cutoff is not None:
        shift, c0 = c0, 0.0  # objective and thresholds below are without the constant
        opts["objective_bound"] = float(cutoff) - shift
        stop_above = None if stop_above is None else stop_above - shift
        stop_below = None if stop_below is None else stop_below - shift
    for key, value in opts.items():
        if h.setOptionValue(key, value) != highspy.HighsStatus.kOk:
            raise ValueError(f"HiGHS rejects option {key}={value!r}")
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = lp.n_vars, lp.n_rows
    model.col_cost_, model.offset_ = c, c0
    model.col_lower_, model.col_upper_ = lp.var_lo, lp.var_hi
    model.row_lower_, model.row_upper_ = lp.row_lo, lp.row_hi
    csc = lp.a.tocsc()
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = csc.indptr.astype(np.int32)
    model.a_matrix_.index_ = csc.indices.astype(np.int32)
    model.a_matrix_.value_ = csc.data
    if lp.integrality is not None:
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        model.integrality_ = [kinds[int(bool(f))] for f in lp.integrality]
    h.passModel(model)
    seen: dict[str, float] = {}
    hi = math.inf if stop_above is None else stop_above
    lo = -math.inf if stop_below is None else stop_below

    def interrupt(event) -> None:
        """Track the live dual bound (HiGHS's final info holds 0, not -inf, when a limit or an
        interrupt comes before the branch and bound has a bound) and stop at the thresholds."""
        out = event.data_out
        seen["bound"] = float(out.mip_dual_bound)
        if out.mip_dual_bound > hi or out.objective_function_value < lo:
            event.interrupt()
        elif time.thread_time() - cpu0 > cpu_limit:
            seen["cpu"] = True
            event.interrupt()
    h.cbMipInterrupt.subscribe(interrupt)
    cpu0 = time.thread_time()
    h.run()
    ms, info = h.getModelStatus(), h.getInfo()
    status = {highspy.HighsModelStatus.kOptimal: MILPStatus.OPTIMAL,
              highspy.HighsModelStatus.kInterrupt: MILPStatus.STOPPED,
              highspy.HighsModelStatus.kTimeLimit: MILPStatus.TIME_LIMIT,
              highspy.HighsModelStatus.kInfeasible: MILPStatus.INFEASIBLE,
              highspy.HighsModelStatus.kUnboundedOrInfeasible: MILPStatus.INFEASIBLE}.get(ms, MILPStatus.ERROR)
    has_point = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    primal = np.array(h.getSolution().col_value) if has_point else None
    objective = float(info.objective_function_value) if has_point else math.nan
    # optimal: HiGHS's final bound (for a model without integer columns HiGHS solves an LP and
    # leaves mip_dual_bound at 0, so the LP optimum, uncertified like every node bound); otherwise
    # the last bound the branch and bound reported
    bound = seen.get("bound", -math.inf)
    if status is MILPStatus.OPTIMAL:
        integer = lp.integrality is not None and bool(np.any(lp.integrality))
        bound = float(info.mip_dual_bound) if integer else float(info.objective_function_value)
    message = h.modelStatusToString(ms)
    if status is MILPStatus.STOPPED and seen.get("cpu"):
        status, message = MILPStatus.TIME_LIMIT, "CPU time limit reached"
    if cutoff is not None:
        limit = float(cutoff) - shift
        exhausted = status is MILPStatus.INFEASIBLE or (status is MILPStatus.STOPPED and bound >= limit)
        if exhausted and not has_point:
            status, bound = MILPStatus.STOPPED, limit
            message = f"no point below the cutoff {cutoff:.6g} ({message})"
        else:
            bound = min(bound, limit)  # nodes at the cutoff were pruned: nothing is known above it
        objective += shift
        bound += shift
    if has_point:
        bound = min(bound, objective)  # a lower bound never exceeds a feasible value
    return MILPResult(status, objective, bound if math.isfinite(bound) else -math.inf, primal,
                      int(info.mip_node_count), message=message)


def _same_pattern(a: LinearProgram, b: LinearProgram) -> bool:
    return (a.a.shape == b.a.shape and a.a.nnz == b.a.nnz and np.array_equal(a.a.indptr, b.a.indptr)
            and np.array_equal(a.a.indices, b.a.indices))

"""WHO solves: the small protocol every LP backend implements.

A :class:`Backend` has a ``name``, says whether its native library is installed
(:meth:`Backend.available`) and whether it handles integer variables, and opens a
:class:`Session` on a :class:`LinearProgram` (plain picklable data). A session re-solves the same
feasible set with changing objectives, which is what the per-neuron LPs of LP-ALL need
(Salman et al. 2019, Section 5.1: one LP per neuron and bound direction). Every result carries a
normalised :class:`LPStatus` and, when optimal, a bound certified from the row duals by weak
duality (:mod:`lpbench.solvers.certify`), never the bare solver objective. Native solver modules
are imported inside the backends only, so lpbench imports without the optional solvers.
"""

from __future__ import annotations

import importlib

import math
import resource
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum

import numpy as np
import scipy.sparse as sp

from lpbench.errors import LpbenchError
from lpbench.solvers.certify import Certifier


def child_cpu() -> float:
    """CPU seconds of this process's finished child processes so far (a CBC run is one)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_clock() -> float:
    """CPU seconds of the calling thread (where HiGHS solves) plus those of finished child
    processes (where CBC solves): the clock of a CPU-time limit, whichever backend runs."""
    return time.thread_time() + child_cpu()


@dataclass(frozen=True, eq=False)
class LinearProgram:
    """``min c.v + c0  s.t.  row_lo <= a v <= row_hi,  var_lo <= v <= var_hi`` (float64; a row
    side may be infinite; finite variable bounds make every dual vector certifiable)."""

    a: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    var_lo: np.ndarray
    var_hi: np.ndarray
    integrality: np.ndarray | None = None  # (n,) bool: integer variables (None: a pure LP)

    def __post_init__(self) -> None:
        m, n = self.a.shape
        if self.integrality is not None and np.shape(self.integrality) != (n,):
            raise ValueError(f"integrality must have shape ({n},)")
        if self.row_lo.shape != (m,) or self.row_hi.shape != (m,):
            raise ValueError(f"row bounds must have shape ({m},)")
        if self.var_lo.shape != (n,) or self.var_hi.shape != (n,):
            raise ValueError(f"variable bounds must have shape ({n},)")

    @property
    def n_vars(self) -> int:
        return self.a.shape[1]

    @property
    def n_rows(self) -> int:
        return self.a.shape[0]


class _Named(str, Enum):
    """A status that prints as its value."""

    def __str__(self) -> str:
        return self.value


class LPStatus(_Named):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


@dataclass(frozen=True, eq=False)
class LPResult:
    """One solve. ``objective`` is the solver's value of ``c.v + c0`` (NaN unless optimal);
    ``certified_bound`` a rigorous lower bound of the LP minimum (-inf unless optimal)."""

    status: LPStatus
    objective: float
    certified_bound: float
    primal: np.ndarray | None = None
    row_duals: np.ndarray | None = None
    iterations: int = 0
    time_s: float = 0.0


@dataclass(frozen=True)
class RawSolution:
    """What a backend's ``_solve`` reports, before normalisation and certification."""

    status: LPStatus
    objective: float = math.nan  # of c.v, without c0
    primal: np.ndarray | None = None
    row_duals: np.ndarray | None = None  # y with reduced costs c - A^T y
    iterations: int = 0


class MILPStatus(_Named):
    """How a MILP solve ended: ``stopped`` = interrupted once the requested sign was known."""

    OPTIMAL = "optimal"
    STOPPED = "stopped"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    ERROR = "error"


@dataclass(frozen=True, eq=False)
class MILPResult:
    """One MILP solve of ``min c.v + c0``. ``objective``: the incumbent's value (NaN without
    one) with its point ``primal``; ``dual_bound``: the solver's proved lower bound as it reports
    it (-inf if none; not certified, callers subtract a tolerance); ``nodes`` branch-and-bound
    nodes (-1 where the backend does not say)."""

    status: MILPStatus
    objective: float = math.nan
    dual_bound: float = -math.inf
    primal: np.ndarray | None = None
    nodes: int = -1
    time_s: float = 0.0
    message: str = ""


class Session(ABC):
    """An open LP whose objective changes between solves (close it, or use ``with``).

    :meth:`update` moves the session to another LP, e.g. the relaxation of the next sample or with
    tighter bounds; where only numbers change, a backend that can keeps its model and warm start."""

    def __init__(self, time_limit: float | None) -> None:
        self.lp: LinearProgram | None = None
        self.time_limit = time_limit
        self.last_error = ""  # the message of the last solver exception, if any

    def update(self, lp: LinearProgram) -> None:
        """Solve ``lp`` from now on."""
        old = self.lp
        self.lp = lp
        self._certifier = Certifier(lp)
        blank = np.diff(lp.a.tocsr().indptr) == 0  # a row without entries must admit 0
        self._empty = bool(np.any(lp.var_lo > lp.var_hi) or np.any(lp.row_lo > lp.row_hi)
                           or np.any(blank & ((lp.row_lo > 0) | (lp.row_hi < 0))))
        self._load(lp, old)

    @abstractmethod
    def _load(self, lp: LinearProgram, old: LinearProgram | None) -> None:
        """Make the native model solve ``lp`` (``old``: the LP it held before, if any)."""

    def minimize(self, c: np.ndarray, c0: float = 0.0) -> LPResult:
        """min ``c.v + c0`` over the LP; the certified bound comes from the duals."""
        c = np.asarray(c, np.float64).ravel()
        if c.shape != (self.lp.n_vars,):
            raise ValueError(f"objective has {c.size} entries, the LP {self.lp.n_vars} variables")
        t0 = time.perf_counter()
        if self._empty:  # inconsistent bounds: infeasible whatever the solver would say
            return LPResult(LPStatus.INFEASIBLE, math.nan, -math.inf, time_s=time.perf_counter() - t0)
        try:
            raw = self._solve(c)
        except LpbenchError:
            raise
        except Exception as e:  # a solver failure is a result, not a crash
            raw = RawSolution(LPStatus.ERROR)
            self.last_error = f"{type(e).__name__}: {e}"
        cert = -math.inf
        if raw.status is LPStatus.OPTIMAL and raw.row_duals is not None:
            cert = self._certifier.bound(c, c0, raw.row_duals)
        objective = raw.objective + c0 if raw.status is LPStatus.OPTIMAL else math.nan
        return LPResult(raw.status, objective, cert, raw.primal, raw.row_duals, raw.iterations,
                        time.perf_counter() - t0)

    @abstractmethod
    def _solve(self, c: np.ndarray) -> RawSolution:
        """Solve min c.v over the LP; report the row duals in the convention r = c - A^T y."""

    def close(self) -> None:
        """Release native resources (the default holds none)."""

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: The largest slack of a phase-one LP (:meth:`Backend.proves_infeasible`): any finite cap keeps
#: the proof valid (a feasible point needs no slack); a finite one lets the duals be certified.
PHASE_ONE_CAP = 1e6


class Backend(ABC):
    """A solver: ``name``, ``supports_integer``, :meth:`available`, :meth:`open`."""

    name: str = ""
    supports_integer: bool = False
    #: whether :meth:`solve_milp` uses its ``cutoff`` (prunes nodes at it)
    supports_cutoff: bool = False
    module: str = ""  # the native module, for error messages

    def available(self) -> bool:
        """True if the native solver module can be imported."""
        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True

    def open(self, lp: LinearProgram, time_limit: float | None = None) -> Session:
        """A session on ``lp``; ``time_limit`` in seconds applies to each solve."""
        if not self.available():
            raise LpbenchError(f"LP backend {self.name!r} needs the Python package {self.module!r}, "
                               f"which is not installed (pip install {self.module})")
        if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
            raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        session = self._session(None if time_limit is None else float(time_limit))
        session.update(lp)
        return session

    def proves_infeasible(self, lp: LinearProgram) -> bool:
        """True only with a proof that ``lp`` has no feasible point: its own bounds contradict
        each other, or its phase-one LP (each row given two nonnegative slacks of at most
        ``PHASE_ONE_CAP``) has a dual-certified minimum of the slacks' sum above 0 (any feasible
        point of ``lp`` would give it the value 0). False proves nothing."""
        if np.any(lp.var_lo > lp.var_hi) or np.any(lp.row_lo > lp.row_hi):
            return True
        m, n = lp.n_rows, lp.n_vars
        eye = sp.identity(m, format="csr")
        phase = LinearProgram(sp.hstack([lp.a, eye, -eye]).tocsr(), lp.row_lo, lp.row_hi,
                              np.concatenate([lp.var_lo, np.zeros(2 * m)]),
                              np.concatenate([lp.var_hi, np.full(2 * m, PHASE_ONE_CAP)]), None)
        with self.open(phase) as session:
            res = session.minimize(np.concatenate([np.zeros(n), np.ones(2 * m)]))
        return res.status is LPStatus.OPTIMAL and res.certified_bound > 0

    def solve_milp(self, lp: LinearProgram, c: np.ndarray, c0: float = 0.0, time_limit: float | None = None,
                   stop_above: float | None = None, stop_below: float | None = None,
                   cutoff: float | None = None, cpu_time: bool = False) -> MILPResult:
        """min ``c.v + c0`` with the variables flagged in ``lp.integrality`` integer, one thread.
        ``time_limit`` counts wall-clock seconds, or with ``cpu_time`` the solver's CPU seconds
        (the same work on an idle or a shared machine; HiGHS: the calling thread's CPU clock,
        read between nodes, with a wall-clock backstop of ``CPU_BACKSTOP`` times the limit; CBC:
        its own CPU clock, CBC's default).
        The solve may stop early once its dual bound exceeds ``stop_above`` or an incumbent is
        below ``stop_below`` (status STOPPED; backends without that support run to the end).
        ``cutoff``: only points with ``c.v + c0 < cutoff`` matter; a backend that supports it
        (``supports_cutoff``) prunes every node whose bound reaches it, so its dual bound is then
        only ``min(true minimum, cutoff)``, and a search that finds nothing below the cutoff
        reports ``dual_bound == cutoff`` (status STOPPED). Others ignore it. The result's
        ``time_s`` counts the seconds of the same clock as the limit."""
        if not self.supports_integer:
            raise LpbenchError(f"backend {self.name!r} does not solve integer programs")
        if not self.available():
            raise LpbenchError(f"backend {self.name!r} needs the Python package {self.module!r}")
        if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
            raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        c = np.asarray(c, np.float64).ravel()
        if c.shape != (lp.n_vars,):
            raise ValueError(f"objective has {c.size} entries, the MILP {lp.n_vars} variables")
        clock = cpu_clock if cpu_time else time.perf_counter  # time_s counts what the limit counts
        t0 = clock()
        if np.any(lp.var_lo > lp.var_hi) or np.any(lp.row_lo > lp.row_hi):
            return MILPResult(MILPStatus.INFEASIBLE, time_s=clock() - t0,
                              message="inconsistent bounds in the model data")
        try:
            extra = {"cpu_time": True} if cpu_time else {}
            if cutoff is not None and self.supports_cutoff:
                extra["cutoff"] = float(cutoff)
            res = self._solve_milp(lp, c, float(c0), time_limit, stop_above, stop_below, **extra)
        except LpbenchError:
            raise
        except Exception as e:  # a solver failure is a result, not a crash
            res = MILPResult(MILPStatus.ERROR, message=f"{type(e).__name__}: {e}")
        return MILPResult(res.status, res.objective, res.dual_bound, res.primal, res.nodes,
                          clock() - t0, res.message)

    def _solve_milp(self, lp: LinearProgram, c: np.ndarray, c0: float, time_limit: float | None,
                    stop_above: float | None, stop_below: float | None, cpu_time: bool = False) -> MILPResult:
        raise LpbenchError(f"backend {self.name!r} does not solve integer programs")

    @abstractmethod
    def _session(self, time_limit: float | None) -> Session:
        """A new session of this backend (its model is loaded by :meth:`Session.update`)."""

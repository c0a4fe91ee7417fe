"""LP solver backends behind one protocol (:mod:`lpbench.solvers.base`): HiGHS (default),
cvxpy and PuLP/CBC. ``get_backend("highs")`` returns a ready backend or raises a clear
:class:`~lpbench.errors.LpbenchError` when its package is missing."""

from __future__ import annotations

from typing import Any, Mapping

from lpbench.errors import LpbenchError
from lpbench.solvers.base import Backend, LinearProgram, LPResult, LPStatus, Session
from lpbench.solvers.certify import certified_bound
from lpbench.solvers.cvxpy_backend import CvxpyBackend
from lpbench.solvers.highs import HighsBackend
from lpbench.solvers.pulp_backend import PulpBackend

BACKENDS: dict[str, type[Backend]] = {"highs": HighsBackend, "cvxpy": CvxpyBackend, "pulp": PulpBackend}


def get_backend(name: str, options: Mapping[str, Any] | None = None) -> Backend:
    """The backend ``name`` built with ``options``; it must be installed."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise LpbenchError(f"unknown LP backend {name!r}; choose from {', '.join(BACKENDS)}") from None
    try:
        backend = cls(**dict(options or {}))
    except TypeError as e:
        raise ValueError(f"bad options for LP backend {name!r}: {e}") from None
    if not backend.available():
        raise LpbenchError(f"LP backend {name!r} needs the Python package {backend.module!r}, "
                           f"which is not installed (pip install {backend.module})")
    return backend


__all__ = ["Backend", "BACKENDS", "LinearProgram", "LPResult", "LPStatus", "Session",
           "certified_bound", "get_backend"]

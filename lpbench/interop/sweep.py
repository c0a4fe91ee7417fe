"""VNN-COMP instance lists inside sweeps (``instances = "bench/instances.csv"`` in a sweep file).

A sweep over an instance list has one pseudo model, :func:`instance_model` of the list, one
pseudo epsilon 0, and one "sample" per row (its index in the list); every (row, method) is one
task that runs :func:`lpbench.interop.vnncomp.solve_instance` on a worker (the list and the
files it names must be readable there: a shared file system on a cluster). The answer is stored
as an ordinary outcome: unsat -> verified, sat -> falsified (with the replayed counterexample),
timeout / unknown / error as they are; ``stats`` keep the VNN-COMP word, the files and the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lpbench.problem import Outcome, Status

#: The model name under which a sweep stores the outcomes of an instance list.
PREFIX = "instances:"
_STATUS = {"unsat": Status.VERIFIED, "sat": Status.FALSIFIED, "timeout": Status.TIMEOUT,
           "unknown": Status.UNKNOWN, "error": Status.ERROR}


def instance_model(path: str | Path) -> str:
    return PREFIX + str(path)


def instance_count(path: str | Path) -> int:
    from lpbench.interop.vnncomp import read_instances
    return len(read_instances(path))


def instance_outcome(path: str | Path, index: int, method: str,
                     options: Mapping[str, Any] | None = None) -> Outcome:
    """Row ``index`` of the instance list at ``path`` decided by ``method``, as an Outcome."""
    from lpbench.interop.vnncomp import read_instances, solve_instance
    rows = read_instances(path)
    inst = rows[index]
    ans = solve_instance(inst, method, options)
    stats = {"vnncomp": ans.result, "onnx": inst.onnx, "vnnlib": inst.vnnlib, "timeout": inst.timeout,
             "decided_by": ans.decided_by, "message": ans.message}
    if ans.result == "error":
        stats["error"] = ans.message
    return Outcome(method, int(index), -1, _STATUS[ans.result], None, None, ans.x, ans.time_s, stats)

"""HOW one sample is decided exactly: the per-target MILPs of Tjeng, Xiao & Tedrake 2019.

For each target ``j != y`` the MILP ``min f_y - f_j`` over the exact encoding
(:mod:`lpbench.milp.formulation`), most threatening target first (smallest clean margin). Its LP
relaxation (the triangle relaxation over the same bounds) is solved first: a positive bound
certified from its duals verifies the target without branching (most targets, once the bounds
are tight). Otherwise the MILP runs, and stops as soon as its sign is known (HiGHS: dual bound
above the tolerance, or an incumbent below its negative). With ``targets="joint"`` the targets
the LP leaves open share one MILP (:mod:`lpbench.milp.joint`) instead. A target whose MILP is
still open after ``QUICK_S`` seconds gets bounds conditioned on its counterexample region (the LP bounds of
every unstable neuron with the row f_y - f_j <= 0 added, :mod:`lpbench.milp.conditional`) and is
tried again, by a certified LP and a new MILP; if that MILP is open after another ``QUICK_S``
seconds, a branch and bound on ReLU splits with conditioned bounds at every node
(:mod:`lpbench.milp.split`) has the rest of the time. The first MILP of a
target runs with the cutoff ``CUTOFF_TOLS`` tolerances above 0 (``cutoff=True``, HiGHS): only its
sign matters, so every node whose bound reaches the cutoff is pruned and reduced-cost fixing starts
without an incumbent; a search that ends with nothing below the cutoff proves the margin at least
the cutoff, i.e. its safe bound is ``(CUTOFF_TOLS - 1)`` tolerances > 0. With a cutoff an
infeasible model and a verified target look alike, so the MILP is only built once x's own
pre-activations are checked to lie inside its bounds (bounds that exclude x are an error). Per
target:

* verified iff the LP relaxation's certified bound is > 0, or the solver's proved dual bound, lowered by :func:`tolerance`, is > 0. The dual
  bound of branch and bound rests on floating-point node LPs that are not certified, and the
  solver accepts points within its feasibility (1e-7 on rows) and integrality (1e-6) tolerances;
  those only enlarge the feasible set (so lower the minimum), but rounding in the node LPs can
  move the bound either way, so we subtract ``1e-6 + 1e-6 * S`` with ``S`` the largest value
  ``|c.v| + |c0|`` can take over the variable box: far above the solvers' tolerances, far below
  the margins that matter (~1e-3 on MNIST MLP-B);
* falsified iff the input part of an incumbent below 0 survives :func:`lpbench.attacks.pgd.recheck`
  (float64 forward pass, inside the set, misclassified); an incumbent that does not is counted as
  a spurious solution and decides nothing;
* timeout when the limit came first, error when the MILP is infeasible (the true problem always
  contains x, so bad bounds or a solver fault) or the solver failed, unknown otherwise.

The sample is falsified if a target is, else error if a target is, verified if all are, timeout
if a target timed out, unknown otherwise. The time limit covers the MILP solves of the sample
(the bound tightening is timed apart).

On dense ReLU networks (``bab=True``, the default) a branch and bound with batched bound
propagation (:mod:`lpbench.milp.bab`) comes first: each target the LP relaxation leaves open gets
``BAB_S`` seconds of it on the sample's bounds before its MILP, and once its bounds are
conditioned, the rest of the time on them before their MILP (which then runs only if the search
stopped early: a domain with nothing left to split whose exact LP ties at 0, or too many domains
held). On NOR-MLP-B at
0.02 it decides in 3 to 29 CPU-s five test images (66, 191, 244, 251, 443) that the MILP and the
LP split search alone took 62 to 240 s for. A search still open after
:data:`lpbench.milp.bab.TRIGGER_S` seconds computes the sample's implied bounds of single splits
(:mod:`lpbench.milp.implications`, at most ``IMPLIED_SHARE`` of the time limit, once per sample),
and from then on each target's first search has the rest of the sample's time instead of
``BAB_S``: with them the search alone decided the three images whose MILP had needed 104 to 303
CPU-s (40, 224, 357), in 16 to 46 s each (``results/bench_milp_500.md``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np
import torch

from lpbench.attacks.pgd import recheck
from lpbench.milp.bab import bab_search, dense_relu, root_bounds
from lpbench.milp.conditional import conditional_bounds
from lpbench.milp.formulation import DEFAULT_TIGHTENING, MILP, milp, tightened_bounds
from lpbench.milp.implications import SampleImplications
from lpbench.milp.joint import joint_milp, margin_box
from lpbench.milp.split import split_search
from lpbench.network import Network, apply_layer
from lpbench.problem import Perturbation, Status
from lpbench.solvers.base import Backend, LinearProgram, LPStatus, MILPResult, MILPStatus, cpu_clock

#: How the targets left open by the LP relaxation are solved: a MILP each, or one joint MILP.
TARGET_MODES = ("each", "joint")

#: Seconds a target's MILP runs on the sample's bounds before it gets conditioned bounds.
QUICK_S = 5.0
#: Seconds of branch and bound with bound propagation (:mod:`lpbench.milp.bab`) a target gets on
#: the sample's bounds before its MILP; on its conditioned bounds it has the rest of the time.
BAB_S = 5.0
#: The share of a sample's time limit its implied bounds (:mod:`lpbench.milp.implications`) may
#: take; they are computed once, when a branch and bound of the sample first runs past
#: :data:`lpbench.milp.bab.TRIGGER_S`.
IMPLIED_SHARE = 0.25
#: The most rounds of conditioned LP bound tightening (they end sooner once a round makes no
#: neuron stable, see :func:`lpbench.milp.conditional.conditional_bounds`).
CONDITION_ROUNDS = 20

#: The clocks a sample's time limit can count: the CPU seconds of the solving thread and of the
#: solver processes it waits for (the same work whatever else runs on the machine), or wall-clock
#: seconds.
CLOCKS = {"cpu": cpu_clock, "wall": time.perf_counter}

#: The absolute and relative parts of the safety margin taken off every dual bound.
TOL_ABS, TOL_REL = 1e-6, 1e-6
#: The cutoff of a target's MILP, in tolerances (see :func:`tolerance`) above 0.
CUTOFF_TOLS = 2.0


@dataclass(frozen=True)
class TargetResult:
    """One target's MILP: ``status`` its verdict, ``safe_bound`` the dual bound minus the
    tolerance (-inf if none), ``incumbent`` the best objective found (NaN if none)."""

    target: int
    status: Status
    safe_bound: float
    dual_bound: float
    incumbent: float
    solver_status: str
    nodes: int
    time_s: float
    spurious: bool = False
    message: str = ""

    def record(self) -> dict:
        return {"target": self.target, "status": self.status.value, "safe_bound": self.safe_bound,
                "dual_bound": self.dual_bound, "incumbent": self.incumbent, "solver": self.solver_status,
                "nodes": self.nodes, "time_s": self.time_s, "spurious": self.spurious,
                "message": self.message}


@dataclass(frozen=True, eq=False)
class SampleVerdict:
    status: Status
    targets: tuple[TargetResult, ...]
    counterexample: np.ndarray | None
    tightening: str
    tightening_s: float
    unstable: int
    solve_s: float
    clock: str = "wall"

    def margins(self, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(safe lower bound, incumbent) of f_y - f_j per class j (NaN where not solved)."""
        lo, up = np.full(n_classes, np.nan), np.full(n_classes, np.nan)
        for t in self.targets:
            lo[t.target], up[t.target] = t.safe_bound, t.incumbent
        return lo, up

    def stats(self) -> dict:
        return {"tightening": self.tightening, "tightening_s": self.tightening_s,
                "unstable": self.unstable, "solve_s": self.solve_s, "clock": self.clock,
                "nodes": sum(max(t.nodes, 0) for t in self.targets),
                "spurious": sum(t.spurious for t in self.targets),
                "targets": [t.record() for t in self.targets]}


def tolerance(lp: LinearProgram, c: np.ndarray, c0: float) -> float:
    """The safety margin subtracted from a dual bound of ``min c.v + c0`` (see the module doc)."""
    scale = float(np.abs(c) @ np.maximum(np.abs(lp.var_lo), np.abs(lp.var_hi))) + abs(c0)
    return TOL_ABS + TOL_REL * scale


def verify_sample(net: Network, x: np.ndarray, label: int, pset: Perturbation, backend: Backend,
                  time_limit: float, tightening: str = DEFAULT_TIGHTENING, lp_backend: Backend | None = None,
                  model: MILP | None = None, targets: str = "each", conditional: bool = True,
                  cutoff: bool = True, clock: str = "cpu", split: bool = True, bab: bool = True,
                  implied: bool = True, proved: Mapping[int, float] | None = None,
                  order_by: Mapping[int, float] | None = None) -> SampleVerdict:
    """Decide one correctly classified sample by MILP (``model``: a prebuilt MILP to use).
    ``targets``: ``"each"`` (a MILP per target left open by the LP relaxation) or ``"joint"``
    (one MILP over all of them, :func:`_joint`). ``conditional``: a target whose MILP is still
    open after ``QUICK_S`` seconds gets bounds conditioned on its counterexample region
    (:mod:`lpbench.milp.conditional`) and a new MILP for the rest of the time. ``cutoff``: each
    target's first MILP prunes at ``CUTOFF_TOLS`` tolerances above 0 (module doc). ``clock``:
    ``time_limit`` and ``solve_s`` count CPU seconds (``"cpu"``: this thread's, where HiGHS
    solves, plus CBC's child processes', so a busy machine does not turn decidable samples into
    timeouts) or wall-clock seconds (``"wall"``), see :data:`CLOCKS`. ``split``: a target the
    conditioned MILP leaves open after ``QUICK_S`` seconds goes to :func:`lpbench.milp.split.split_search`
    for the rest of the time. ``bab``: on dense ReLU networks each target (``targets="each"``) first gets ``BAB_S``
    seconds of :func:`lpbench.milp.bab.bab_search` on the sample's bounds, and the conditioned
    bounds get it before their MILP (module doc); with ``implied`` (and ``bab``) a search open after
    :data:`lpbench.milp.bab.TRIGGER_S` seconds goes on with the sample's implied bounds.
    ``proved``: targets already verified on a set that holds ``pset``'s (the same ``x`` at a larger
    epsilon), each with its margin's lower bound there (> 0, valid on the smaller set too): they are
    verified with that bound and not solved again. ``order_by``: a value per target, say its
    margin at an attack's best point: targets are solved in increasing order of it (those without
    one last), ties and the rest by clean margin. A sample ends at its first counterexample, so
    the target an attack came closest to goes first."""
    if targets not in TARGET_MODES:
        raise ValueError(f"targets must be one of {TARGET_MODES}, got {targets!r}")
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit) and time_limit > 0):
        raise ValueError(f"the MILP time limit must be a positive number of seconds, got {time_limit!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {tuple(CLOCKS)}, got {clock!r}")
    now, cpu = CLOCKS[clock], clock == "cpu"
    x64 = np.asarray(x, np.float64)
    t_s = 0.0
    if model is None:
        pre, t_s = tightened_bounds(net, x64, label, pset, tightening, lp_backend or backend)
        model = milp(net, x64, pset, pre, tightening)
    outside = _excludes_x(net, x64, model.pre)
    if outside is not None:
        why = (f"the pre-activation bounds ({model.tightening}) exclude x's own trajectory: {outside}; "
               "they are not valid for the perturbation set")
        return SampleVerdict(Status.ERROR, tuple(TargetResult(j, Status.ERROR, -math.inf, -math.inf, math.nan,
                                                              "not run", 0, 0.0, message=why)
                                                 for j in range(net.n_classes) if j != label),
                             None, model.tightening, t_s, model.unstable, 0.0)
    logits = net.logits64(x64[None])[0]
    order = [int(j) for j in np.argsort(logits[label] - logits, kind="stable") if j != label]
    if order_by:
        order.sort(key=lambda j: order_by.get(j, math.inf))  # stable: ties keep the clean order
    t0 = now()
    tables = (_implications(net, x64, pset, model.pre, time_limit, t0 + time_limit, now) if bab and implied
              else None)
    results, cex, open_ = [], None, []
    with (lp_backend or backend).open(replace(model.rel.lp, integrality=None)) as session:
        for j in order:
            if j in (proved or {}):
                results.append(TargetResult(j, Status.VERIFIED, proved[j], proved[j], math.nan,
                                            "proved at a larger epsilon", 0, 0.0))
                continue
            c, c0 = model.margin(label, j)
            lp = session.minimize(c, c0)
            if lp.status is LPStatus.OPTIMAL and lp.certified_bound > 0:
                results.append(TargetResult(j, Status.VERIFIED, lp.certified_bound, lp.certified_bound,
                                            math.nan, "lp relaxation", 0, lp.time_s))
            else:
                open_.append((j, lp.certified_bound))
        box = margin_box(session, model, label, open_) if targets == "joint" and len(open_) > 1 else None
    if box is not None:
        rec, cex = _joint(net, x64, label, pset, model, box, backend, time_limit - (now() - t0), clock)
        results += rec
    else:
        for j, _ in open_:
            left = time_limit - (now() - t0)
            if left <= 0:
                results.append(_not_run(j))
                continue
            pre_bab = (_bab(net, x64, label, pset, model.pre, j, now() + min(left, BAB_S), now, tables,
                            t0 + time_limit) if bab else None)
            if pre_bab is not None and (pre_bab[0].status is not Status.TIMEOUT or pre_bab[1] is not None):
                results.append(pre_bab[0])
                if pre_bab[1] is not None:
                    cex = pre_bab[1]
                    break
                continue
            left = time_limit - (now() - t0)
            if left <= 0:  # the branch and bound spent the sample's time
                results.append(pre_bab[0] if pre_bab is not None else _not_run(j))
                continue
            c, c0 = model.margin(label, j)
            tol = tolerance(model.rel.lp, c, c0)
            first = min(left, QUICK_S) if conditional else left
            res = backend.solve_milp(model.target_lp(c), c, c0, first, stop_above=tol, stop_below=-tol,
                                     cutoff=CUTOFF_TOLS * tol if cutoff else None, cpu_time=cpu)
            target, point = _judge(net, x64, label, pset, model, j, res, tol)
            if target.status is Status.TIMEOUT and first < left:
                target, point = _conditioned(net, x64, label, pset, model, j, backend, lp_backend or backend,
                                             t0 + time_limit, target, clock, split, bab, tables)
            if pre_bab is not None:
                target = replace(target, time_s=target.time_s + pre_bab[0].time_s,
                                 message=f"{pre_bab[0].message}; {target.message}".strip("; "))
            results.append(target)
            if point is not None:
                cex = point
                break
    return SampleVerdict(_combine([t.status for t in results]), tuple(results), cex, model.tightening,
                         t_s, model.unstable, now() - t0, clock)


def _not_run(j: int) -> TargetResult:
    """Target ``j`` reached after the sample's time was spent."""
    return TargetResult(j, Status.TIMEOUT, -math.inf, -math.inf, math.nan, "not run", 0, 0.0,
                        message="sample time limit spent on earlier targets")


def _implications(net: Network, x64: np.ndarray, pset: Perturbation, pre, time_limit: float, deadline: float,
                  now) -> SampleImplications | None:
    """The sample's implied bounds, computed on first need from its bounds ``pre`` (valid on the
    whole set), in at most ``IMPLIED_SHARE`` of its time limit; None if the network is not a dense
    ReLU network."""
    wb = dense_relu(net)
    if wb is None:
        return None
    return SampleImplications(wb, *root_bounds(net, x64, pset, pre), IMPLIED_SHARE * time_limit, deadline, now)


def _bab(net, x64, label, pset, pre, j: int, deadline: float, now, implied: SampleImplications | None = None,
         until: float | None = None) -> tuple[TargetResult, np.ndarray | None] | None:
    """Target ``j`` by :func:`lpbench.milp.bab.bab_search` until ``deadline`` (with the sample's
    ``implied`` bounds; once they are in hand, until ``until`` if given): verified (its least
    closed-domain bound as the safe bound), falsified (a re-checked point) or timeout; None where
    the network is not a dense ReLU network."""
    found = bab_search(net, x64, label, [j], pset, pre, deadline, now, implied, until)
    if found is None:
        return None
    if found.point is not None:
        return TargetResult(j, Status.FALSIFIED, -math.inf, -math.inf, found.margin, "branch and bound",
                            found.domains, found.time_s, message=found.describe()), found.point
    if found.verified:
        return TargetResult(j, Status.VERIFIED, found.bound[j], found.bound[j], math.nan, "branch and bound",
                            found.domains, found.time_s, message=found.describe()), None
    return TargetResult(j, Status.TIMEOUT, -math.inf, -math.inf, math.nan, "branch and bound", found.domains,
                        found.time_s, message=found.describe()), None


def _conditioned(net, x64, label, pset, model: MILP, j: int, backend: Backend, lp_backend: Backend,
                 deadline: float, first: TargetResult, clock: str, split: bool = False, bab: bool = False,
                 implied: SampleImplications | None = None) -> tuple[TargetResult, np.ndarray | None]:
    """Target ``j`` again, on bounds conditioned on ``f_y - f_j <= 0`` (sound for deciding
    whether that region is empty, see :mod:`lpbench.milp.conditional`): verified if the
    certified LP over them, the branch and bound over them (``bab``, dense ReLU networks, until
    ``deadline``), or the new MILP's safe dual bound, is > 0; falsified by a re-checked point;
    else the first attempt's timeout stands, with the time of all. With ``split``
    the new MILP runs ``QUICK_S`` seconds and a target it leaves open goes to the split search
    (:mod:`lpbench.milp.split`) on the conditioned bounds for the rest of the time. The recorded
    ``safe_bound`` stays a lower bound of the margin (see the comment below). ``deadline`` is a
    reading of the ``clock`` (:data:`CLOCKS`)."""
    now = CLOCKS[clock]
    cond = conditional_bounds(net, x64, label, j, pset, model.pre, lp_backend, CONDITION_ROUNDS, deadline, now)
    spent = first.time_s + cond.time_s
    note = f"conditioned bounds: {cond.rounds} round(s), {cond.lps} LPs, {cond.time_s:.1f} s"
    if cond.proved_empty:
        return replace(first, status=Status.VERIFIED, safe_bound=max(first.safe_bound, 0.0),
                       solver_status="conditioned bounds", time_s=spent,
                       message=f"{note}; two certified bounds crossed: no point where {j} beats the label"), None
    m2 = milp(net, x64, pset, cond.pre, model.tightening + "+conditioned")
    c, c0 = m2.margin(label, j)
    with lp_backend.open(replace(m2.rel.lp, integrality=None)) as session:
        lp = session.minimize(c, c0)
    # a conditioned bound b proves the region empty when b > 0, but bounds the margin itself only
    # as min(b, 0): the safe bound kept is the best of that and the first attempt's
    if lp.status is LPStatus.OPTIMAL and lp.certified_bound > 0:
        return replace(first, status=Status.VERIFIED, safe_bound=max(first.safe_bound, 0.0),
                       solver_status="conditioned lp relaxation", time_s=spent + lp.time_s,
                       message=f"{note}; conditioned bound {lp.certified_bound:.6g}"), None
    left = deadline - now()
    if bab and left > 0:
        found = _bab(net, x64, label, pset, cond.pre, j, deadline, now, implied)
        if found is not None:
            spent += found[0].time_s
            note = f"{note}; {found[0].message}"
            if found[0].status is Status.VERIFIED:  # S_j is empty: the margin is > 0 (as above)
                return replace(first, status=Status.VERIFIED, safe_bound=max(first.safe_bound, 0.0),
                               solver_status="conditioned branch and bound", time_s=spent, message=note), None
            if found[1] is not None:
                return replace(found[0], time_s=spent, message=note), found[1]
        left = deadline - now()
    if left <= 0:
        return replace(first, time_s=spent, message=note + "; no time left for its MILP"), None
    tol = tolerance(m2.rel.lp, c, c0)
    res = backend.solve_milp(m2.target_lp(c), c, c0, min(left, QUICK_S) if split else left, stop_above=tol,
                             stop_below=-tol, cpu_time=clock == "cpu")
    if split and res.status in (MILPStatus.TIME_LIMIT, MILPStatus.INFEASIBLE) and deadline > now():
        found = split_search(net, x64, label, j, pset, cond.pre, lp_backend, deadline, now)
        spent += res.time_s + found.time_s
        verified = found.status is Status.VERIFIED
        return replace(first, status=found.status, safe_bound=max(first.safe_bound, 0.0) if verified
                       else first.safe_bound, solver_status="split search", time_s=spent,
                       nodes=max(first.nodes, 0) + found.nodes, message=f"{note}; {found.describe()}"), found.point
    if res.status is MILPStatus.INFEASIBLE:  # S_j empty by the solver's word only: not a proof
        return replace(first, status=Status.UNKNOWN, time_s=spent + res.time_s,
                       message=note + "; conditioned MILP infeasible (not taken as a proof)"), None
    target, point = _judge(net, x64, label, pset, m2, j, res, tol)
    return replace(target, safe_bound=max(first.safe_bound, min(target.safe_bound, 0.0)),
                   nodes=max(first.nodes, 0) + max(target.nodes, 0), time_s=spent + target.time_s,
                   message=f"{note}; conditioned bound {target.safe_bound:.6g}; {target.message}".strip("; ")), point


def _excludes_x(net: Network, x64: np.ndarray, pre) -> str | None:
    """Where x's own float64 pre-activations leave ``pre`` (beyond a rounding allowance of
    1e-9 (1 + |value|)), or None if they lie inside every bound."""
    h = torch.as_tensor(x64[None])
    params = net.torch_params(h.dtype, h.device)
    acts = set(net.activation_indices)
    with torch.no_grad():
        for i, layer in enumerate(net.layers):  # one pass, checking each activation's input
            if i in acts:
                z = h.numpy().ravel()
            h = apply_layer(layer, params[i], h)
            if i not in acts:
                continue
            lo, hi = (np.asarray(b, np.float64).ravel() for b in pre[i])
            slack = 1e-9 * (1.0 + np.abs(z))
            bad = np.flatnonzero((z < lo - slack) | (z > hi + slack))
            if bad.size:
                k = int(bad[0])
                return (f"layer {i}, neuron {k}: x gives {z[k]:.6g}, bounds [{lo[k]:.6g}, {hi[k]:.6g}] "
                        f"({bad.size} neuron(s) outside)")
    return None


def _joint(net, x64, label, pset, model: MILP, box: list[tuple[int, float, float]], backend: Backend,
           left: float, clock: str) -> tuple[list[TargetResult], np.ndarray | None]:
    """The targets of ``box`` decided by one :func:`joint_milp`. The record of the first target
    carries the solve; the others say they were decided with it."""
    if left <= 0:
        return [TargetResult(j, Status.TIMEOUT, -math.inf, -math.inf, math.nan, "not run", 0, 0.0,
                             message="sample time limit spent") for j, _, _ in box], None
    full, obj = joint_milp(model, label, box)
    tol = tolerance(full, obj, 0.0)
    res = backend.solve_milp(full, obj, 0.0, left, stop_above=tol, stop_below=-tol, cpu_time=clock == "cpu")
    first, point = _judge(net, x64, label, pset, model, box[0][0], res, tol)
    rest = Status.UNKNOWN if first.status is Status.FALSIFIED else first.status
    others = [replace(first, target=j, status=rest, nodes=0, time_s=0.0,
                      message=f"joint MILP with target {box[0][0]}") for j, _, _ in box[1:]]
    return [first, *others], point


def _judge(net, x64, label, pset, model: MILP, j: int, res: MILPResult, tol: float
           ) -> tuple[TargetResult, np.ndarray | None]:
    safe = res.dual_bound - tol if math.isfinite(res.dual_bound) else -math.inf
    base = dict(target=j, safe_bound=safe, dual_bound=res.dual_bound, incumbent=res.objective,
                solver_status=res.status.value, nodes=res.nodes, time_s=res.time_s)
    if res.status in (MILPStatus.INFEASIBLE, MILPStatus.ERROR):
        why = ("MILP infeasible although x itself is feasible: the pre-activation bounds "
               f"({model.tightening}) exclude the real trajectory or the solver failed"
               if res.status is MILPStatus.INFEASIBLE else "solver error")
        return TargetResult(status=Status.ERROR, message=f"{why}; target {j}, {model.unstable} binaries, "
                            f"solver says: {res.message}", **base), None
    spurious = False
    if res.primal is not None and res.objective < 0:
        inp = model.rel.block(-1, "input")
        cand = res.primal[inp.slice].reshape(net.input_shape)
        point, _, ok = recheck(net, cand, x64, label, pset)
        if ok:
            return TargetResult(status=Status.FALSIFIED, **base), point
        spurious = True
    if safe > 0:
        status = Status.VERIFIED
    elif res.status is MILPStatus.TIME_LIMIT:
        status = Status.TIMEOUT
    else:
        status = Status.UNKNOWN
    return TargetResult(status=status, spurious=spurious, message=res.message, **base), None


def _combine(statuses: list[Status]) -> Status:
    for s in (Status.FALSIFIED, Status.ERROR):
        if s in statuses:
            return s
    if statuses and all(s is Status.VERIFIED for s in statuses):
        return Status.VERIFIED
    return Status.TIMEOUT if Status.TIMEOUT in statuses else Status.UNKNOWN

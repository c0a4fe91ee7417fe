"""Bounds conditioned on a counterexample: per-neuron LP bounds over the part of the input set
where target ``j`` beats the label.

A target's MILP only has to decide whether ``S_j = {x' in the set : f_y(x') - f_j(x') <= 0}`` is
empty. Every pre-activation bound that holds on ``S_j`` alone is as good as a global one for that
question: the MILP built from such bounds still contains every point of ``S_j`` exactly, so if its
proved minimum margin is > 0 then ``S_j`` is empty (verified), and a re-checked incumbent below 0 is
a counterexample as before. The bounds come from the triangle-relaxation LP of the whole network
plus the row ``f_y - f_j <= 0``, minimising and maximising each unstable pre-activation, layer by
layer, rebuilding the relaxation every ``REBUILD_EVERY`` neurons so that later LPs use the tighter
bounds, round after round until a round leaves as many unstable neurons as it found (a neuron made
stable on ``S_j`` tightens the triangles of the next round, so the rounds can cascade: on NOR-MLP-B
at 0.02, image 964, target 4, seven rounds take the 134 unstable neurons to 77 and then prove
``S_j`` empty). Neurons of the last activation layer that enter the margin with a coefficient
>= 0 are skipped: the margin needs neither their bounds nor their binaries
(:meth:`lpbench.lp.formulation.Relaxation.convex_outputs`). Every bound is
the LP's dual-certified bound, so it holds for every real point of ``S_j``. When the LP turns out
infeasible the round stops: ``S_j`` is (up to the solver's word) empty; that counts as proved only
when a certified phase-one LP confirms it, and otherwise the caller proves it with a certified LP
or the MILP, never on the solver's infeasibility claim alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lpbench.lp.drivers import PreBounds
from lpbench.lp.formulation import decisive, relaxation
from lpbench.network import Network
from lpbench.problem import Perturbation
from lpbench.solvers.base import Backend, LinearProgram, LPStatus


#: Neurons tightened between two rebuilds of the relaxation: every tenth LP pair sees the bounds
#: the earlier ones found (on NOR-MLP-B at 0.02 this halves the rounds to a fixed point).
REBUILD_EVERY = 10


@dataclass(frozen=True, eq=False)
class Conditioned:
    """Bounds valid on ``S_j``; ``empty_hint`` when an LP came back infeasible or two bounds
    crossed (``S_j`` likely empty); ``proved_empty`` when that is proved: two certified bounds
    crossed (no point of ``S_j`` fits between them), or the infeasible LP's certified phase-one
    LP says so (:meth:`lpbench.solvers.base.Backend.proves_infeasible`). ``rounds`` run, ``lps``
    solved, ``time_s``."""

    pre: PreBounds
    empty_hint: bool
    rounds: int
    lps: int
    time_s: float
    proved_empty: bool = False


def conditional_bounds(net: Network, x: np.ndarray, label: int, target: int, pset: Perturbation,
                       pre: PreBounds, backend: Backend, rounds: int = 2,
                       deadline: float | None = None, clock=time.perf_counter, compact: bool = True) -> Conditioned:
    """Tighten ``pre`` (sound for the whole set) to bounds sound on ``S_target`` (module doc):
    at most ``rounds`` rounds, ending early after a round that leaves as many unstable neurons as
    it found; stops at ``deadline`` (a reading of ``clock``) between LPs. ``compact=False``: see
    :func:`lpbench.milp.formulation.milp` (for bounds that record splits)."""
    t0 = clock()
    pre = {k: (np.array(lo, np.float64), np.array(hi, np.float64)) for k, (lo, hi) in pre.items()}
    lps, done = 0, 0

    def unstable() -> int:
        return sum(int(((lo < 0) & (hi > 0)).sum()) for lo, hi in pre.values())

    rel, cond = _conditioned_lp(net, x, label, target, pset, pre, compact)
    needless = rel.convex_outputs(rel.margin(label, target)[0])  # the same for any bounds
    session, stale = None, False  # stale: bounds found since ``cond`` was built
    try:
        for _ in range(rounds):
            before = unstable()
            for i in net.activation_indices:
                lo, hi = pre[i][0].ravel().copy(), pre[i][1].ravel().copy()
                todo = decisive(i, (lo < 0) & (hi > 0), needless)  # the others' bounds decide nothing
                block = rel.block(i, "pre")
                for n, k in enumerate(np.flatnonzero(todo)):
                    if n % REBUILD_EVERY == 0 and stale:  # the LPs to come use the bounds found so far
                        pre[i] = (lo.reshape(pre[i][0].shape), hi.reshape(pre[i][1].shape))
                        rel, cond = _conditioned_lp(net, x, label, target, pset, pre, compact)
                        block, stale = rel.block(i, "pre"), False
                        session.update(cond)  # where only numbers changed, the solver keeps its basis
                    if session is None:
                        session = backend.open(cond)
                    if deadline is not None and clock() > deadline:
                        return Conditioned(pre, False, done, lps, clock() - t0)
                    e = np.zeros(cond.n_vars)
                    e[block.start + k] = 1.0
                    for sign in (1.0, -1.0):
                        res = session.minimize(sign * e, 0.0)
                        lps += 1
                        if res.status is LPStatus.INFEASIBLE:
                            return Conditioned(pre, True, done + 1, lps, clock() - t0,
                                               proved_empty=backend.proves_infeasible(cond))
                        if res.status is LPStatus.OPTIMAL and np.isfinite(res.certified_bound):
                            if sign > 0 and res.certified_bound > lo[k]:
                                lo[k], stale = res.certified_bound, True
                            elif sign < 0 and -res.certified_bound < hi[k]:
                                hi[k], stale = -res.certified_bound, True
                        if lo[k] >= 0:  # stable (active) on S_j: its upper bound decides no binary
                            break
                    if lo[k] > hi[k]:  # two certified bounds crossed: S_j is empty
                        return Conditioned(pre, True, done + 1, lps, clock() - t0, proved_empty=True)
                pre[i] = (lo.reshape(pre[i][0].shape), hi.reshape(pre[i][1].shape))
            done += 1
            if unstable() >= before:
                break
    finally:
        if session is not None:
            session.close()
    return Conditioned(pre, False, done, lps, clock() - t0)


def _conditioned_lp(net: Network, x: np.ndarray, label: int, target: int, pset: Perturbation, pre: PreBounds,
                    compact: bool = True):
    """The relaxation over ``pre`` and its LP with the row ``f_label - f_target <= 0`` added."""
    rel = relaxation(net, x, pset, pre, compact=compact)
    c, c0 = rel.margin(label, target)
    lp = rel.lp
    return rel, LinearProgram(sp.vstack([lp.a, sp.csr_matrix(c[None])]).tocsr(), np.append(lp.row_lo, -np.inf),
                              np.append(lp.row_hi, -c0), lp.var_lo, lp.var_hi, None)

"""A branch and bound on ReLU splits for one target whose MILP stays open: every node gets bounds
conditioned on its counterexample region, which make many of its neurons stable.

The region of a target ``j`` is ``S_j = {x' in the set : f_y(x') - f_j(x') <= 0}``; the target is
verified iff ``S_j`` is empty (:mod:`lpbench.milp.conditional`). A node is a set of pre-activation
bounds valid on ``S_j`` intersected with the node's part of the input set; splitting an unstable
neuron ``z`` of it gives the two children ``z <= 0`` (upper bound 0) and ``z >= 0`` (lower bound 0),
whose parts cover the parent's. The relaxations keep the rows of stable inactive neurons
(``compact=False``), so both halves of a split are constraints on the input, not only bounds. At
every node:

1. the bounds are conditioned on ``S_j`` round after round
   (:func:`~lpbench.milp.conditional.conditional_bounds`): a split makes neurons stable, which
   tightens the triangles, which makes more neurons stable;
2. the node is closed when two of those certified bounds cross (no point of ``S_j`` in it), or
   when the triangle relaxation's margin LP has a dual-certified bound > 0;
   otherwise its optimal point is re-checked (float64 forward pass) as a counterexample;
3. else the node is split on an unstable neuron of its earliest layer that has one: the one the
   LP's optimum uses most (largest ``x - max(z, 0)``, the triangle's slack), else the widest
   triangle.

The target is verified when every node is closed, falsified by the first re-checked point, and
otherwise open (timeout at the deadline). A node whose LP the solver calls infeasible is closed
only when :meth:`~lpbench.solvers.base.Backend.proves_infeasible` certifies it; such a node, or
one with no unstable neuron left and a point that fails the re-check (a tie at 0), is otherwise
left open, never closed on the solver's word. Neurons of the last layer that the margin needs
no binary for (:meth:`~lpbench.lp.formulation.Relaxation.convex_outputs`) are never split. On
NOR-MLP-B at 0.02 the hardest targets of test images 2905 and 6609 closed here with 11 and 15
split nodes, and the samples took 49 and 173 CPU-s (75 and 252 with 9 and 13 nodes before those
neurons lost their binaries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lpbench.attacks.pgd import recheck
from lpbench.lp.drivers import PreBounds
from lpbench.lp.formulation import Relaxation, decisive, relaxation
from lpbench.milp.conditional import conditional_bounds
from lpbench.network import Network
from lpbench.problem import Perturbation, Status
from lpbench.solvers.base import Backend, LPStatus

#: The most rounds of conditioned bounds per node.
NODE_ROUNDS = 20


@dataclass(frozen=True, eq=False)
class SplitResult:
    """``status``: verified, falsified (``point`` re-checked), timeout or unknown; ``nodes``
    processed, ``closed`` by crossed bounds or their certified LP, left ``open`` (unproved
    infeasibility claims, ties), the deepest split ``depth``, ``time_s`` on the caller's clock."""

    status: Status
    point: np.ndarray | None
    nodes: int
    closed: int
    open: int
    depth: int
    time_s: float

    def describe(self) -> str:
        return (f"split search: {self.nodes} nodes ({self.closed} closed, {self.open} left open), "
                f"depth {self.depth}, {self.time_s:.1f} s")


def split_search(net: Network, x: np.ndarray, label: int, target: int, pset: Perturbation, pre: PreBounds,
                 lp_backend: Backend, deadline: float, now: Callable[[], float]) -> SplitResult:
    """Decide target ``target`` of ``x`` from bounds ``pre`` valid on its counterexample region
    (module doc); ``deadline`` is a reading of ``now``."""
    t0 = now()
    x64 = np.asarray(x, np.float64)
    stack: list[tuple[PreBounds, int]] = [(pre, 0)]
    nodes = closed = left_open = depth = 0

    def result(status: Status, point: np.ndarray | None = None) -> SplitResult:
        return SplitResult(status, point, nodes, closed, left_open, depth, now() - t0)

    while stack:
        if now() > deadline:
            return result(Status.TIMEOUT)
        bounds, d = stack.pop()
        nodes, depth = nodes + 1, max(depth, d)
        cond = conditional_bounds(net, x64, label, target, pset, bounds, lp_backend, NODE_ROUNDS, deadline, now,
                                  compact=False)
        if cond.proved_empty:
            closed += 1
            continue
        bounds = cond.pre
        rel = relaxation(net, x64, pset, bounds, compact=False)
        c, c0 = rel.margin(label, target)
        with lp_backend.open(rel.lp) as session:
            lp = session.minimize(c, c0)
        if lp.status is LPStatus.OPTIMAL and lp.certified_bound > 0:
            closed += 1
            continue
        if lp.primal is None:  # closed only if a certified phase-one LP proves the LP infeasible
            if lp.status is LPStatus.INFEASIBLE and lp_backend.proves_infeasible(rel.lp):
                closed += 1
            else:
                left_open += 1
            continue
        cand = lp.primal[rel.block(-1, "input").slice].reshape(net.input_shape)
        point, _, ok = recheck(net, cand, x64, label, pset)
        if ok:
            return result(Status.FALSIFIED, point)
        split = _branch(net, rel, bounds, lp.primal, rel.convex_outputs(c))
        if split is None:  # no neuron to split: the LP is exact here, its optimum 0 within rounding
            left_open += 1
            continue
        layer, k = split
        for side in ("inactive", "active"):
            lo, hi = (np.array(b, np.float64) for b in bounds[layer])
            (hi if side == "inactive" else lo).reshape(-1)[k] = 0.0
            stack.append(({**bounds, layer: (lo, hi)}, d + 1))
    return result(Status.UNKNOWN if left_open else Status.VERIFIED)


def _branch(net: Network, rel: Relaxation, bounds: PreBounds, primal: np.ndarray,
            needless: tuple[int, np.ndarray] | None = None) -> tuple[int, int] | None:
    """(layer, neuron) to split, None without an unstable neuron that needs a split (those of
    ``needless``, see :meth:`lpbench.lp.formulation.Relaxation.convex_outputs`, do not: the LP
    is exact on them): in the earliest activation layer with one, the neuron with the largest
    triangle slack ``x - max(z, 0)`` at the LP optimum, else the widest triangle (largest
    ``-l u / (u - l)``)."""
    for i in net.activation_indices:
        lo, hi = (np.ravel(b) for b in bounds[i])
        unstable = decisive(i, (lo < 0) & (hi > 0), needless)
        if not unstable.any():
            continue
        z = primal[rel.block(i, "pre").slice]
        post = primal[rel.block(i, "post").slice]
        slack = np.where(unstable, post - np.maximum(z, 0.0), -np.inf)
        if slack.max() > 1e-9:
            return i, int(np.argmax(slack))
        width = np.where(unstable, -lo * hi / np.where(unstable, hi - lo, 1.0), -np.inf)
        return i, int(np.argmax(width))
    return None

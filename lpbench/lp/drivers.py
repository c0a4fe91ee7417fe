"""HOW LP bounds travel: the per-neuron LPs of LP-ALL and LP-LAST (Salman et al. 2019, Section 5.1).

One routine, :func:`solve_sample`, with a policy saying which activation layers get LP bounds:

* step A, for each chosen layer in order: the lower and upper bound of every pre-activation by its
  own LP over the triangle relaxation of the layers before it, with the bounds found so far;
* step B: ``min f_y - f_j`` over the full relaxation for every ``j != y``.

LP-ALL chooses every activation layer but the first (whose bounds are exact intervals of the input
box); LP-LAST chooses none and starts from the LP-GREEDY bounds (Algorithm 1 of Wong & Kolter
2018). Neurons a cheaper sound method already proves stable get no LP: their exact bound would only
add a redundant constraint, so the LP optimum is the same. Likewise once an LP shows a neuron's
upper bound <= 0 (or lower bound >= 0) the other side is redundant and is not solved. Every LP value
used is the certified dual bound of :mod:`lpbench.solvers.certify`; an LP that does not end optimal
leaves the cheaper bound in place (intermediate) or no margin at all (step B).

Speed: the LPs of one layer share one model (the relaxation of the prefix before it) and differ
only in the objective, so a backend session re-solves them warm (HiGHS: dual simplex from the last
basis); they are ordered so that consecutive objectives are similar.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from lpbench.bounds.propagate import Bounds, interval_bounds, linear_bounds
from lpbench.lp.formulation import Relaxation, relaxation
from lpbench.network import Network
from lpbench.problem import Perturbation
from lpbench.solvers.base import Backend, LinearProgram, LPStatus, Session

PreBounds = dict[int, tuple[np.ndarray, np.ndarray]]

#: The cheap sound bound methods whose pre-activation bounds LP-ALL intersects, in the order a
#: cascade asks them (and their policy for :func:`linear_bounds`; None = interval propagation).
CHEAP = {"lp-greedy": "same-slope", "crown": "adaptive", "ibp": None}


@dataclass(frozen=True, eq=False)
class CheapBounds:
    """Bounds of a batch from the cheap methods: ``pre`` the elementwise intersection of their
    pre-activation bounds, ``greedy_pre`` LP-GREEDY's own, ``lower[name]`` each method's (B, m)
    margin lower bounds."""

    pre: dict[int, tuple[np.ndarray, np.ndarray]]
    greedy_pre: dict[int, tuple[np.ndarray, np.ndarray]]
    lower: dict[str, np.ndarray]


def cheap_bounds(net: Network, x: torch.Tensor, pset: Perturbation, spec: torch.Tensor) -> CheapBounds:
    """IBP, CROWN and LP-GREEDY on a float64 batch ``x`` with margin specification ``spec``."""
    out: dict[str, Bounds] = {}
    with torch.no_grad():
        for name, policy in CHEAP.items():
            out[name] = (interval_bounds(net, x, pset, spec) if policy is None
                         else linear_bounds(net, x, pset, spec, policy))
    pre = {}
    for i in net.activation_indices:
        lo = torch.stack([b.pre[i][0] for b in out.values()]).amax(0)
        hi = torch.stack([b.pre[i][1] for b in out.values()]).amin(0)
        pre[i] = (lo.cpu().numpy(), hi.cpu().numpy())
    greedy = {i: (lo.cpu().numpy(), hi.cpu().numpy()) for i, (lo, hi) in out["lp-greedy"].pre.items()}
    return CheapBounds(pre, greedy, {k: b.lower.cpu().numpy() for k, b in out.items()})


def verified_by(cb: CheapBounds, row: int, label: int, methods=tuple(CHEAP)) -> str | None:
    """The first cheap method among ``methods`` (in ``CHEAP`` order) whose margin lower bounds of
    batch row ``row`` are all > 0, the label's own row left out; None if none verifies it."""
    for name in (m for m in CHEAP if m in methods):
        if np.delete(cb.lower[name][row], label).min() > 0:
            return name
    return None


@dataclass(frozen=True)
class LPCounts:
    """What the LPs of one sample cost: solved, skipped (stable neuron or redundant side), failed
    (non-optimal), intermediate bounds that kept the cheap bound, simplex iterations, statuses."""

    solved: int = 0
    skipped: int = 0
    failed: int = 0
    fallbacks: int = 0
    iterations: int = 0
    statuses: tuple[tuple[str, int], ...] = ()

    def __add__(self, other: "LPCounts") -> "LPCounts":
        statuses = dict(self.statuses)
        for k, v in other.statuses:
            statuses[k] = statuses.get(k, 0) + v
        return LPCounts(self.solved + other.solved, self.skipped + other.skipped, self.failed + other.failed,
                        self.fallbacks + other.fallbacks, self.iterations + other.iterations,
                        tuple(sorted(statuses.items())))


class _Tally:
    """The mutable counter behind :class:`LPCounts` while a sample is solved."""

    def __init__(self) -> None:
        self.solved = self.skipped = self.failed = self.fallbacks = self.iterations = 0
        self.statuses: dict[str, int] = {}

    def add(self, status: LPStatus, iterations: int) -> None:
        self.solved += 1
        self.iterations += iterations
        self.statuses[status.value] = self.statuses.get(status.value, 0) + 1
        self.failed += status is not LPStatus.OPTIMAL

    def freeze(self) -> LPCounts:
        return LPCounts(self.solved, self.skipped, self.failed, self.fallbacks, self.iterations,
                        tuple(sorted(self.statuses.items())))


@dataclass(frozen=True, eq=False)
class SampleResult:
    """Step B of one sample: ``margins[j]`` a certified lower bound of f_y - f_j over the set
    (NaN at j = y and where the LP did not end optimal, ``status[j]`` says why); ``pre`` the
    pre-activation bounds the margin LPs used."""

    margins: np.ndarray
    status: tuple[str, ...]
    pre: PreBounds
    counts: LPCounts
    time_s: float

    def stats(self) -> dict[str, Any]:
        c = self.counts
        return {"lps_solved": c.solved, "lps_skipped": c.skipped, "lps_failed": c.failed,
                "bound_fallbacks": c.fallbacks, "simplex_iterations": c.iterations,
                "lp_statuses": dict(c.statuses)}


def lp_layers(net: Network, policy: str) -> tuple[int, ...]:
    """Activation layers whose bounds come from LPs: ``"all"`` (LP-ALL) or ``"last"`` (LP-LAST)."""
    if policy == "all":
        return net.activation_indices[1:]
    if policy == "last":
        return ()
    raise ValueError(f"unknown LP layer policy {policy!r}; choose 'all' or 'last'")


class Sessions:
    """Open LP sessions, one per network prefix, moved from LP to LP (use as a context manager).
    Uniform relaxations of one prefix share rows, columns and sparsity across samples, so HiGHS
    only updates numbers and warm-starts from the last basis; compact ones (the default: fewer
    nonzeros, a third less time per LP on MLP-B) reload the model per sample and prefix."""

    def __init__(self, backend: Backend, time_limit: float | None = None) -> None:
        self.backend, self.time_limit = backend, time_limit
        self._open: dict[int, Session] = {}

    def get(self, key: int, lp: LinearProgram) -> Session:
        s = self._open.get(key)
        if s is None:
            s = self._open[key] = self.backend.open(lp, self.time_limit)
        else:
            s.update(lp)
        return s

    def close(self) -> None:
        for s in self._open.values():
            s.close()
        self._open.clear()

    def __enter__(self) -> "Sessions":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def solve_sample(net: Network, x: np.ndarray, label: int, pset: Perturbation, pre: PreBounds,
                 layers: Sequence[int], sessions: Sessions, compact: bool = True) -> SampleResult:
    """Steps A (for ``layers``, in order) and B for one sample ``x`` from the bounds ``pre``."""
    t0 = time.perf_counter()
    counts = _Tally()
    pre = {i: (np.array(lo, np.float64), np.array(hi, np.float64)) for i, (lo, hi) in pre.items()}
    for i in layers:
        lo, hi = (t.ravel().copy() for t in pre[i])
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        counts.skipped += 2 * (lo.size - unstable.size)
        if unstable.size:
            rel = relaxation(net, x, pset, {k: v for k, v in pre.items() if k < i}, i, compact)
            _tighten(sessions.get(i, rel.lp), rel, lo, hi, unstable, counts)
            pre[i] = (lo.reshape(pre[i][0].shape), hi.reshape(pre[i][0].shape))
    rel = relaxation(net, x, pset, pre, compact=compact)
    session = sessions.get(len(net.layers), rel.lp)
    n = net.n_classes
    margins, status = np.full(n, np.nan), ["" for _ in range(n)]
    for j in range(n):
        if j == label:
            continue
        spec = np.zeros(n)
        spec[label], spec[j] = 1.0, -1.0
        res = session.minimize(*rel.objective(spec))
        counts.add(res.status, res.iterations)
        status[j] = res.status.value
        if res.status is LPStatus.OPTIMAL:
            margins[j] = res.certified_bound
    return SampleResult(margins, tuple(status), pre, counts.freeze(), time.perf_counter() - t0)


def tighten_neurons(net: Network, x: np.ndarray, pset: Perturbation, pre: PreBounds, layer: int,
                    neurons: np.ndarray, backend: Backend, time_limit: float | None = None,
                    compact: bool = True) -> tuple[np.ndarray, np.ndarray, LPCounts]:
    """Step A for a slice of one layer, as a cluster task solves it: the LP bounds of the
    (flat) ``neurons`` of activation layer ``layer`` over the relaxation of the layers before
    it, from the bounds ``pre``. Returns their (lower, upper) bounds and the LP counts; the
    slices of a layer together give what :func:`solve_sample` computes for it."""
    counts = _Tally()
    lo, hi = (np.array(t, np.float64).ravel() for t in pre[layer])
    neurons = np.asarray(neurons, np.int64)
    unstable = neurons[(lo[neurons] < 0) & (hi[neurons] > 0)]
    counts.skipped += 2 * (neurons.size - unstable.size)
    if unstable.size:
        rel = relaxation(net, x, pset, {k: v for k, v in pre.items() if k < layer}, layer, compact)
        with backend.open(rel.lp, time_limit) as session:
            _tighten(session, rel, lo, hi, unstable, counts)
    return lo[neurons], hi[neurons], counts.freeze()


def _chain(rows: sp.csr_matrix, signs: np.ndarray, limit: int = 2000) -> np.ndarray:
    """An order of the objectives ``signs[k] * rows[k]`` in which each is followed by the most
    similar remaining one (cosine), so a warm-started simplex has little to change; the plain
    order beyond ``limit`` objectives (the similarity matrix would be large)."""
    k = rows.shape[0]
    if k <= 2 or k > limit:
        return np.arange(k)
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
    r = sp.diags(signs / np.maximum(norms, 1e-300)) @ rows
    sim = (r @ r.T).toarray()
    order, free = [0], np.ones(k, bool)
    free[0] = False
    for _ in range(k - 1):
        nxt = int(np.argmax(np.where(free, sim[order[-1]], -np.inf)))
        order.append(nxt)
        free[nxt] = False
    return np.asarray(order)


def _tighten(session: Session, rel: Relaxation, lo: np.ndarray, hi: np.ndarray,
             unstable: np.ndarray, counts: _Tally) -> None:
    """Step A for one layer, in place: an LP per side of every unstable neuron of ``h_upto``.

    First, for every neuron, the side more likely to make it stable (the one nearer zero); then
    the other side of the neurons still unstable (a stable neuron's other bound is redundant).
    Consecutive LPs of one pass have similar objectives, which keeps the warm starts short."""
    first = np.where(hi[unstable] < -lo[unstable], -1.0, 1.0)
    order = _chain(rel.out_map[unstable], first)
    unstable, first = unstable[order], first[order]
    for sides in (first, -first):
        for j, side in zip(unstable, sides):
            if lo[j] >= 0 or hi[j] <= 0:
                counts.skipped += 1
                continue
            res = session.minimize(*rel.neuron(j, side))
            counts.add(res.status, res.iterations)
            if res.status is not LPStatus.OPTIMAL:
                counts.fallbacks += 1
            elif side > 0:
                lo[j] = max(lo[j], res.certified_bound)
            else:
                hi[j] = min(hi[j], -res.certified_bound)

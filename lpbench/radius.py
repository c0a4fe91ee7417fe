"""Certified and attacked radii by bracketing and bisection (Salman et al. 2019, Section 6.2).

For one sample and one method, the *certified radius* is the largest epsilon at which the method
verifies the sample; the *attacked radius* the smallest epsilon at which an attack (PGD) finds a
re-checked adversarial example. Both are found by bisection on a bracket ``[lo, hi]``:

* certification: ``lo`` is the largest probed epsilon that was verified (0 when none), ``hi`` the
  smallest probed epsilon above ``lo`` that was not. The reported radius is ``lo``, an epsilon at
  which the method *did* verify the sample, so the number is a valid certificate even where the
  method is not monotone in epsilon (the search then may stop short of the largest such epsilon).
  LP-ALL, LP-LAST, LP-GREEDY and IBP are monotone: a smaller ball gives smaller intermediate
  intervals, hence a relaxation contained in the larger one's. CROWN's adaptive slopes carry no
  such guarantee; bisection assumes it.
* attack: ``hi`` is the smallest probed epsilon where the attack succeeded (the reported radius,
  a concrete adversarial example lies within it), ``lo`` the largest failed probe below it.
* exact (a complete method, the MILP, bracketing the minimum distortion itself): ``lo`` the
  largest verified epsilon, ``hi`` the smallest falsified one (a re-checked counterexample), and
  the probes in between that timed out (or ended unknown) are *open*: they bound nothing, and the
  search goes on around them, first below the lowest open probe (raising ``lo``), then above the
  highest (where a falsified probe lowers ``hi``, a verified one raises ``lo``); a spare worker
  (:meth:`Bracket.spare`) takes the gap above once the probes in flight below leave no piece of
  theirs wider than the tolerance. A certify search reads a timeout as a failure and bisects
  below it, so its upper end stays at its first timeout or the attacked radius, however far the
  minimum distortion lies from it.

  With ``top`` (its ``hi`` is an attacked radius), the exact search's first probe is
  ``hi - tol``, just under the attack's counterexample, and it bisects from there: an exact
  answer needs a verified probe within ``tol`` below the distortion, the dearest probe of any
  search (the branch and bound's tree grows steeply towards the distortion), and where the
  attack found the distortion itself that one probe settles it. Where it is falsified, ``hi``
  drops to it and the bisection goes on as without ``top``; where it is open, the search bisects
  below it. On the MLP-2-100 models, 7 of the 19 exact searches with a radius above 0 ended at
  PGD's radius; a falsified MILP probe took 1.7 s (ADV), 0.8 s (LPD) and 26 s (NOR) at the
  median. Just under a distortion a counterexample is as hard to find as a proof: on
  NOR-MLP-2-100 (3,600 s per probe) the first probes of images 5845 and 4432 were falsified
  after 1,655 and 2,416 s, 6341's after 27 s. The MILP method's targeted PGD
  (:mod:`lpbench.attacks.targeted`) now finds the counterexamples of the first two in a tenth of
  a second: the probes that stay dear are those between the distortion and the smallest epsilon
  that attack breaks.

An exact search also passes per-target verdicts down: a target whose margin a probe bounded
above 0 (its outcome's ``margin_lower``) is proved at every smaller epsilon too, since the
perturbation sets around one ``x`` are nested, so a probe below it gives the method those targets
and bounds as its option ``proved`` (the MILP's, :mod:`lpbench.milp.methods`) and the method
spends its time limit on the others. A probe that timed out near the distortion after proving
the easy targets leaves the next probe below it the whole limit for the hard one.

The search stops when ``hi - lo <= tol`` (exact: or when both gaps around the open probes are
within ``tol``, or :data:`MAX_OPEN` probes are open). Probes are kept as ``{eps: success}`` so that a search
can be replayed from stored outcomes (see :mod:`lpbench.experiments.table2`) and resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.problem import Outcome, Perturbation, Status

#: Default absolute tolerance of the bisection (Table 2 reports epsilon x 1e-3 to one decimal).
TOL = 1e-4
#: What an exact search's probe says when it timed out or ended unknown: nothing about either end.
OPEN = "open"
#: An exact search stops once this many open probes lie inside its bracket: near the minimum
#: distortion every probe may time out (NOR-MLP-2-100 at 60 s per probe), and each costs the limit.
MAX_OPEN = 8
KINDS = ("certify", "attack", "exact")


@dataclass(frozen=True)
class Bracket:
    """``lo <= radius <= hi`` from the probes so far; ``kind`` one of :data:`KINDS`; ``open``
    (exact) the open probes strictly between ``lo`` and ``hi``, ascending; ``hi_probed`` (exact)
    whether ``hi`` is one of the method's falsified probes."""

    lo: float
    hi: float
    kind: str
    open: tuple[float, ...] = ()
    #: exact: ``hi`` is a falsified probe of the method itself (not the initial, attacked end)
    hi_probed: bool = False

    @property
    def radius(self) -> float:
        """The reported radius: the verified ``lo`` (certify, exact) or the attacked ``hi`` (attack)."""
        return self.hi if self.kind == "attack" else self.lo

    def done(self, tol: float) -> bool:
        if self.kind == "exact":
            return self._gap(tol) is None
        return not math.isfinite(self.hi) or self.hi - self.lo <= tol

    def _gaps(self, tol: float) -> list[tuple[float, float]]:
        """Exact: the gaps wider than ``tol`` still to probe, in the order the search takes them:
        below the lowest open probe, then above the highest; none once ``hi`` is not finite or
        :data:`MAX_OPEN` probes are open."""
        tol = tol * (1 + 1e-9)  # a gap of tol computed as a difference is not left open by rounding
        if not math.isfinite(self.hi) or self.hi - self.lo <= tol or len(self.open) >= MAX_OPEN:
            return []
        gaps = [(self.lo, self.open[0] if self.open else self.hi)]
        if self.open:
            gaps.append((self.open[-1], self.hi))
        return [g for g in gaps if g[1] - g[0] > tol]

    def _gap(self, tol: float) -> tuple[float, float] | None:
        """Exact: the gap to probe next (the first of :meth:`_gaps`), None when there is none."""
        gaps = self._gaps(tol)
        return gaps[0] if gaps else None

    def next_probe(self, tol: float, grow: float | None = None, top: bool = False) -> float | None:
        """The midpoint to probe next, or None when the bracket is narrow enough. ``grow``
        (certify, ``lo > 0``): probe at most ``grow * lo``, galloping up from a certified radius
        instead of halving a wide bracket; for methods whose cost rises steeply with epsilon
        (LP-ALL, LP-LAST, the MILP) the probes far above the radius are the expensive ones.
        ``top`` (exact, ``hi`` an attacked radius): ``hi - tol`` first, while no probe of the
        method falsified and none at or above it is open (module doc)."""
        if self.done(tol):
            return None
        if (top and self.kind == "exact" and not self.hi_probed
                and not (self.open and self.open[-1] >= self.hi - tol)):
            return self.hi - tol  # inside (lo, hi): the bracket is wider than tol
        a, b = self._gap(tol) if self.kind == "exact" else (self.lo, self.hi)
        mid = 0.5 * (a + b)
        if grow is not None and self.kind != "attack" and a == self.lo and self.lo > 0:
            return min(mid, grow * self.lo)
        return mid

    def spare(self, tol: float, pending: Sequence[float]) -> float | None:
        """Exact: one more probe while the probes at ``pending`` run, for a worker that would
        otherwise wait: the midpoint of the widest piece of the gap :meth:`next_probe` takes,
        cut at the pending epsilons inside it, or where every piece of that gap is within ``tol``,
        of the gap above the open probes; None when done or no piece is wider than ``tol``.
        Two idle workers on one search probe its gap at 1/2 and 1/4 (then wherever the first
        to return leaves the widest piece), where bisection would probe at 1/2 only."""
        for a0, b0 in self._gaps(tol) if self.kind == "exact" else []:
            cuts = [a0, *sorted(e for e in pending if a0 < e < b0), b0]
            a, b = max(zip(cuts, cuts[1:]), key=lambda p: p[1] - p[0])
            if b - a > tol * (1 + 1e-9):
                return 0.5 * (a + b)
        return None


def bracket(probes: Mapping[float, bool | str], lo: float, hi: float, kind: str) -> Bracket:
    """The bracket implied by ``probes`` (eps -> :func:`success`) inside the initial ``[lo, hi]``.

    ``success`` means verified (certify) or adversarial example found (attack). For certify, the
    initial ``lo`` must be an epsilon known to be certified (0, or a dominated method's radius)
    and ``hi`` one known not to be (an attacked radius, or the search limit); for attack, ``hi``
    an epsilon with a known adversarial example (or inf) and ``lo`` one without. For exact, ``lo``
    as for certify and ``hi`` an epsilon with a known adversarial example (or the search limit);
    True is verified, False falsified and :data:`OPEN` neither."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "exact":
        lo = max([lo, *(e for e, ok in probes.items() if ok is True)])
        falsified = [e for e, ok in probes.items() if ok is False]
        hi = max(lo, min([hi, *falsified]))
        return Bracket(float(lo), float(hi), kind,
                       tuple(sorted(float(e) for e, ok in probes.items() if ok == OPEN and lo < e < hi)),
                       hi in falsified)
    if kind == "certify":
        lo = max([lo, *(e for e, ok in probes.items() if ok)])
        hi = min([hi, *(e for e, ok in probes.items() if not ok and e > lo)])
        hi = max(hi, lo)
    else:
        hi = min([hi, *(e for e, ok in probes.items() if ok)])
        lo = max([lo, *(e for e, ok in probes.items() if not ok and e < hi)])
    return Bracket(float(lo), float(hi), kind)


def success(kind: str, status: Status | str) -> bool | str | None:
    """What a probe's outcome says: verified (certify) or attacked (attack) -> True; an error
    -> None (it decides nothing; a replay runs that probe again); anything else -> False. For
    exact: verified -> True, falsified -> False, timeout or unknown -> :data:`OPEN`."""
    status = Status(status)
    if status is Status.ERROR:
        return None
    if kind == "exact":
        return True if status is Status.VERIFIED else False if status is Status.FALSIFIED else OPEN
    return status is (Status.VERIFIED if kind == "certify" else Status.FALSIFIED)


def proved_targets(margin_lower: Sequence[float | None] | None, label: int) -> dict[int, float]:
    """{target: bound} for the targets whose margin lower bound (``margin_lower``, an outcome's,
    None or NaN where there is none) is above 0."""
    if margin_lower is None:
        return {}
    return {j: float(b) for j, b in enumerate(margin_lower)
            if j != label and b is not None and math.isfinite(b) and b > 0}


def carried(proved: Mapping[float, Mapping[int, float]], eps: float) -> dict[int, float]:
    """The targets proved at some epsilon >= ``eps`` (``proved``: epsilon -> {target: bound}),
    each with its largest bound (every one of them holds at ``eps``)."""
    out: dict[int, float] = {}
    for e, targets in proved.items():
        if e >= eps:
            for j, b in targets.items():
                out[j] = max(out.get(j, b), b)
    return out


@dataclass(frozen=True)
class Radius:
    """A finished (or budget-stopped) search: ``lo <= radius <= hi``; ``probes`` the new probes as
    (epsilon, outcome) pairs, in the order they ran; ``time_s`` their total time."""

    method: str
    kind: str
    radius: float
    lo: float
    hi: float
    probes: tuple[tuple[float, Outcome], ...]
    time_s: float


def search(net, image: np.ndarray, label: int, method: str, *, kind: str | None = None,
           lo: float = 0.0, hi: float = 0.5, tol: float = TOL, norm: str = "linf",
           known: Mapping[float, bool] | None = None, options: Mapping[str, Any] | None = None,
           device: str = "cpu", max_probes: int = 64, grow: float | None = None, top: bool = False,
           proved: Mapping[float, Mapping[int, float]] | None = None, at: float | None = None) -> Radius:
    """Bisect one sample's radius for one registered method in this process.

    ``kind`` defaults to "attack" for attack methods (PGD) and "certify" otherwise ("exact" for
    a complete method whose falsified probes carry counterexamples, module doc). ``known``:
    probes already run (eps -> :func:`success`), e.g. read back from the store, to resume from.
    ``grow`` and ``top``: see :meth:`Bracket.next_probe`. ``proved`` (exact): targets proved at
    earlier probes (epsilon -> {target: bound}, :func:`proved_targets`), passed down (module doc)
    with those of this search's own probes. ``at``: probe that epsilon once instead (a driver
    that runs several probes of one search at a time, :meth:`Bracket.spare`). A sample
    misclassified at x gets one probe at epsilon 0 (falsified) and radius 0. An ``error`` or
    ``timeout`` at a probe counts as not verified / not attacked (exact: as open), so the radius
    stays sound."""
    from lpbench.methods import get_method

    kind = kind or ("attack" if get_method(method).kind == "attack" else "certify")
    if not (0 <= lo <= hi) or math.isnan(hi) or not tol > 0:
        raise LpbenchError(f"radius search needs 0 <= lo <= hi and tol > 0, got lo={lo}, hi={hi}, tol={tol}")
    img = np.asarray(image, np.float32)[None]
    probes: dict[float, bool | str] = dict(known or {})
    log: list[tuple[float, Outcome]] = []
    hi_cert = math.inf if kind == "attack" else hi
    proved = {float(e): dict(t) for e, t in (proved or {}).items()}

    def probe(eps: float) -> Bracket:
        opts = dict(options or {})
        carry = carried(proved, eps) if kind == "exact" else {}
        if carry:
            opts[method] = {**opts.get(method, {}), "proved": {0: carry}}
        o = _run(net, img, label, method, eps, norm, opts, device)
        found = proved_targets(o.margin_lower, label) if kind == "exact" else {}
        if found:
            proved[float(eps)] = found
        ok = success(kind, o.status)  # here an error counts as a failed probe (exact: an open one)
        probes[float(eps)] = (OPEN if ok is None else ok) if kind == "exact" else bool(ok)
        log.append((float(eps), o))
        return bracket(probes, lo, hi_cert, kind)

    if _misclassified(net, img, label):
        if 0.0 not in probes:
            probe(0.0)
        return Radius(method, kind, 0.0, 0.0, 0.0, tuple(log), sum(o.time_s for _, o in log))
    if at is not None:
        probe(float(at))
        return Radius(method, kind, math.nan, math.nan, math.nan, tuple(log), sum(o.time_s for _, o in log))
    b = bracket(probes, lo, hi_cert, kind)
    if kind == "attack" and math.isfinite(hi) and hi not in probes:  # the upper end must be attacked
        b = probe(hi)
    while (eps := b.next_probe(tol, grow, top)) is not None and len(log) < max_probes:
        b = probe(eps)
    return Radius(method, kind, b.radius, b.lo, b.hi, tuple(log), sum(o.time_s for _, o in log))


def _run(net, img: np.ndarray, label: int, method: str, eps: float, norm: str,
         options: Mapping[str, Any] | None, device: str) -> Outcome:
    from lpbench.methods import verify

    (o,) = verify(net, img, [label], Perturbation(float(eps), norm), [method], device=device, options=options)
    return o


def _misclassified(net, img: np.ndarray, label: int) -> bool:
    logits = net.logits64(img)[0]
    return bool(np.delete(logits, label).max() >= logits[label])

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

The search stops when ``hi - lo <= tol``. Probes are kept as ``{eps: success}`` so that a search
can be replayed from stored outcomes (see :mod:`lpbench.experiments.table2`) and resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.problem import Outcome, Perturbation, Status

#: Default absolute tolerance of the bisection (Table 2 reports epsilon x 1e-3 to one decimal).
TOL = 1e-4


@dataclass(frozen=True)
class Bracket:
    """``lo <= radius <= hi`` from the probes so far; ``kind`` is "certify" or "attack"."""

    lo: float
    hi: float
    kind: str

    @property
    def radius(self) -> float:
        """The reported radius: the verified ``lo`` (certify) or the attacked ``hi`` (attack)."""
        return self.lo if self.kind == "certify" else self.hi

    def done(self, tol: float) -> bool:
        return not math.isfinite(self.hi) or self.hi - self.lo <= tol

    def next_probe(self, tol: float, grow: float | None = None) -> float | None:
        """The midpoint to probe next, or None when the bracket is narrow enough. ``grow``
        (certify, ``lo > 0``): probe at most ``grow * lo``, galloping up from a certified radius
        instead of halving a wide bracket; for methods whose cost rises steeply with epsilon
        (LP-ALL, LP-LAST, the MILP) the probes far above the radius are the expensive ones."""
        if self.done(tol):
            return None
        mid = 0.5 * (self.lo + self.hi)
        if grow is not None and self.kind == "certify" and self.lo > 0:
            return min(mid, grow * self.lo)
        return mid


def bracket(probes: Mapping[float, bool], lo: float, hi: float, kind: str) -> Bracket:
    """The bracket implied by ``probes`` (eps -> success) inside the initial ``[lo, hi]``.

    ``success`` means verified (certify) or adversarial example found (attack). For certify, the
    initial ``lo`` must be an epsilon known to be certified (0, or a dominated method's radius)
    and ``hi`` one known not to be (an attacked radius, or the search limit); for attack, ``hi``
    an epsilon with a known adversarial example (or inf) and ``lo`` one without."""
    if kind not in ("certify", "attack"):
        raise ValueError(f"kind must be 'certify' or 'attack', got {kind!r}")
    if kind == "certify":
        lo = max([lo, *(e for e, ok in probes.items() if ok)])
        hi = min([hi, *(e for e, ok in probes.items() if not ok and e > lo)])
        hi = max(hi, lo)
    else:
        hi = min([hi, *(e for e, ok in probes.items() if ok)])
        lo = max([lo, *(e for e, ok in probes.items() if not ok and e < hi)])
    return Bracket(float(lo), float(hi), kind)


def success(kind: str, status: Status | str) -> bool | None:
    """What a probe's outcome says: verified (certify) or attacked (attack) -> True; an error
    -> None (it decides nothing; a replay runs that probe again); anything else -> False."""
    status = Status(status)
    if status is Status.ERROR:
        return None
    return status is (Status.VERIFIED if kind == "certify" else Status.FALSIFIED)


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
           device: str = "cpu", max_probes: int = 64, grow: float | None = None) -> Radius:
    """Bisect one sample's radius for one registered method in this process.

    ``kind`` defaults to "attack" for attack methods (PGD) and "certify" otherwise. ``known``:
    probes already run (eps -> success), e.g. read back from the store, to resume from. ``grow``:
    see :meth:`Bracket.next_probe`. A sample
    misclassified at x gets one probe at epsilon 0 (falsified) and radius 0. An ``error`` or
    ``timeout`` at a probe counts as not verified / not attacked, so the radius stays sound."""
    from lpbench.methods import get_method

    kind = kind or ("attack" if get_method(method).kind == "attack" else "certify")
    if not (0 <= lo <= hi) or math.isnan(hi) or not tol > 0:
        raise LpbenchError(f"radius search needs 0 <= lo <= hi and tol > 0, got lo={lo}, hi={hi}, tol={tol}")
    img = np.asarray(image, np.float32)[None]
    probes: dict[float, bool] = dict(known or {})
    log: list[tuple[float, Outcome]] = []
    hi_cert = hi if kind == "certify" else math.inf

    def probe(eps: float) -> Bracket:
        o = _run(net, img, label, method, eps, norm, options, device)
        probes[float(eps)] = bool(success(kind, o.status))  # an error counts as a failed probe here
        log.append((float(eps), o))
        return bracket(probes, lo, hi_cert, kind)

    if _misclassified(net, img, label):
        if 0.0 not in probes:
            probe(0.0)
        return Radius(method, kind, 0.0, 0.0, 0.0, tuple(log), sum(o.time_s for _, o in log))
    b = bracket(probes, lo, hi_cert, kind)
    if kind == "attack" and math.isfinite(hi) and hi not in probes:  # the upper end must be attacked
        b = probe(hi)
    while (eps := b.next_probe(tol, grow)) is not None and len(log) < max_probes:
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

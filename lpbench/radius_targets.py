"""Targeted certified radii (Zhang et al. 2018, Section 4: runner-up, random and least-likely
targets) on top of the untargeted bisection of :mod:`lpbench.radius`.

The targeted radius for target t is the largest epsilon at which the method proves the single
margin f_y - f_t positive (the margin trick: the target row of the specification, not
f_y^L - f_t^U). It reuses :func:`lpbench.radius.bracket`: ``lo`` is always an epsilon at which the
method did prove the margin, so the reported radius is a certificate even for methods that are not
monotone in epsilon. ``untargeted`` delegates to :func:`lpbench.radius.search`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.problem import Perturbation
from lpbench.radius import TOL, Radius, bracket, search

TARGETS = ("untargeted", "runner-up", "random", "least-likely")

#: default upper end of the search per norm (an epsilon at which nothing is expected to verify)
HI = {"linf": 0.5, "l2": 8.0, "l1": 40.0}


def choose_target(logits: np.ndarray, label: int, kind: str, rng: np.random.Generator) -> int:
    """The target class for ``kind``: the highest-scoring other class (runner-up), a uniformly
    random other class (random), or the lowest-scoring class (least-likely)."""
    others = np.array([j for j in range(len(logits)) if j != label])
    if kind == "runner-up":
        return int(others[np.argmax(logits[others])])
    if kind == "least-likely":
        return int(others[np.argmin(logits[others])])
    if kind == "random":
        return int(rng.choice(others))
    raise ValueError(f"unknown target kind {kind!r}; choose from {', '.join(TARGETS)}")


def certified_radius(net, image: np.ndarray, label: int, method: str, *, target: str = "untargeted",
                     norm: str = "linf", hi: float | None = None, tol: float | None = None,
                     seed: int = 0, options: Mapping[str, Any] | None = None, device: str = "cpu",
                     max_probes: int = 64) -> tuple[Radius, int | None]:
    """(radius, target class) for one sample; the target is None when untargeted. ``tol``
    defaults to the radius module's TOL scaled by ``hi / 0.5``."""
    hi = HI[norm] if hi is None else hi
    tol = TOL * hi / 0.5 if tol is None else tol
    if target == "untargeted":
        return search(net, image, label, method, lo=0.0, hi=hi, tol=tol, norm=norm, options=options,
                      device=device, max_probes=max_probes), None
    if not (0 < hi and tol > 0) or math.isnan(hi):
        raise LpbenchError(f"radius search needs hi > 0 and tol > 0, got hi={hi}, tol={tol}")
    img = np.asarray(image, np.float32)[None]
    logits = net.logits64(img)[0]
    t = choose_target(logits, label, target, np.random.default_rng([seed, label]))
    if logits.argmax() != label or np.delete(logits, label).max() >= logits[label]:
        return Radius(method=method, kind="certify", radius=0.0, lo=0.0, hi=0.0, probes=(), time_s=0.0), t
    return _bisect_target(net, img, label, method, t, norm, hi, tol, options, device, max_probes), t


def _bisect_target(net, img, label, method, t, norm, hi, tol, options, device, max_probes) -> Radius:
    from lpbench.methods import verify

    probes: dict[float, bool] = {}
    log: list = []  # (eps, Outcome) as in lpbench.radius
    b = bracket(probes, 0.0, hi, "certify")
    while (eps := b.next_probe(tol)) is not None and len(log) < max_probes:
        (o,) = verify(net, img, [label], Perturbation(float(eps), norm), [method], device=device, options=options)
        probes[float(eps)] = bool(o.margin_lower is not None and o.margin_lower[t] > 0)
        log.append((float(eps), o))
        b = bracket(probes, 0.0, hi, "certify")
    return Radius(method=method, kind="certify", radius=b.radius, lo=b.lo, hi=b.hi, probes=tuple(log),
                  time_s=sum(o.time_s for _, o in log))

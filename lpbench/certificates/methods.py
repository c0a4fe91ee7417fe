"""The certificates as verifiers (registry kind "certificate") and as certified-radius functions.

``RADIUS[name](net, x, label, norm, box=(0, 1)) -> float`` is the certified radius of one
sample: no point of ``{x' : ||x' - x||_norm < radius}`` (within ``box``, for the methods that use
it) is classified other than ``label``; 0 when x itself is not classified as ``label`` (strictly
above every other logit after a float64 rounding allowance).

As verifiers at a radius eps: a sample misclassified at x is FALSIFIED (x the counterexample, as
for every method); otherwise VERIFIED iff the certificate holds at eps -- radius > eps for the
simplex and decision-boundary certificates and for Op-norm / LMT (margin - eps L_t > 0, the
same thing), and every margin lower bound > 0 at eps for Fast-Lip (integrated over [0, eps]) and
BCP; else UNKNOWN. ``margin_lower[t]`` is the per-target lower bound where the certificate gives
one (Op-norm, LMT, Fast-Lip, BCP) and NaN for simplex and decision-boundary (a radius, no margin).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from lpbench.certificates.bcp import bcp_margins
from lpbench.certificates.boundary import decision_boundary_certificate
from lpbench.certificates.chain import affine_chain, check_norm, forward_with_error
from lpbench.certificates.fastlip import fast_lip_radius, integrated_margins
from lpbench.certificates.lipschitz import lmt_constants, op_norm_constants
from lpbench.certificates.simplex import simplex_certificate
from lpbench.errors import LpbenchError
from lpbench.methods import Batch, Context, Method, clean_margins, register
from lpbench.network import Network
from lpbench.problem import Outcome, Perturbation, Status

RadiusFn = Callable[..., float]

NORMS = {"simplex": ("l2", "linf", "l1"), "decision-boundary": ("l2", "linf", "l1"),
         "op-norm": ("linf", "l2", "l1"), "lmt": ("l2",), "fast-lip": ("linf", "l2", "l1"),
         "bcp": ("l2", "linf", "l1")}


def safe_margins(net: Network, x: np.ndarray, label: int) -> np.ndarray:
    """(K,) lower bounds of the exact f_label - f_t at x (inf at the label): a float64 forward
    pass less a running bound on its rounding error (:func:`forward_with_error`)."""
    try:
        logits, err = forward_with_error(affine_chain(net, "safe margins"), x)
    except LpbenchError:  # not a ReLU chain: the reference pass, 1e-10 of its magnitude
        logits = net.logits64(np.asarray(x)[None])[0]
        err = 1e-10 * (1.0 + np.abs(logits))
    m = logits[label] - logits - (err[label] + err) * (1 + 1e-12) - 4 * _EPS * np.abs(logits[label] - logits)
    m[label] = np.inf
    return m


_EPS = 2.0 ** -53


def _lipschitz_radius(consts) -> RadiusFn:
    def radius(net, x, label, norm, box=(0.0, 1.0)) -> float:
        L = consts(net, label, norm)
        m = safe_margins(net, x, label)
        if m.min() <= 0:
            return 0.0
        with np.errstate(divide="ignore"):
            r = np.where(np.arange(len(m)) == label, np.inf, m / L)
        return float(max(0.0, r.min() * (1 - 1e-9)))
    return radius


def _simplex_radius(net, x, label, norm, box=(0.0, 1.0)) -> float:
    check_norm("simplex", norm, NORMS["simplex"])
    if safe_margins(net, x, label).min() <= 0:
        affine_chain(net, "simplex")  # bad networks still get their error
        return 0.0
    return simplex_certificate(net, x, norm).radius


def _boundary_radius(net, x, label, norm, box=(0.0, 1.0)) -> float:
    check_norm("decision-boundary", norm, NORMS["decision-boundary"])
    res = decision_boundary_certificate(net, x, norm)
    return res.radius if safe_margins(net, x, label).min() > 0 else 0.0


def _fast_lip_radius(net, x, label, norm, box=(0.0, 1.0)) -> float:
    check_norm("fast-lip", norm, NORMS["fast-lip"])
    affine_chain(net, "fast-lip")
    m = safe_margins(net, x, label)
    if m.min() <= 0:
        return 0.0
    return fast_lip_radius(net, x, label, np.where(np.isinf(m), 0.0, m), norm, box)


def bcp_certified(chain, x, label, eps, norm, box) -> bool:
    return bool(np.nanmin(bcp_margins(chain, x, label, eps, norm, box)) > 0)


def _bcp_radius(net, x, label, norm, box=(0.0, 1.0), rel_tol: float = 1e-3) -> float:
    """The largest eps at which BCP certifies, by doubling then bisection (to ``rel_tol``)."""
    check_norm("bcp", norm, NORMS["bcp"])
    chain = affine_chain(net, "bcp")
    if safe_margins(net, x, label).min() <= 0:
        return 0.0
    lo, hi = 0.0, {"linf": 0.01, "l2": 0.1, "l1": 0.5}[norm]
    for _ in range(60):
        if not bcp_certified(chain, x, label, hi, norm, box):
            break
        lo, hi = hi, 2 * hi
    else:
        return lo
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if bcp_certified(chain, x, label, mid, norm, box) else (lo, mid)
    return lo


RADIUS: dict[str, RadiusFn] = {
    "simplex": _simplex_radius,
    "decision-boundary": _boundary_radius,
    "op-norm": _lipschitz_radius(op_norm_constants),
    "lmt": _lipschitz_radius(lmt_constants),
    "fast-lip": _fast_lip_radius,
    "bcp": _bcp_radius,
}


def certified_radius(name: str, net: Network, x: np.ndarray, label: int, norm: str,
                     box: "tuple[float, float] | None" = (0.0, 1.0)) -> float:
    """The certified radius of one sample by certificate ``name`` (a key of :data:`RADIUS`)."""
    if name not in RADIUS:
        raise LpbenchError(f"unknown certificate {name!r}; known: {', '.join(RADIUS)}")
    return RADIUS[name](net, x, int(label), norm, box)


def _margin_lower(name: str, net: Network, batch: Batch, pset: Perturbation) -> np.ndarray | None:
    """(B, K) per-target margin lower bounds at pset.eps, or None for radius-only certificates."""
    n = len(batch.labels)
    if name in ("op-norm", "lmt"):
        consts = op_norm_constants if name == "op-norm" else lmt_constants
        rows = []
        for i in range(n):
            label = int(batch.labels[i])
            m = safe_margins(net, batch.images[i], label)
            m[label] = np.nan
            rows.append(m - pset.eps * consts(net, label, pset.norm))
        return np.stack(rows)
    if name == "fast-lip":
        m = np.stack([safe_margins(net, batch.images[i], int(batch.labels[i])) for i in range(n)])
        m[~np.isfinite(m)] = 0.0
        if pset.eps == 0:
            return m
        return integrated_margins(net, batch.images, batch.labels, m, pset.eps, pset.norm, pset.box)
    if name == "bcp":
        chain = affine_chain(net, "bcp")
        return np.stack([bcp_margins(chain, batch.images[i], int(batch.labels[i]), pset.eps, pset.norm, pset.box)
                         for i in range(n)])
    return None


def _runner(name: str):
    def run(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
        check_norm(name, pset.norm, NORMS[name])
        affine_chain(net, name)  # network errors before any work
        clean = clean_margins(net, batch)
        out: list[Outcome] = []
        t0 = time.perf_counter()
        lower = _margin_lower(name, net, batch, pset)
        shared = (time.perf_counter() - t0) / max(1, len(batch.labels))
        for i in range(len(batch.labels)):
            t1 = time.perf_counter()
            label = int(batch.labels[i])
            stats: dict = {}
            if lower is not None:
                lo = lower[i].astype(np.float64)
                lo[label] = np.nan
                ok = bool(np.nanmin(lo) > 0)
            else:
                lo = np.full(net.n_classes, np.nan)
                r = RADIUS[name](net, batch.images[i], label, pset.norm, pset.box)
                ok = r > pset.eps
                stats["radius"] = r
            if np.nanmin(clean[i]) < 0:
                status, cex = Status.FALSIFIED, batch.images[i].astype(np.float64)
            else:
                status, cex = (Status.VERIFIED if ok else Status.UNKNOWN), None
            out.append(Outcome("", int(batch.ids[i]), label, status, lo, None, cex,
                               shared + time.perf_counter() - t1, stats))
        return out
    return run


_INFO = {
    "simplex": ("simplex certificate min(d_min, P_min) in the activation region", "Singla & Feizi 2019, Theorem 3"),
    "decision-boundary": ("decision-boundary certificate, one hidden layer", "Singla & Feizi 2019, Theorem 4"),
    "op-norm": ("global Lipschitz bound: product of layer operator norms", "Szegedy et al. 2014; Zhang et al. 2018"),
    "lmt": ("Lipschitz-margin certificate, margin > sqrt(2) L eps (l2)", "Tsuzuku et al. 2018; Lee 2021, 3.2"),
    "fast-lip": ("interval Jacobian local Lipschitz bound, integrated over eps", "Weng et al. 2018; Zhang et al. 2018"),
    "bcp": ("box constraint propagation: ball and box together", "Lee et al. 2020; Lee 2021, 3.2, App. B"),
}

for _name, (_summary, _ref) in _INFO.items():
    register(Method(_name, _runner(_name), "certificate", _summary, _ref, activations=("relu",),
                    norms=NORMS[_name]))

"""The verifier registry: ``name -> Method``, one interface for every method.

A method takes a batch of samples of one problem family (network, perturbation set) and returns
one :class:`~lpbench.problem.Outcome` per sample. Built-in methods are compositions of the bound
engine (:mod:`lpbench.bounds.propagate`) or the PGD attack; later modules (LP, MILP) and users add
their own with :func:`register`. Every method counts a sample misclassified at x as falsified
(x itself is the counterexample), as in Salman et al. 2019, Table 1.

A method says which activations and norms it handles (``Method.activations``: None = every
activation with a registered relaxation; ``Method.norms``); :func:`verify` refuses the others with
an error naming the method. Bound methods take options ``ctx.options[name]``, e.g.
``{"crown": {"strategy": "fixed(0.5)"}}`` or ``{"crown-ibp": {"beta": 0.5}}`` (see ``BOUND_OPTIONS``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from lpbench.attacks.pgd import PGDConfig, attack
from lpbench.bounds.propagate import Bounds, crown_ibp_bounds, interval_bounds, linear_bounds, relaxed_bounds
from lpbench.bounds.relaxations import RELAXATIONS, parse_strategy
from lpbench.errors import LpbenchError
from lpbench.network import Act, Network
from lpbench.problem import NORMS, Outcome, Perturbation, Status


@dataclass(frozen=True)
class Batch:
    """Samples to run: images (B, *input_shape) float32, labels (B,), their data-set indices."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True)
class Context:
    """How methods run: ``progress(k)``, if given, is told of every k samples a method that
    decides them one by one (the MILP, LP-ALL, LP-LAST) has finished."""

    device: str = "cpu"
    batch_size: int = 256
    options: Mapping[str, Any] = field(default_factory=dict)
    progress: Callable[[int], None] | None = None


RunFn = Callable[[Network, Batch, Perturbation, Context], list[Outcome]]


@dataclass(frozen=True)
class Method:
    name: str
    run: RunFn
    kind: str  # "attack" | "bound" | "lp" | "milp" | "user"
    summary: str
    reference: str = ""
    activations: tuple[str, ...] | None = None  # None: any (or any with lines, see needs_lines)
    norms: tuple[str, ...] = NORMS
    needs_lines: bool = False  # True: every activation needs a registered relaxation

    def check(self, net: Network, pset: Perturbation) -> None:
        """LpbenchError naming this method if it cannot handle ``net``'s activations or the norm."""
        if pset.norm not in self.norms:
            raise LpbenchError(f"method {self.name} handles {'/'.join(self.norms)} perturbations only, "
                               f"not {pset.norm}")
        allowed = self.activations if self.activations is not None else \
            (tuple(RELAXATIONS) if self.needs_lines else None)
        for i, layer in enumerate(net.layers):
            if not isinstance(layer, Act):
                continue
            act = layer.activation
            if allowed is not None and act.name not in allowed:
                raise LpbenchError(f"method {self.name} does not support activation {act.spec} "
                                   f"(layer {i}); it supports {', '.join(sorted(allowed))}")
            if self.kind == "bound" and not act.monotone:
                raise LpbenchError(f"method {self.name} needs monotone activations, layer {i} is {act.spec}")


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add (or replace) a method; it then appears in ``lpbench verify``, sweeps and tables."""
    REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise LpbenchError(f"unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}") from None


def clean_margins(net: Network, batch: Batch) -> np.ndarray:
    """(B, n_classes) float64 margins f_y - f_j at the unperturbed inputs (NaN at j = y)."""
    logits = net.logits64(batch.images)
    marg = logits[np.arange(len(batch.labels)), batch.labels][:, None] - logits
    marg[np.arange(len(batch.labels)), batch.labels] = np.nan
    return marg


def margin_spec(labels: torch.Tensor, n_classes: int, dtype, device) -> torch.Tensor:
    """(B, n_classes, n_classes): row j is e_y - e_j (row y is zero)."""
    eye = torch.eye(n_classes, dtype=dtype, device=device)
    return eye[labels][:, None, :] - eye[None, :, :]


def _bound_method(name: str, compute: Callable[..., Bounds], defaults: Mapping[str, Any] | None = None) -> RunFn:
    """A registry run function from ``compute(net, x, pset, spec, **options)``; the options are
    ``ctx.options[name]`` over ``defaults`` (unknown keys: ValueError)."""
    defaults = dict(defaults or {})

    def run(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
        opts = bound_options(name, ctx.options.get(name, {}), defaults)
        clean = clean_margins(net, batch)
        out: list[Outcome] = []
        for s in range(0, len(batch.labels), ctx.batch_size):
            t0 = time.perf_counter()
            sl = slice(s, s + ctx.batch_size)
            x = torch.as_tensor(batch.images[sl], dtype=torch.float64, device=ctx.device)
            y = torch.as_tensor(batch.labels[sl], device=ctx.device)
            with torch.no_grad():
                b = compute(net, x, pset, margin_spec(y, net.n_classes, x.dtype, x.device), **opts)
            lower, upper = b.lower.cpu().numpy(), b.upper.cpu().numpy()
            dt = (time.perf_counter() - t0) / len(y)
            for r in range(len(y)):
                i = s + r
                lo, up = lower[r].copy(), upper[r].copy()
                lo[batch.labels[i]] = up[batch.labels[i]] = np.nan
                if np.nanmin(clean[i]) < 0:
                    status, cex = Status.FALSIFIED, batch.images[i].astype(np.float64)
                else:
                    status, cex = (Status.VERIFIED if np.nanmin(lo) > 0 else Status.UNKNOWN), None
                out.append(Outcome("", int(batch.ids[i]), int(batch.labels[i]), status, lo, up, cex, dt,
                                   {"device": ctx.device, **opts}))
        return out
    return run


def bound_options(name: str, given: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options of bound method ``name`` (``BOUND_OPTIONS``) over their defaults, checked:
    ValueError for unknown keys, an unknown strategy, beta outside [0, 1] or v < 1."""
    defaults = BOUND_OPTIONS.get(name, {}) if defaults is None else defaults
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name}; known: {sorted(defaults)}")
    opts = {**defaults, **given}
    if "strategy" in opts:
        parse_strategy(opts["strategy"])
    beta = opts.get("beta", 1.0)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"{name} beta must be a number in [0, 1], got {beta!r}")
    v = opts.get("v", 1)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} needs an integer v >= 1, got {v!r}")
    return opts


def _pgd(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
    cfg = PGDConfig(**ctx.options.get("pgd", {}))
    out: list[Outcome] = []
    for s in range(0, len(batch.labels), ctx.batch_size):
        t0 = time.perf_counter()
        sl = slice(s, s + ctx.batch_size)
        found = attack(net, batch.images[sl], batch.labels[sl], pset, cfg, ctx.device, batch.ids[sl])
        dt = (time.perf_counter() - t0) / len(found)
        for r, (pt, marg, ok) in enumerate(found):
            i = s + r
            status = Status.FALSIFIED if ok else Status.UNKNOWN
            out.append(Outcome("", int(batch.ids[i]), int(batch.labels[i]), status, None, marg,
                               pt if ok else None, dt, {"device": ctx.device, "steps": cfg.steps,
                                                        "restarts": cfg.restarts, "loss": cfg.loss}))
    return out


def _clean(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
    t0 = time.perf_counter()
    marg = clean_margins(net, batch)
    dt = (time.perf_counter() - t0) / max(1, len(batch.labels))
    return [Outcome("", int(batch.ids[i]), int(batch.labels[i]),
                    Status.FALSIFIED if np.nanmin(marg[i]) < 0 else Status.UNKNOWN, None, marg[i],
                    batch.images[i].astype(np.float64) if np.nanmin(marg[i]) < 0 else None, dt)
            for i in range(len(batch.labels))]


def verify(net: Network, images: np.ndarray, labels: Sequence[int], pset: Perturbation,
           methods: Sequence[str], *, ids: Sequence[int] | None = None, device: str = "cpu",
           batch_size: int = 256, options: Mapping[str, Any] | None = None,
           progress: Callable[[int], None] | None = None) -> list[Outcome]:
    """Run each named method on every sample; one Outcome per (method, sample); ``progress``:
    see :class:`Context`."""
    images = np.asarray(images, dtype=np.float32)
    net.check_input_shape(images.shape[1:])
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images):
        raise LpbenchError(f"{len(images)} images but {len(labels)} labels")
    batch = Batch(images, labels, np.arange(len(labels)) if ids is None else np.asarray(ids))
    ctx = Context(device, batch_size, dict(options or {}), progress)
    results: list[Outcome] = []
    chosen = [get_method(name) for name in methods]
    for method in chosen:
        method.check(net, pset)
    for name, method in zip(methods, chosen):
        results.extend(replace(o, method=name) for o in method.run(net, batch, pset, ctx))
    return results


register(Method("clean", _clean, "attack", "the unperturbed input: falsified iff misclassified"))
register(Method("pgd", _pgd, "attack", "PGD attack; falsifies with re-checked counterexamples",
                "Madry et al. 2018"))
PIECEWISE = ("relu", "leaky_relu", "param_ramp")

#: options of the bound methods and their defaults (``ctx.options[name]``)
BOUND_OPTIONS: dict[str, dict[str, Any]] = {
    "crown": {"strategy": "adaptive"}, "crown-ibp": {"strategy": "tight", "beta": 1.0},
    "lbp": {"strategy": "tight"}, "crown-lbp": {"strategy": "tight"}, "relaxed-crown": {"strategy": "tight", "v": 2},
}

register(Method("ibp", _bound_method("ibp", interval_bounds), "bound", "interval bound propagation",
                "Gowal et al. 2018"))
register(Method("fast-lin", _bound_method("fast-lin", lambda n, x, p, c: linear_bounds(n, x, p, c, "same-slope")),
                "bound", "backward linear bounds, lower slope u/(u-l)", "Weng et al. 2018", PIECEWISE))
register(Method("crown", _bound_method("crown", lambda n, x, p, c, strategy: linear_bounds(n, x, p, c, strategy),
                                       BOUND_OPTIONS["crown"]),
                "bound", "backward linear bounds, adaptive lower slope (CROWN-Ada; tangent/chord lines "
                "for tanh, sigmoid, arctan)", "Zhang et al. 2018", needs_lines=True))
register(Method("lp-greedy", _bound_method("lp-greedy", lambda n, x, p, c: linear_bounds(n, x, p, c, "same-slope")),
                "bound", "greedy dual of the LP relaxation (Algorithm 1 of Wong & Kolter 2018)",
                "Wong & Kolter 2018; Salman et al. 2019 (LP-GREEDY)", ("relu",)))
register(Method("crown-ibp", _bound_method("crown-ibp", lambda n, x, p, c, strategy, beta:
                                           crown_ibp_bounds(n, x, p, c, strategy, beta), BOUND_OPTIONS["crown-ibp"]),
                "bound", "IBP intermediate bounds, one backward pass (tight lines)",
                "Zhang et al. 2020; Lyu et al. 2021", needs_lines=True))
register(Method("lbp", _bound_method("lbp", lambda n, x, p, c, strategy: relaxed_bounds(n, x, p, c, strategy, 1),
                                     BOUND_OPTIONS["lbp"]),
                "bound", "linear bound propagation = relaxed CROWN-1 (tight lines)", "Lyu et al. 2021, Theorem 1",
                needs_lines=True))
register(Method("crown-lbp", _bound_method("crown-lbp", lambda n, x, p, c, strategy:
                                           linear_bounds(n, x, p, c, strategy, intermediate="lbp"),
                                           BOUND_OPTIONS["crown-lbp"]),
                "bound", "LBP intermediate bounds, one backward pass (tight lines)", "Lyu et al. 2021",
                needs_lines=True))
register(Method("relaxed-crown", _bound_method("relaxed-crown", lambda n, x, p, c, strategy, v:
                                               relaxed_bounds(n, x, p, c, strategy, v),
                                               BOUND_OPTIONS["relaxed-crown"]),
                "bound", "relaxed CROWN-v: back-substitution over v layers (option v, default 2)",
                "Lyu et al. 2021, eq. 15-16", needs_lines=True))

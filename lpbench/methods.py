"""The verifier registry: ``name -> Method``, one interface for every method.

A method takes a batch of samples of one problem family (network, perturbation set) and returns
one :class:`~lpbench.problem.Outcome` per sample. Built-in methods are compositions of the bound
engine (:mod:`lpbench.bounds.propagate`) or the PGD attack; later modules (LP, MILP) and users add
their own with :func:`register`. Every method counts a sample misclassified at x as falsified
(x itself is the counterexample), as in Salman et al. 2019, Table 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from lpbench.attacks.pgd import PGDConfig, attack
from lpbench.bounds.propagate import Bounds, interval_bounds, linear_bounds
from lpbench.errors import LpbenchError
from lpbench.network import Network
from lpbench.problem import Outcome, Perturbation, Status


@dataclass(frozen=True)
class Batch:
    """Samples to run: images (B, *input_shape) float32, labels (B,), their data-set indices."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True)
class Context:
    device: str = "cpu"
    batch_size: int = 256
    options: Mapping[str, Any] = field(default_factory=dict)


RunFn = Callable[[Network, Batch, Perturbation, Context], list[Outcome]]


@dataclass(frozen=True)
class Method:
    name: str
    run: RunFn
    kind: str  # "attack" | "bound" | "lp" | "milp" | "user"
    summary: str
    reference: str = ""


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


def _bound_method(compute: Callable[[Network, torch.Tensor, Perturbation, torch.Tensor], Bounds]) -> RunFn:
    def run(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
        clean = clean_margins(net, batch)
        out: list[Outcome] = []
        for s in range(0, len(batch.labels), ctx.batch_size):
            t0 = time.perf_counter()
            sl = slice(s, s + ctx.batch_size)
            x = torch.as_tensor(batch.images[sl], dtype=torch.float64, device=ctx.device)
            y = torch.as_tensor(batch.labels[sl], device=ctx.device)
            with torch.no_grad():
                b = compute(net, x, pset, margin_spec(y, net.n_classes, x.dtype, x.device))
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
                                   {"device": ctx.device}))
        return out
    return run


def _pgd(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
    cfg = PGDConfig(**ctx.options.get("pgd", {}))
    out: list[Outcome] = []
    for s in range(0, len(batch.labels), ctx.batch_size):
        t0 = time.perf_counter()
        sl = slice(s, s + ctx.batch_size)
        found = attack(net, batch.images[sl], batch.labels[sl], pset, cfg, ctx.device)
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
           batch_size: int = 256, options: Mapping[str, Any] | None = None) -> list[Outcome]:
    """Run each named method on every sample; one Outcome per (method, sample)."""
    images = np.asarray(images, dtype=np.float32)
    net.check_input_shape(images.shape[1:])
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images):
        raise LpbenchError(f"{len(images)} images but {len(labels)} labels")
    batch = Batch(images, labels, np.arange(len(labels)) if ids is None else np.asarray(ids))
    ctx = Context(device, batch_size, dict(options or {}))
    results: list[Outcome] = []
    for name in methods:
        method = get_method(name)
        results.extend(replace(o, method=name) for o in method.run(net, batch, pset, ctx))
    return results


register(Method("clean", _clean, "attack", "the unperturbed input: falsified iff misclassified"))
register(Method("pgd", _pgd, "attack", "PGD attack; falsifies with re-checked counterexamples",
                "Madry et al. 2018"))
register(Method("ibp", _bound_method(interval_bounds), "bound", "interval bound propagation",
                "Gowal et al. 2018"))
register(Method("fast-lin", _bound_method(lambda n, x, p, c: linear_bounds(n, x, p, c, "same-slope")),
                "bound", "backward linear bounds, lower slope u/(u-l)", "Weng et al. 2018"))
register(Method("crown", _bound_method(lambda n, x, p, c: linear_bounds(n, x, p, c, "adaptive")),
                "bound", "backward linear bounds, adaptive lower slope", "Zhang et al. 2018"))
register(Method("lp-greedy", _bound_method(lambda n, x, p, c: linear_bounds(n, x, p, c, "same-slope")),
                "bound", "greedy dual of the LP relaxation (Algorithm 1 of Wong & Kolter 2018)",
                "Wong & Kolter 2018; Salman et al. 2019 (LP-GREEDY)"))

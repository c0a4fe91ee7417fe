"""Your own verifier, measured against the optimal layer-wise bound.

A *margin verifier* is a function (or a class whose instances are called) that takes the problem
and returns lower bounds on the margins:

    def my_bound(net, images, labels, pset) -> np.ndarray:
        # net: lpbench.network.Network; images: (B, *input_shape) float64; labels: (B,) int;
        # pset: lpbench.problem.Perturbation (eps, norm, box)
        # returns (B, n_classes): entry [b, j] <= min over the set of f_y(x') - f_j(x')
        ...

Register it from Python with :func:`register_verifier` (``lpbench.register_verifier("mine",
my_bound)``), or from an installed package through the entry point group ``lpbench.verifiers``:

    [project.entry-points."lpbench.verifiers"]
    mine = "my_package.module:my_bound"

From then on ``mine`` is a method like any other: ``lpbench verify --methods mine``, ``lpbench
table1 --methods ...,mine``, ``lpbench reproduce table2 --methods ...,mine``, sweeps, and
``lpbench compare mine``. The wrapper never lets a broken plugin count as verified: an exception,
a wrong shape, a NaN or a +inf lower bound makes an ``error`` outcome carrying the reason; a
sample misclassified at x is falsified (x itself), as for every method; otherwise verified iff
every returned lower bound is > 0. See examples/plugin/ for a complete installable example.
"""

from __future__ import annotations

import inspect
import time
from importlib.metadata import entry_points
from typing import Any, Callable

import numpy as np

from lpbench.methods import REGISTRY, Batch, Context, Method, clean_margins, register
from lpbench.problem import NORMS, Outcome, Perturbation, Status

GROUP = "lpbench.verifiers"

#: Entry points that failed to load: name -> reason (shown by ``lpbench methods``).
LOAD_ERRORS: dict[str, str] = {}


def register_verifier(name: str, verifier: Callable[..., Any] | type, *, summary: str = "",
                      reference: str = "", norms: tuple[str, ...] = NORMS,
                      activations: tuple[str, ...] | None = None) -> Method:
    """Register a margin verifier (a function, or a class instantiated once without arguments)
    under ``name``; returns the registered :class:`~lpbench.methods.Method`."""
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise ValueError(f"a verifier name must be a non-empty string without commas, got {name!r}")
    fn = verifier() if inspect.isclass(verifier) else verifier
    if not callable(fn):
        raise TypeError(f"verifier {name!r} must be callable, got {type(fn).__name__}")
    doc = summary or (inspect.getdoc(fn) or "").split("\n")[0] or "user verifier"
    return register(Method(name, _runner(name, fn), "user", doc, reference, activations, norms))


def _runner(name: str, fn: Callable[..., Any]):
    def run(net, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
        clean = clean_margins(net, batch)
        out: list[Outcome] = []
        for s in range(0, len(batch.labels), ctx.batch_size):
            sl = slice(s, s + ctx.batch_size)
            images, labels = batch.images[sl].astype(np.float64), batch.labels[sl]
            t0 = time.perf_counter()
            lower, problem = _call(fn, net, images, labels, pset)
            dt = (time.perf_counter() - t0) / len(labels)
            for r in range(len(labels)):
                i = s + r
                if np.nanmin(clean[i]) < 0:
                    out.append(Outcome("", int(batch.ids[i]), int(labels[r]), Status.FALSIFIED, None, None,
                                       images[r], dt))
                elif problem is not None:
                    out.append(Outcome("", int(batch.ids[i]), int(labels[r]), Status.ERROR, None, None, None, dt,
                                       {"error": f"verifier {name}: {problem}"}))
                else:
                    lo = lower[r].copy()
                    lo[labels[r]] = np.nan
                    status = Status.VERIFIED if np.nanmin(lo) > 0 else Status.UNKNOWN
                    out.append(Outcome("", int(batch.ids[i]), int(labels[r]), status, lo, None, None, dt))
        return out
    return run


def _call(fn, net, images: np.ndarray, labels: np.ndarray, pset: Perturbation) -> tuple[np.ndarray | None, str | None]:
    """The verifier's lower bounds, or None and what is wrong with them."""
    try:
        raw = fn(net, images, labels, pset)
    except Exception as e:  # noqa: BLE001  (any failure of user code is an error outcome)
        return None, f"raised {type(e).__name__}: {e}"
    try:
        lower = np.asarray(raw.detach().cpu() if hasattr(raw, "detach") else raw, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return None, f"returned {type(raw).__name__}, not an array of numbers ({e})"
    want = (len(labels), net.n_classes)
    if lower.shape != want:
        return None, f"returned shape {lower.shape}, expected {want} (samples x classes)"
    others = ~np.eye(net.n_classes, dtype=bool)[labels]
    if np.isnan(lower[others]).any():
        return None, "returned NaN lower bounds"
    if np.isposinf(lower[others]).any():
        return None, "returned +inf lower bounds (no margin is bounded below by +inf)"
    return lower, None


def shipped(name: str) -> Method | None:
    """The Method to send along with a task of ``name`` when it is a user verifier (registered
    from Python in the client, so worker processes would not know it), else None."""
    m = REGISTRY.get(name)
    return m if m is not None and m.kind == "user" else None


def ensure(method: Method | None) -> None:
    """In a worker: register a shipped user verifier unless that name is already known."""
    if method is not None and method.name not in REGISTRY:
        register(method)


def load_entry_points() -> list[str]:
    """Register every verifier of the ``lpbench.verifiers`` entry points not yet registered;
    one that fails to load is skipped and its reason kept in :data:`LOAD_ERRORS`. An entry
    point may name a margin verifier (function or class) or a ready :class:`Method`."""
    loaded = []
    for ep in entry_points(group=GROUP):
        if ep.name in REGISTRY:
            continue
        try:
            obj = ep.load()
            if isinstance(obj, Method):
                register(obj if obj.name == ep.name else Method(ep.name, *_fields(obj)))
            else:
                register_verifier(ep.name, obj, reference=f"plugin {ep.value}")
            loaded.append(ep.name)
        except Exception as e:  # noqa: BLE001  (a broken plugin must not break lpbench)
            LOAD_ERRORS[ep.name] = f"{type(e).__name__}: {e}"
    return loaded


def _fields(m: Method) -> tuple:
    return (m.run, m.kind, m.summary, m.reference, m.activations, m.norms, m.needs_lines)

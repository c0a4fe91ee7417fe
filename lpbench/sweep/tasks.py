"""WHAT runs on a worker: the task functions of a sweep (plain functions of plain data).

A worker loads each network once from the zoo (its own data directory or a shared one, see
cluster/README.md) and keeps it for the tasks that follow, so weights never travel inside tasks.
Every task runs torch and the solvers on one thread, with glibc told to keep its heap
(:func:`keep_heap`).

* :func:`block` -- any registered method on a block of samples (torch methods batched; the MILP
  gets one sample per task);
* :func:`instance` -- one row of a VNN-COMP instance list (sweeps with ``instances``);
* :func:`radius` -- one sample's radius search (bisection) for one method (Table 2);
* LP-ALL as a chain per sample: :func:`lp_start` (cheap bounds) -> per activation layer, the
  neuron slices :func:`lp_slice` and :func:`lp_merge` (a layer waits for the whole previous
  layer) -> :func:`lp_finish` (the margin LPs, step B).

Task results are ``(outcomes, worker info)``; the client writes them to the store.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from lpbench.problem import Outcome, Perturbation, Status


@lru_cache(maxsize=16)
def network(model: str):
    from lpbench.zoo import load_model
    return load_model(model)


@lru_cache(maxsize=4)
def dataset(name: str):
    from lpbench.data import load_dataset
    return load_dataset(name, "test")


@lru_cache(maxsize=1)
def worker_info() -> dict[str, str]:
    """Where and with what a task ran (stored beside each outcome)."""
    import highspy
    import torch

    import lpbench
    try:
        from distributed import get_worker
        address = get_worker().address
    except (ImportError, ValueError):
        address = "client"
    versions = {"lpbench": lpbench.__version__, "torch": torch.__version__,
                "numpy": np.__version__, "highspy": _version("highspy", highspy)}
    return {"worker": address, "host": socket.gethostname(), "pid": str(os.getpid()),
            "versions": " ".join(f"{k}={v}" for k, v in versions.items())}


def _version(name: str, module: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return getattr(module, "__version__", "?")


#: glibc malloc settings of a worker process (bytes): blocks above ``MMAP_THRESHOLD`` are
#: mapped afresh, and free memory above ``TRIM_THRESHOLD`` at the top of the heap goes back to
#: the system. dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also
#: pins glibc's mmap threshold at 128 KiB: every tensor and solver buffer above that is mapped
#: and unmapped again, and the page faults cost about 40% more CPU time (NOR-MLP-B at 0.02, test
#: image 191, the MILP in a dask worker: 22.0 s user + 14.3 s system before, 22.8 s + 0.2 s with
#: these), a cost the MILP's CPU-second limit counts.
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 256 << 20


@lru_cache(maxsize=1)
def keep_heap() -> bool:
    """Apply :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` to this process (glibc's
    ``mallopt``); False where the C library is not glibc or refuses them."""
    import ctypes
    import platform
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3
    return mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1 and mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1


def _prepare() -> None:
    """Every task starts here: torch on one thread, the heap kept (:func:`keep_heap`)."""
    import torch
    torch.set_num_threads(1)
    keep_heap()


def block(model: str, data: str, eps: float, norm: str, method: str, ids: list[int],
          options: dict[str, Any], device: str, plugin=None) -> tuple[list[Outcome], dict[str, str]]:
    """``method`` on the test samples ``ids`` of ``data`` (``plugin``: the method itself when it
    is a user verifier registered in the client only)."""
    from lpbench.methods import verify
    from lpbench.plugins import ensure
    _prepare()
    ensure(plugin)
    net, d = network(model), dataset(data)
    ids = np.asarray(ids, np.int64)
    outs = verify(net, d.images[ids], d.labels[ids], Perturbation(eps, norm), [method], ids=ids,
                  device=device, batch_size=max(1, len(ids)), options=options)
    return outs, worker_info()


def radius(model: str, data: str, sample: int, label: int, method: str, kind: str, lo: float, hi: float,
           tol: float, norm: str, known: dict[float, bool], options: dict[str, Any], plugin=None,
           grow: float | None = None, max_probes: int = 64, top: bool = False,
           proved: dict[float, dict[int, float]] | None = None,
           at: float | None = None) -> tuple[list[tuple[float, Outcome]], dict[str, str]]:
    """A radius search (:func:`lpbench.radius.search`) of one sample, resumed from ``known``
    probes (and, exact, the targets they ``proved``), for at most ``max_probes`` probes, or
    the one probe ``at``; returns the new probes as (epsilon, outcome) pairs."""
    from lpbench.plugins import ensure
    from lpbench.radius import search
    _prepare()
    ensure(plugin)
    net, d = network(model), dataset(data)
    if int(d.labels[sample]) != label:
        raise ValueError(f"sample {sample} of {data} has label {d.labels[sample]}, not {label}")
    r = search(net, d.images[sample], label, method, kind=kind, lo=lo, hi=hi, tol=tol, norm=norm,
               known=known, options=options, grow=grow, max_probes=max_probes, top=top,
               proved=proved, at=at)
    return [(eps, replace(o, sample=int(sample))) for eps, o in r.probes], worker_info()


def instance(path: str, index: int, method: str, options: dict[str, Any]) -> tuple[list[Outcome], dict[str, str]]:
    """Row ``index`` of a VNN-COMP instance list (:mod:`lpbench.interop.sweep`)."""
    from lpbench.interop.sweep import instance_outcome
    _prepare()
    return [instance_outcome(path, index, method, options)], worker_info()


@dataclass(frozen=True, eq=False)
class LPState:
    """One sample's LP-ALL state between tasks: the pre-activation bounds so far, the LP counts
    and the seconds spent."""

    label: int
    pre: dict[int, tuple[np.ndarray, np.ndarray]]
    counts: Any
    seconds: float


def lp_layout(model: str, chunk: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The LP-ALL task layout of a network: per LP layer, its neuron slices [a, b) of at most
    ``chunk`` neurons (stable neurons cost nothing inside a slice)."""
    from lpbench.lp.drivers import lp_layers
    net = network(model)
    shapes = net.shapes
    out = []
    for i in lp_layers(net, "all"):
        n = int(np.prod(shapes[i]))
        out.append((i, [(a, min(a + chunk, n)) for a in range(0, n, chunk)]))
    return out


def lp_start(model: str, data: str, eps: float, norm: str, sample: int) -> LPState:
    """The cheap bounds (IBP, CROWN, LP-GREEDY intersected) LP-ALL starts from."""
    import torch

    from lpbench.lp.drivers import LPCounts, cheap_bounds
    from lpbench.methods import margin_spec
    _prepare()
    t0 = time.perf_counter()
    net, d = network(model), dataset(data)
    x = torch.as_tensor(d.images[sample:sample + 1], dtype=torch.float64)
    y = torch.as_tensor(d.labels[sample:sample + 1])
    cb = cheap_bounds(net, x, Perturbation(eps, norm), margin_spec(y, net.n_classes, x.dtype, x.device))
    pre = {k: (lo[0], hi[0]) for k, (lo, hi) in cb.pre.items()}
    return LPState(int(d.labels[sample]), pre, LPCounts(), time.perf_counter() - t0)


def lp_slice(model: str, data: str, eps: float, norm: str, sample: int, state: LPState, layer: int,
             span: tuple[int, int], lp_options: dict[str, Any]) -> tuple[tuple[int, int], np.ndarray,
                                                                         np.ndarray, Any, float]:
    """The LP bounds of neurons ``span`` of ``layer`` (flat indices) for one sample."""
    from lpbench.lp.drivers import tighten_neurons
    from lpbench.solvers import get_backend
    _prepare()
    t0 = time.perf_counter()
    net, d = network(model), dataset(data)
    backend = get_backend(lp_options.get("backend", "highs"), lp_options.get("backend_options", {}))
    lo, hi, counts = tighten_neurons(net, d.images[sample].astype(np.float64), Perturbation(eps, norm),
                                     state.pre, layer, np.arange(*span), backend,
                                     lp_options.get("time_limit"), lp_options.get("compact", True))
    return span, lo, hi, counts, time.perf_counter() - t0


def lp_merge(state: LPState, layer: int, *slices) -> LPState:
    """The state after every slice of ``layer`` is done."""
    lo, hi = (np.array(t, np.float64).ravel() for t in state.pre[layer])
    counts, seconds = state.counts, state.seconds
    for (a, b), s_lo, s_hi, c, t in slices:
        lo[a:b], hi[a:b] = s_lo, s_hi
        counts, seconds = counts + c, seconds + t
    shape = np.shape(state.pre[layer][0])
    pre = {**state.pre, layer: (lo.reshape(shape), hi.reshape(shape))}
    return replace(state, pre=pre, counts=counts, seconds=seconds)


def lp_finish(model: str, data: str, eps: float, norm: str, sample: int, state: LPState,
              lp_options: dict[str, Any]) -> tuple[list[Outcome], dict[str, str]]:
    """Step B (the margin LPs) and the sample's LP-ALL outcome."""
    from lpbench.lp.drivers import Sessions, solve_sample
    from lpbench.lp.methods import verdict
    from lpbench.solvers import get_backend
    _prepare()
    t0 = time.perf_counter()
    net, d = network(model), dataset(data)
    x, label = d.images[sample].astype(np.float64), state.label
    backend = get_backend(lp_options.get("backend", "highs"), lp_options.get("backend_options", {}))
    with Sessions(backend, lp_options.get("time_limit")) as sessions:
        res = solve_sample(net, x, label, Perturbation(eps, norm), state.pre, (), sessions,
                           lp_options.get("compact", True))
    margins = res.margins.copy()
    margins[label] = np.nan
    logits = net.logits64(x[None])[0]
    if np.delete(logits, label).max() > logits[label]:
        status, cex = Status.FALSIFIED, x
    else:
        status, cex = verdict(margins, res.status, label), None
    stats = {"decided_by": "lp-all", "backend": lp_options.get("backend", "highs"),
             **replace(res, counts=state.counts + res.counts).stats()}
    out = Outcome("lp-all", int(sample), label, status, margins, None, cex,
                  state.seconds + time.perf_counter() - t0, stats)
    return [out], worker_info()

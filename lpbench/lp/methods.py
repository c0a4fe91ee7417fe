"""The methods ``lp-all`` and ``lp-last`` of Salman et al. 2019, Section 5.1, in the registry.

Options (``ctx.options["lp-all"]`` / ``ctx.options["lp-last"]``):

* ``backend``: ``"highs"`` (default), ``"cvxpy"`` or ``"pulp"``; ``backend_options``: a dict
  passed to the backend (e.g. ``{"solver": "CLARABEL"}`` for cvxpy);
* ``time_limit``: seconds per LP (default none); an LP that hits it leaves its bound unusable;
* ``cascade``: for robust-error counting, decide a sample by the cheapest sufficient method:
  misclassified at x (``clean``), verified by a cheaper certifier the LP method provably beats,
  falsified by PGD (options ``ctx.options["pgd"]``), and only then the LP method. LP-ALL beats
  LP-GREEDY, CROWN, IBP and LP-LAST (its LPs are the optimal layer-wise relaxation); LP-LAST
  beats only LP-GREEDY (the same intermediate bounds, its margin LP the exact one), not CROWN or
  IBP, whose intermediate bounds can be tighter than LP-GREEDY's, so a CROWN-verified sample is
  not counted for LP-LAST. The verdicts are therefore those of the LP method alone. The outcome's
  ``stats["decided_by"]`` names the method; a sample decided before the LPs reports no margins
  (LP-ALL margins are only ever LP-ALL values);
* ``compact``: drop the rows stable neurons do not need (default True; same LP optimum).

Status of a sample the LPs decide: verified iff every margin bound is positive; unknown when one
is <= 0 or an LP ended infeasible or in error; timeout when the only missing margins hit the
time limit. A misclassified sample is falsified with x as the counterexample, as for every method.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from lpbench.attacks.pgd import PGDConfig, attack
from lpbench.errors import LpbenchError
from lpbench.lp.drivers import Sessions, cheap_bounds, lp_layers, solve_sample, verified_by
from lpbench.methods import Batch, Context, Method, clean_margins, margin_spec, register
from lpbench.network import Network
from lpbench.problem import Outcome, Perturbation, Status
from lpbench.solvers import get_backend

DEFAULTS: dict[str, Any] = {"backend": "highs", "backend_options": {}, "time_limit": None,
                            "cascade": False, "compact": True}
_NAME = {"all": "lp-all", "last": "lp-last"}
#: The cheap certifiers each LP method is provably at least as tight as (the cascade's verifiers).
BEATEN = {"all": ("lp-greedy", "crown", "ibp"), "last": ("lp-greedy",)}


def options(ctx: Context, name: str) -> dict[str, Any]:
    """The options of method ``name`` with defaults; unknown keys raise ValueError."""
    given = dict(ctx.options.get(name, {}))
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name}; known: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **given}


def _runner(policy: str):
    name = _NAME[policy]

    def run(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
        opts = options(ctx, name)
        if pset.norm not in ("linf", "l1"):
            raise LpbenchError(f"{name} supports l_inf and l1 perturbations, not {pset.norm} "
                               "(an l2 ball is not a polyhedron)")
        backend = get_backend(opts["backend"], opts["backend_options"])
        clean = clean_margins(net, batch)
        out: list[Outcome] = []
        with Sessions(backend, opts["time_limit"]) as sessions:
            for s in range(0, len(batch.labels), ctx.batch_size):
                idx = np.arange(s, min(s + ctx.batch_size, len(batch.labels)))
                out += _run_chunk(net, batch, idx, pset, ctx, policy, opts, sessions, clean)
        return out
    return run


def _run_chunk(net, batch, idx, pset, ctx, policy, opts, sessions, clean) -> list[Outcome]:
    t0 = time.perf_counter()
    x = torch.as_tensor(batch.images[idx], dtype=torch.float64, device=ctx.device)
    y = torch.as_tensor(batch.labels[idx], device=ctx.device)
    cb = cheap_bounds(net, x, pset, margin_spec(y, net.n_classes, x.dtype, x.device))
    spent = np.full(len(batch.labels), (time.perf_counter() - t0) / len(idx))
    decided = _cascade(net, batch, idx, pset, ctx, policy, opts, cb, clean, sessions, spent) \
        if opts["cascade"] else {}
    out = []
    for r, i in enumerate(idx):
        out.append(_decide(net, batch, r, i, pset, policy, opts, sessions, clean, cb, decided, spent))
        if ctx.progress is not None:
            ctx.progress(1)
    return out


def _decide(net, batch, r, i, pset, policy, opts, sessions, clean, cb, decided, spent) -> Outcome:
    """Sample ``i`` (row ``r`` of the chunk): by the cascade's verdict, or by its LPs."""
    label = int(batch.labels[i])
    if i in decided:
        status, by, cex = decided[i]
        return Outcome("", int(batch.ids[i]), label, status, None, None, cex, spent[i],
                       {"decided_by": by, "backend": opts["backend"]})
    pre = {k: (lo[r], hi[r]) for k, (lo, hi) in (cb.pre if policy == "all" else cb.greedy_pre).items()}
    res = solve_sample(net, batch.images[i], label, pset, pre, lp_layers(net, policy), sessions, opts["compact"])
    margins = res.margins.copy()
    margins[label] = np.nan
    if np.nanmin(clean[i]) < 0:
        status, cex = Status.FALSIFIED, batch.images[i].astype(np.float64)
    else:
        status, cex = verdict(margins, res.status, label), None
    return Outcome("", int(batch.ids[i]), label, status, margins, None, cex, spent[i] + res.time_s,
                   {"decided_by": _NAME[policy], "backend": opts["backend"], **res.stats()})


def verdict(margins: np.ndarray, status: tuple[str, ...], label: int) -> Status:
    """The LP verdict of a sample from its certified margins and the margin LPs' statuses."""
    others = np.delete(margins, label)
    done = others[np.isfinite(others)]
    if done.size and done.min() <= 0:
        return Status.UNKNOWN
    if done.size == others.size:
        return Status.VERIFIED
    failed = [st for j, st in enumerate(status) if j != label and st != "optimal"]
    return Status.TIMEOUT if all(st == "time_limit" for st in failed) else Status.UNKNOWN


def _cascade(net, batch, idx, pset, ctx, policy, opts, cb, clean, sessions, spent) -> dict[int, tuple]:
    """Samples decided before the LP method: index -> (status, method, counterexample); the
    seconds spent on each sample are added to ``spent``."""
    decided: dict[int, tuple] = {}
    for r, i in enumerate(idx):
        if np.nanmin(clean[i]) < 0:
            decided[i] = (Status.FALSIFIED, "clean", batch.images[i].astype(np.float64))
            continue
        name = verified_by(cb, r, int(batch.labels[i]), BEATEN[policy])
        if name is not None:
            decided[i] = (Status.VERIFIED, name, None)
    todo = [r for r, i in enumerate(idx) if i not in decided]
    if todo:
        t0 = time.perf_counter()
        cfg = PGDConfig(**ctx.options.get("pgd", {}))
        found = attack(net, batch.images[idx[todo]], batch.labels[idx[todo]], pset, cfg, ctx.device,
                       batch.ids[idx[todo]])
        spent[idx[todo]] += (time.perf_counter() - t0) / len(todo)
        for r, (pt, _, ok) in zip(todo, found):
            i = idx[r]
            if ok:
                decided[i] = (Status.FALSIFIED, "pgd", pt)
    # LP-LAST: the margin LPs on LP-GREEDY's bounds, far fewer LPs than LP-ALL (with one hidden
    # layer LP-ALL solves only these LPs, so the stage would repeat them)
    if policy == "all" and lp_layers(net, "all"):
        for r, i in enumerate(idx):
            if i in decided:
                continue
            label = int(batch.labels[i])
            pre = {k: (lo[r], hi[r]) for k, (lo, hi) in cb.greedy_pre.items()}
            res = solve_sample(net, batch.images[i], label, pset, pre, (), sessions, opts["compact"])
            spent[i] += res.time_s
            if verdict(res.margins, res.status, label) is Status.VERIFIED:
                decided[i] = (Status.VERIFIED, "lp-last", None)
    return decided


register(Method("lp-all", _runner("all"), "lp",
                "optimal layer-wise LP: per-neuron LP bounds for every layer, then the margin LPs",
                "Salman et al. 2019, Section 5.1 (LP-ALL)", activations=("relu",)))
register(Method("lp-last", _runner("last"), "lp",
                "LP-GREEDY intermediate bounds, margin LPs solved exactly",
                "Salman et al. 2019, Section 5.1 (LP-LAST)", activations=("relu",)))

"""The method ``milp`` (exact verification, Tjeng, Xiao & Tedrake 2019) in the registry.

Options (``ctx.options["milp"]``):

* ``backend``: ``"highs"`` (default) or ``"pulp"`` (CBC); ``backend_options``: a dict for it;
* ``time_limit``: seconds of MILP solving per sample (default 3600 as in Salman et al. 2019,
  Table 1); must be positive;
* ``clock``: what ``time_limit`` counts, ``"cpu"`` (default: the solving thread's CPU seconds, so
  the verdicts do not depend on what else runs on the machine; stats record it) or ``"wall"``;
* ``tightening``: the pre-activation bounds, ``"lp-all"`` (default: tight bounds make the MILP
  small, and most targets are then verified by its LP relaxation), ``"lp-greedy"`` or
  ``"interval"``;
* ``lp_backend`` (default ``"highs"``): solves the LPs of the ``"lp-all"`` tightening and the LP
  relaxation tried before each target's MILP;
* ``targets``: ``"each"`` (default: one MILP per target the LP relaxation leaves open, most
  threatening first) or ``"joint"`` (one MILP over all of them);
* ``conditional`` (default true): a target still open after a few seconds gets pre-activation
  bounds conditioned on its counterexample region and a new MILP
  (:mod:`lpbench.milp.conditional`);
* ``split`` (default true, with ``conditional``): a target its conditioned MILP leaves open after a
  few seconds goes to a branch and bound on ReLU splits with conditioned bounds at every node
  (:mod:`lpbench.milp.split`) for the rest of the time;
* ``bab`` (default true): on dense ReLU networks, a branch and bound with batched alpha/beta-CROWN
  bounds (:mod:`lpbench.milp.bab`) gets each open target for a few seconds before its MILP, and
  its conditioned bounds for the rest of the time before their MILP;
* ``implied`` (default true, with ``bab``): a search still open after a second computes the
  sample's implied bounds of single splits (:mod:`lpbench.milp.implications`) and goes on with
  them for the rest of the sample's time;
* ``cutoff`` (default true): each target's first MILP prunes every node whose bound reaches a
  small positive cutoff (only the sign of the margin matters; HiGHS only, CBC ignores it);
* ``cheap`` (default true): before any bound tightening, a sample that IBP, CROWN or LP-GREEDY
  verifies is verified (their margin bounds are sound, so the exact minimum is positive too);
* ``targeted`` (default true): before the MILP, a targeted PGD (one attack per class,
  :mod:`lpbench.attacks.targeted`) on each sample the cheap bounds leave open; a re-checked point
  falsifies the sample, and otherwise the MILP takes the targets in the order of the margins the
  attack reached (the closest first, as a sample ends at its first counterexample);
* ``proved`` (default none): ``{sample id: {target: bound}}``, targets verified for that sample
  at a larger epsilon with the lower bound of their margin there (> 0); they are verified with it
  and not solved again (:func:`lpbench.radius.search` passes them down an exact search).

A sample misclassified at x is falsified with x (``decided_by = "clean"``); then PGD (options
``ctx.options["pgd"]``) runs on the batch and a re-checked PGD counterexample decides the sample
(``"pgd"``); then, with ``cheap``, a sample whose margins IBP, CROWN or LP-GREEDY bound above 0 is
verified (``decided_by`` names the method; ``margin_lower`` holds its bounds); with ``targeted``, a
re-checked counterexample of the targeted PGD decides the sample (``"targeted-pgd"``, ``stats``
name the ``target``); the others are decided by :func:`lpbench.milp.verify.verify_sample`
(``"milp"``), so the LP-ALL tightening is spent only on samples the cheap bounds leave open.
The outcome's ``margin_lower`` holds the safe dual bound of each target, ``margin_upper`` the
incumbents; ``stats`` the tightening, its time, solve time, nodes and per-target records.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from lpbench.attacks.pgd import PGDConfig, attack
from lpbench.attacks.targeted import TargetedResult, targeted_attack
from lpbench.errors import LpbenchError
from lpbench.lp.drivers import cheap_bounds, verified_by
from lpbench.methods import Batch, Context, Method, clean_margins, margin_spec, register
from lpbench.milp.formulation import DEFAULT_TIGHTENING, TIGHTENINGS, check_relu
from lpbench.milp.verify import CLOCKS, TARGET_MODES, verify_sample
from lpbench.network import Network
from lpbench.problem import Outcome, Perturbation, Status
from lpbench.solvers import get_backend

DEFAULTS: dict[str, Any] = {"backend": "highs", "backend_options": {}, "time_limit": 3600.0,
                            "tightening": DEFAULT_TIGHTENING, "lp_backend": "highs", "targets": "each",
                            "conditional": True, "split": True, "bab": True, "implied": True, "cutoff": True,
                            "cheap": True, "targeted": True, "proved": {},
                            "clock": "cpu"}
MILP_BACKENDS = ("highs", "pulp")


def options(ctx: Context) -> dict[str, Any]:
    """The ``milp`` options with defaults; unknown keys or values raise ValueError."""
    given = dict(ctx.options.get("milp", {}))
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for milp; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **given}
    limit = opts["time_limit"]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit <= 0:
        raise ValueError(f"milp time_limit must be a positive number of seconds, got {limit!r}")
    if opts["backend"] not in MILP_BACKENDS:
        raise ValueError(f"milp backend must be one of {MILP_BACKENDS}, got {opts['backend']!r}")
    if opts["targets"] not in TARGET_MODES:
        raise ValueError(f"milp targets must be one of {TARGET_MODES}, got {opts['targets']!r}")
    for flag in ("conditional", "split", "bab", "implied", "cutoff", "cheap", "targeted"):
        if not isinstance(opts[flag], bool):
            raise ValueError(f"milp {flag} must be true or false, got {opts[flag]!r}")
    if opts["clock"] not in CLOCKS:
        raise ValueError(f"milp clock must be one of {tuple(CLOCKS)}, got {opts['clock']!r}")
    opts["proved"] = _proved(opts["proved"])
    if opts["tightening"] not in TIGHTENINGS:
        raise ValueError(f"milp tightening must be one of {TIGHTENINGS}, got {opts['tightening']!r}")
    return opts


def _proved(given: Any) -> dict[int, dict[int, float]]:
    """The ``proved`` option as {sample id: {target: bound}}: integer ids and targets, bounds
    finite and > 0."""
    def integer(k: Any) -> bool:
        return not isinstance(k, bool) and str(k).isdigit()

    if not isinstance(given, dict) or not all(integer(i) and isinstance(t, dict) for i, t in given.items()):
        raise ValueError(f"milp proved must be a dict of sample id -> {{target: margin bound}}, got {given!r}")
    out: dict[int, dict[int, float]] = {}
    for i, targets in given.items():
        for j, b in targets.items():
            if not integer(j) or isinstance(b, bool) or not isinstance(b, (int, float)) \
                    or not (math.isfinite(b) and b > 0):
                raise ValueError(f"milp proved: sample {i!r}, target {j!r} needs an integer target and a "
                                 f"bound > 0, got {b!r}")
            out.setdefault(int(i), {})[int(j)] = float(b)
    return out


def run(net: Network, batch: Batch, pset: Perturbation, ctx: Context) -> list[Outcome]:
    opts = options(ctx)
    check_relu(net)
    if pset.norm not in ("linf", "l1"):
        raise LpbenchError(f"milp supports l_inf and l1 perturbations, not {pset.norm}")
    backend = get_backend(opts["backend"], opts["backend_options"])
    lp_backend = get_backend(opts["lp_backend"])
    clean = clean_margins(net, batch)
    out: list[Outcome] = []
    for s in range(0, len(batch.labels), ctx.batch_size):
        idx = np.arange(s, min(s + ctx.batch_size, len(batch.labels)))
        pgd, spent = _pgd(net, batch, idx, pset, ctx, clean)
        cheap, cheap_s = _cheap(net, batch, [i for i in idx if i not in pgd and np.nanmin(clean[i]) >= 0],
                                pset, ctx) if opts["cheap"] else ({}, 0.0)
        hit = _targeted(net, batch, [i for i in idx if i not in pgd and i not in cheap and np.nanmin(clean[i]) >= 0],
                        pset, ctx) if opts["targeted"] else {}
        for i in idx:
            label, base = int(batch.labels[i]), {"backend": opts["backend"]}
            if np.nanmin(clean[i]) < 0:
                out.append(Outcome("", int(batch.ids[i]), label, Status.FALSIFIED, None, clean[i],
                                   batch.images[i].astype(np.float64), spent,
                                   {"decided_by": "clean", **base}))
            elif i in pgd:
                point, marg = pgd[i]
                out.append(Outcome("", int(batch.ids[i]), label, Status.FALSIFIED, None, marg, point, spent,
                                   {"decided_by": "pgd", **base}))
            elif i in cheap:
                name, lower = cheap[i]
                out.append(Outcome("", int(batch.ids[i]), label, Status.VERIFIED, lower, None, None,
                                   spent + cheap_s, {"decided_by": name, **base}))
            elif i in hit and hit[i][0] is not None:
                found, took, _ = hit[i]
                out.append(Outcome("", int(batch.ids[i]), label, Status.FALSIFIED, None, found.margins, found.point,
                                   spent + cheap_s + took, {"decided_by": "targeted-pgd", "target": found.target,
                                                            **base}))
            else:
                v = verify_sample(net, batch.images[i], label, pset, backend, float(opts["time_limit"]),
                                  opts["tightening"], lp_backend, targets=opts["targets"],
                                  conditional=opts["conditional"], cutoff=opts["cutoff"],
                                  clock=opts["clock"], split=opts["split"], bab=opts["bab"],
                                  implied=opts["implied"], proved=opts["proved"].get(int(batch.ids[i])),
                                  order_by=hit[i][2] if i in hit else None)
                lo, up = v.margins(net.n_classes)
                out.append(Outcome("", int(batch.ids[i]), label, v.status, lo, up, v.counterexample,
                                   spent + cheap_s + (hit[i][1] if i in hit else 0.0) + v.tightening_s + v.solve_s,
                                   {"decided_by": "milp", **base, **v.stats()}))
            if ctx.progress is not None:
                ctx.progress(1)
    return out


def _pgd(net, batch, idx, pset, ctx, clean) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], float]:
    """Re-checked PGD counterexamples of the correctly classified samples of ``idx``, and the
    seconds per sample the attack took."""
    t0 = time.perf_counter()
    todo = [int(i) for i in idx if np.nanmin(clean[i]) >= 0]
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if todo:
        cfg = PGDConfig(**ctx.options.get("pgd", {}))
        found_all = attack(net, batch.images[todo], batch.labels[todo], pset, cfg, ctx.device, batch.ids[todo])
        for i, (point, marg, ok) in zip(todo, found_all):
            if ok:
                found[i] = (point, marg)
    return found, (time.perf_counter() - t0) / max(1, len(idx))


def _targeted(net, batch, todo: list[int], pset, ctx
              ) -> dict[int, tuple[TargetedResult | None, float, dict[int, float]]]:
    """Per sample of ``todo``: the targeted PGD's re-checked counterexample of lowest margin (None
    if it found none), the seconds the attack took, and each target's margin at its best point
    (the MILP takes the targets in that order)."""
    out: dict[int, tuple[TargetedResult | None, float, dict[int, float]]] = {}
    for i in todo:
        t0, label = time.perf_counter(), int(batch.labels[i])
        found = targeted_attack(net, batch.images[i], label, pset, [j for j in range(net.n_classes) if j != label],
                                device=ctx.device, sample_id=int(batch.ids[i]))
        hits = [r for r in found if r.found]
        best = min(hits, key=lambda r: float(np.nanmin(r.margins))) if hits else None
        out[i] = (best, time.perf_counter() - t0, {r.target: float(r.margins[r.target]) for r in found})
    return out


def _cheap(net, batch, todo: list[int], pset, ctx) -> tuple[dict[int, tuple[str, np.ndarray]], float]:
    """The samples of ``todo`` that IBP, CROWN or LP-GREEDY verify (index -> (method, margin
    lower bounds with NaN at the label)), and the seconds per sample the bounds took."""
    if not todo:
        return {}, 0.0
    t0 = time.perf_counter()
    x = torch.as_tensor(batch.images[todo], dtype=torch.float64, device=ctx.device)
    y = torch.as_tensor(batch.labels[todo], device=ctx.device)
    cb = cheap_bounds(net, x, pset, margin_spec(y, net.n_classes, x.dtype, x.device))
    found: dict[int, tuple[str, np.ndarray]] = {}
    for r, i in enumerate(todo):
        label = int(batch.labels[i])
        name = verified_by(cb, r, label)
        if name is not None:
            lower = np.asarray(cb.lower[name][r], np.float64).copy()
            lower[label] = np.nan
            found[i] = (name, lower)
    return found, (time.perf_counter() - t0) / len(todo)


register(Method("milp", run, "milp",
                "exact MILP (one binary per unstable ReLU), PGD first, early stop on the sign",
                "Tjeng, Xiao & Tedrake 2019; Salman et al. 2019, Table 1 (MILP)"))

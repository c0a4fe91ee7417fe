"""``lpbench bench certificates``: certified l_2 and l_inf radii on the ten images of Table 2.

Per model and norm: the mean certified radius and per-image time of every certificate of this
package, beside CROWN and LP-ALL (largest certified eps by bisection) and PGD (the smallest
distance of an adversarial point it finds, bisecting the attack radius): the ladder
certificate <= LP-ALL-radius <= exact distortion <= PGD distance. One thread.
"""

from __future__ import annotations

import math
import sys
import time

import click
import numpy as np
import torch
from tqdm import tqdm

from lpbench.certificates.methods import NORMS, RADIUS, safe_margins

MODELS = ("NOR-MLP-2-100,ADV-MLP-2-100,LPD-MLP-2-100,NOR-MLP-9-100,ADV-MLP-9-100,LPD-MLP-9-100,"
          "ADV-MLP-A-0.1")
LP_ALL_MODELS = "NOR-MLP-2-100,ADV-MLP-2-100,LPD-MLP-2-100,ADV-MLP-A-0.1"
START = {"linf": 0.01, "l2": 0.2}
ORD = {"linf": np.inf, "l2": 2, "l1": 1}


def largest_certified(certified, start: float, hi: float = math.inf, lo: float = 0.0,
                      rel_tol: float = 1e-3, max_calls: int = 40) -> float:
    """The largest eps with ``certified(eps)`` (monotone), bracketed by doubling / halving from
    ``start`` (within ``[lo, hi]``; ``lo`` must be certified or 0) then bisected to ``rel_tol``."""
    calls = 0
    if lo > 0 and not certified(lo):  # the bracket's lower end must itself be certified
        lo, calls = 0.0, 1
    eps = min(start, hi) if math.isfinite(hi) else start
    while calls < max_calls and hi - lo > rel_tol * max(hi if math.isfinite(hi) else eps, 1e-12):
        calls += 1
        if certified(eps):
            lo = eps
        else:
            hi = eps
        eps = (lo + hi) / 2 if math.isfinite(hi) else 2 * eps
        if lo == 0 and math.isfinite(hi) and calls > 1 and eps > 0 and hi < start * 2 ** -20:
            break
    return lo


def pgd_distance(net, x, label, norm, start, steps=60, restarts=2, calls=10) -> float:
    """The smallest distance of a re-checked adversarial point PGD finds, bisecting the radius."""
    from lpbench.attacks.pgd import PGDConfig, attack
    from lpbench.problem import Perturbation

    cfg = PGDConfig(steps=steps, restarts=restarts)
    lo, hi, best = 0.0, start, math.inf
    for _ in range(calls):
        pt, _, ok = attack(net, x[None], np.array([label]), Perturbation(hi, norm), cfg)[0]
        if ok:
            best = min(best, float(np.linalg.norm((pt - x).ravel(), ORD[norm])))
            hi = (lo + min(hi, best)) / 2
        else:
            lo = hi
            hi = 2 * hi if not math.isfinite(best) else (hi + best) / 2
    return best


def _bound_certified(net, name, x, label, norm):
    from lpbench.methods import verify
    from lpbench.problem import Perturbation

    def certified(eps: float) -> bool:
        return verify(net, x[None], [label], Perturbation(eps, norm), [name])[0].status.value == "verified"
    return certified


def run_model(model: str, norms, n_samples: int, lp_all: bool, progress) -> list[dict]:
    from lpbench.certificates.chain import affine_chain
    from lpbench.zoo import load_model, ten_test_images

    net = load_model(model)
    images, labels, _ = ten_test_images()
    images, labels = images[:n_samples].astype(np.float64), labels[:n_samples]
    one_hidden = len(affine_chain(net, "bench")) == 2
    rows = []
    for norm in norms:
        ok = [i for i in range(len(labels)) if safe_margins(net, images[i], int(labels[i])).min() > 0]
        per: dict[str, list] = {}
        for name, fn in RADIUS.items():
            if norm not in NORMS[name] or (name == "decision-boundary" and not one_hidden):
                continue
            if ok:
                fn(net, images[ok[0]], int(labels[ok[0]]), norm)  # warm-up (imports, caches)
            per[name] = [_timed(fn, net, images[i], int(labels[i]), norm) for i in ok]
        per["crown"] = [_timed(lambda *a: largest_certified(_bound_certified(net, "crown", *a[1:4]), START[norm]),
                               net, images[i], int(labels[i]), norm) for i in ok]
        per["pgd"] = [_timed(lambda *a: pgd_distance(net, *a[1:4], START[norm] * 4), net, images[i],
                             int(labels[i]), norm) for i in ok]
        crown1 = [_timed(lambda *a: _bound_certified(net, "crown", *a[1:4])(max(r, 1e-6)), net, images[i],
                         int(labels[i]), norm)[1] for i, (r, _) in zip(ok, per["crown"])]
        if lp_all and norm == "linf":
            per["lp-all"] = [_timed(lambda *a, lo=lo, hi=hi: largest_certified(
                _bound_certified(net, "lp-all", *a[1:4]), (lo + hi) / 2, hi=hi, lo=lo, rel_tol=2e-3),
                net, images[i], int(labels[i]), norm)
                for i, (lo, _), (hi, _) in zip(ok, per["crown"], per["pgd"])]
        progress()
        row = {"model": model, "norm": norm, "images": len(ok), "misclassified": len(labels) - len(ok)}
        for name, vals in per.items():
            r = np.array([v[0] for v in vals])
            row[name] = float(r.mean()) if len(r) else math.nan
            row[f"{name}_ms"] = 1e3 * float(np.mean([v[1] for v in vals])) if vals else math.nan
        row["crown_one_bound_ms"] = 1e3 * float(np.mean(crown1)) if crown1 else math.nan
        if "simplex" in RADIUS and norm in NORMS["simplex"]:
            from lpbench.certificates.simplex import simplex_certificate
            row["simplex_exact"] = sum(simplex_certificate(net, images[i], norm).exact for i in ok)
        rows.append(row)
    return rows


def _timed(fn, net, x, label, norm):
    t0 = time.perf_counter()
    r = fn(net, x, label, norm)
    return r, time.perf_counter() - t0


METHODS = ("simplex", "decision-boundary", "op-norm", "lmt", "fast-lip", "bcp", "crown", "lp-all", "pgd")
NOTES = (
    "Mean over the correctly classified images among the ten test images of Salman et al. 2019, "
    "Section 6.2 (`images`). Certificates: one certified radius per image (simplex, decision-boundary: "
    "Singla & Feizi 2019; op-norm, fast-lip: the baselines of Zhang et al. 2018; lmt: Tsuzuku et al. 2018; "
    "bcp: Lee 2021, radius by bisection of its certificate). crown, lp-all: the largest certified eps by "
    "bisection (lp-all only for l_inf and the models in --lp-all-models, bracketed by the crown radius and "
    "the pgd distance, to 0.2%); pgd: the smallest distance of a re-checked adversarial point (PGD, 60 steps, "
    "2 restarts, bisection over the attack radius) -- an UPPER bound of the minimum distortion. "
    "crown_one_bound_ms: one CROWN bound at one eps (the cost the simplex certificate is compared with in "
    "Singla & Feizi's Table 1). simplex_exact: images where the simplex certificate is exact (d_min <= P_min). "
    "n/a: decision-boundary needs one hidden layer (only ADV-MLP-A-0.1 has one); lmt is l_2 only; lp-all has no "
    "l_2 ball (an l_2 ball is not a polyhedron) and is too slow for MLP-9-100 radii by bisection (seconds per LP-ALL "
    "call near the radius). Certificates other than fast-lip, bcp, crown, lp-all and pgd ignore the [0, 1] box "
    "(still sound). Times per image on one thread.")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return str(v)


@click.command("certificates")
@click.option("--models", default=MODELS, show_default=True, help="Comma-separated zoo MLPs.")
@click.option("--samples", default=10, show_default=True, type=click.IntRange(1, 10),
              help="First N of the ten Table 2 images.")
@click.option("--norms", default="l2,linf", show_default=True)
@click.option("--lp-all-models", default=LP_ALL_MODELS, show_default=True,
              help="Models whose l_inf LP-ALL radius is bisected ('' for none).")
@click.option("--out", default="results/bench_certificates", show_default=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def bench_certificates(models, samples, norms, lp_all_models, out, as_json) -> None:
    """Certified radii on the ten Table 2 images: simplex, decision-boundary, Op-norm, LMT,
    Fast-Lip, BCP beside CROWN, LP-ALL and PGD, with per-image time (one thread)."""
    import pandas as pd

    from lpbench.bench import show
    from lpbench.errors import LpbenchError
    from lpbench.report.writers import provenance

    prov = provenance()
    torch.set_num_threads(1)
    norm_list = [n.strip() for n in norms.split(",") if n.strip()]
    for n in norm_list:
        if n not in START:
            raise LpbenchError(f"--norms: choose from {', '.join(START)}, got {n!r}")
    names = [m.strip() for m in models.split(",") if m.strip()]
    lp_set = {m.strip() for m in lp_all_models.split(",") if m.strip()}
    rows = []
    bar = tqdm(total=len(names) * len(norm_list), unit="model-norm", desc="bench certificates", file=sys.stderr, disable=as_json)
    for model in names:
        rows += run_model(model, norm_list, samples, model in lp_set, lambda: bar.update(1))
        df = pd.DataFrame(rows)
        table = df.reindex(columns=["model", "norm", "images", "misclassified", "simplex_exact",
                                    *METHODS, *(f"{m}_ms" for m in METHODS), "crown_one_bound_ms"])
        table = table.apply(lambda col: col.map(_fmt))
        _write_sections(table, out, prov)
    bar.close()
    show(rows, as_json, ".4g")


def _write_sections(table, out, prov) -> None:
    import pandas as pd
    from pathlib import Path

    from lpbench.report.writers import write_table

    stem = Path(out)
    stem = stem.with_suffix("") if stem.suffix in (".csv", ".md", ".tex") else stem
    keys = ["model", "norm", "images"]
    write_table(pd.DataFrame(table), stem, prov, "lpbench bench certificates: certified radii on the Table 2 images",
                NOTES, sections={"Mean certified radius (pgd: mean adversarial distance)":
                                 keys + ["misclassified", "simplex_exact", *METHODS],
                                 "Milliseconds per image": keys + [f"{m}_ms" for m in METHODS] + ["crown_one_bound_ms"]})

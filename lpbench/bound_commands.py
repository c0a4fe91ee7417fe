"""CLI commands of the bound-propagation family: ``lpbench radius`` (certified radii, targeted or
not, with the PGD attacked radius as the upper end), ``lpbench neurons`` (neuron-status table) and
``lpbench bench radius`` (CROWN-Ada versus Fast-Lin certified radius, Zhang et al. 2018 Table 4)."""

from __future__ import annotations

import sys
import time

import click
import numpy as np
from tqdm import tqdm

from lpbench.errors import LpbenchError
from lpbench.report.writers import json_line

NORM = click.Choice(["linf", "l2", "l1"])
TARGET = click.Choice(["untargeted", "runner-up", "random", "least-likely"])


def _load(model: str, samples: str):
    from lpbench.data import load_dataset
    from lpbench.experiments.api import sample_ids
    from lpbench.zoo import load_model, model_info

    net = load_model(model)
    data = load_dataset(model_info(model).dataset, "test")
    net.check_input_shape(data.images.shape[1:])
    return net, data, sample_ids(samples, len(data.labels))


@click.command("radius")
@click.argument("model")
@click.option("--methods", default="fast-lin,crown", show_default=True,
              help="Comma-separated registered methods; pgd gives the attacked (upper) radius.")
@click.option("--norm", type=NORM, default="linf", show_default=True)
@click.option("--samples", default="0:10", show_default=True, help="Test-set samples: N, A:B or random:N.")
@click.option("--target", type=TARGET, default="untargeted", show_default=True)
@click.option("--hi", type=float, default=None, help="Upper end of the search (default per norm: 0.5, 8, 40).")
@click.option("--tol", type=float, default=None, help="Bisection tolerance (default 2e-4 * hi).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per (sample, method).")
def radius(model, methods, norm, samples, target, hi, tol, device, as_json) -> None:
    """Certified radius of MODEL per sample and method: the largest epsilon at which the method
    verifies (bisection; the reported epsilon was itself verified). With pgd among the methods,
    the smallest epsilon at which PGD finds a re-checked adversarial example (always untargeted)."""
    from lpbench.cli import _check_device, _methods
    from lpbench.radius import search
    from lpbench.radius_targets import HI, TOL, certified_radius

    names = _methods(methods)
    _check_device(device)
    net, data, ids = _load(model, samples)
    hi = HI[norm] if hi is None else hi
    if not (hi > 0 and np.isfinite(hi)):
        raise LpbenchError(f"--hi must be a positive number, got {hi}")
    tol = TOL * hi / 0.5 if tol is None else tol
    rows = []
    for i in tqdm(ids, desc=f"{model} {norm} radius", unit="sample", disable=as_json, file=sys.stderr):
        for name in names:
            if name == "pgd":
                r, t = search(net, data.images[i], int(data.labels[i]), "pgd", kind="attack", lo=0.0, hi=hi,
                              tol=tol, norm=norm, device=device), None
            else:
                r, t = certified_radius(net, data.images[i], int(data.labels[i]), name, target=target,
                                        norm=norm, hi=hi, tol=tol, device=device)
            rec = {"model": model, "sample": int(i), "label": int(data.labels[i]), "method": name,
                   "norm": norm, "target": "untargeted" if name == "pgd" else target, "target_class": t,
                   "radius": r.radius, "lo": r.lo, "hi": r.hi, "probes": len(r.probes), "time_s": r.time_s}
            rows.append(rec)
            if as_json:
                click.echo(json_line(rec))
    if as_json:
        return
    click.echo(f"{model}  {norm}  {target}  {len(ids)} samples (radius: mean over samples; 0 = misclassified)")
    for name in names:
        mine = [r for r in rows if r["method"] == name]
        rad = np.array([r["radius"] for r in mine])
        click.echo(f"  {name:14} mean radius {rad.mean():.5f}   median {np.median(rad):.5f}   "
                   f"{np.mean([r['time_s'] for r in mine]):.3f} s/sample")


@click.command("neurons")
@click.argument("model")
@click.option("--eps", type=float, required=True)
@click.option("--norm", type=NORM, default="linf", show_default=True)
@click.option("--method", type=click.Choice(["ibp", "fast-lin", "crown", "lbp"]), default="ibp", show_default=True,
              help="Where the pre-activation bounds come from.")
@click.option("--samples", default="0:100", show_default=True, help="Test-set samples: N, A:B or random:N.")
@click.option("--json", "as_json", is_flag=True)
def neurons(model, eps, norm, method, samples, as_json) -> None:
    """Per-layer neuron statuses of MODEL at EPS: dead (u <= 0), unstable (l < 0 < u), alive
    (l >= 0), and the six ParamRamp statuses for ParamRamp layers; mean count per image and %."""
    from lpbench.bounds.status import neuron_status
    from lpbench.cli import _eps
    from lpbench.problem import Perturbation

    net, data, ids = _load(model, samples)
    rows = neuron_status(net, data.images[ids], Perturbation(_eps(eps), norm), method)
    if as_json:
        click.echo(json_line(rows, indent=1))
        return
    click.echo(f"{model}  {norm} eps={eps:g}  bounds: {method}  {len(ids)} images (mean per image, %)")
    keys = [k for k in rows[0] if k.endswith("_pct")] if rows else []
    for r in rows:
        extra = [k for k in r if k.endswith("_pct") and k not in keys]
        keys += extra
    click.echo(f"{'layer':>5} {'activation':22} {'neurons':>7} " + " ".join(f"{k[:-4]:>15}" for k in keys))
    for r in rows:
        cells = [f"{r[k[:-4]]:7.1f} ({r[k]:4.1f}%)" if k in r else f"{'':>15}" for k in keys]
        click.echo(f"{r['layer']:5} {r['activation'][:22]:22} {r['neurons']:7} " + " ".join(cells))


BENCH_MODELS = "NOR-MLP-B,ADV-MLP-B-0.1,LPD-MLP-B-0.1,NOR-MLP-9-100,NOR-CNN-WIDE-1,ADV-CNN-WIDE-1,LPD-CNN-WIDE-1"


@click.command("radius")
@click.option("--models", default=BENCH_MODELS, show_default=True)
@click.option("--norms", default="linf,l2,l1", show_default=True)
@click.option("--samples", default="0:10", show_default=True, help="Test-set samples: N, A:B or random:N.")
@click.option("--target", type=TARGET, default="random", show_default=True)
@click.option("--out", default="results/bench_radius", show_default=True, type=click.Path(dir_okay=False),
              help="Write OUT.csv/.md/.tex with provenance.")
@click.option("--json", "as_json", is_flag=True)
def bench_radius(models, norms, samples, target, out, as_json) -> None:
    """Certified radius of CROWN-Ada (``crown``) against Fast-Lin on zoo MLPs and CNNs (Zhang et
    al. 2018, Table 4): mean radius over the correctly classified samples, CROWN-Ada's gain in %,
    and the time per image of the whole bisection. One thread."""
    import torch

    from lpbench.bench import _write, show
    from lpbench.radius_targets import certified_radius
    from lpbench.report.writers import provenance

    prov = provenance()
    torch.set_num_threads(1)
    rows = []
    jobs = [(m.strip(), n.strip()) for m in models.split(",") for n in norms.split(",")]
    for model, norm in tqdm(jobs, desc="bench radius", file=sys.stderr, disable=as_json):
        net, data, ids = _load(model, samples)
        ok = [int(i) for i in ids if net.logits64(data.images[i][None])[0].argmax() == data.labels[i]]
        res = {}
        for name in ("fast-lin", "crown"):
            t0 = time.perf_counter()
            rad = [certified_radius(net, data.images[i], int(data.labels[i]), name, target=target, norm=norm)[0].radius
                   for i in ok]
            res[name] = (float(np.mean(rad)) if rad else float("nan"), (time.perf_counter() - t0) / max(1, len(ok)))
        fl, cr = res["fast-lin"][0], res["crown"][0]
        rows.append({"model": model, "norm": norm, "target": target, "samples": len(ids), "correct": len(ok),
                     "fast_lin_radius_x1e3": 1e3 * fl, "crown_ada_radius_x1e3": 1e3 * cr,
                     "improvement_pct": 100.0 * (cr / fl - 1.0) if fl > 0 else float("nan"),
                     "fast_lin_s_per_image": res["fast-lin"][1], "crown_ada_s_per_image": res["crown"][1]})
        if out:
            _write(rows, out, prov, "lpbench bench radius: certified radius, CROWN-Ada vs Fast-Lin", RADIUS_NOTES)
    show(rows, as_json, ".5g")


RADIUS_NOTES = ("Radii in units of 1e-3. Certified radius = largest epsilon (bisection, tolerance 2e-4 x the search's upper end: 0.5 for "
                "l_inf, 8 for l_2, 40 for l_1; inputs kept in [0, 1]) at which the method proves the margin "
                "f_y - f_t > 0 for the target t (random: one uniformly drawn other class per sample, seeded by "
                "the label; the same target for both methods). Mean over the correctly classified samples "
                "of the range. Time: the whole bisection per image, one thread. CROWN-Ada = the crown method "
                "(adaptive lower slopes), Fast-Lin = the fast-lin method (lower slope u/(u-l)). Zhang et al. "
                "2018 (Table 4) report +15-26% on their 3-4 layer MLPs.")

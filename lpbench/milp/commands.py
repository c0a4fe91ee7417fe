"""CLI commands of the exact MILP: ``lpbench distortion`` (the closest-adversarial-example MILP of
Tjeng et al. 2019, :mod:`lpbench.milp.distortion`)."""

from __future__ import annotations

import math
import sys
import time

import click
import numpy as np
from tqdm import tqdm

from lpbench.cli import _milp_options, _tightening_option
from lpbench.errors import LpbenchError
from lpbench.report.writers import json_line


@click.command("distortion")
@click.argument("model")
@click.option("--samples", default="table2", show_default=True,
              help="'table2' (the ten test images of Salman et al. 2019, Section 6.2), N or A:B.")
@click.option("--eps-max", type=float, default=0.5, show_default=True,
              help="Search radius: its bounds fix the MILP's big-M constants.")
@click.option("--time-limit", type=float, default=600.0, show_default=True,
              help="CPU seconds per target MILP (> 0); a sample hitting it gets a bracket, not an exact value.")
@_tightening_option
@click.option("--backend", type=click.Choice(["highs", "pulp"]), default="highs", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per sample.")
def distortion(model: str, samples: str, eps_max: float, time_limit: float, tightening: str, backend: str,
               as_json: bool) -> None:
    """Exact minimum l_inf adversarial distortion of MODEL (the closest-adversarial-example MILP
    of Tjeng et al. 2019): per sample a bracket lower <= distortion <= upper, equal when exact."""
    from lpbench.data import load_dataset
    from lpbench.experiments.api import sample_ids
    from lpbench.milp import min_distortion
    from lpbench.solvers import get_backend
    from lpbench.zoo import load_model, model_info, ten_test_images

    if not (math.isfinite(eps_max) and 0 < eps_max <= 1):
        raise LpbenchError(f"--eps-max must lie in (0, 1], got {eps_max}")
    _milp_options(time_limit, tightening, backend)  # validates --time-limit
    net = load_model(model)
    if samples == "table2":
        images, labels, ids = ten_test_images()
    else:
        data = load_dataset(model_info(model).dataset, "test")
        ids = sample_ids(samples, len(data.labels))
        images, labels = data.images[ids], data.labels[ids]
    net.check_input_shape(images.shape[1:])
    solver, lp_solver = get_backend(backend), get_backend("highs")
    rows = []
    for x, y, i in tqdm(list(zip(images, labels, ids)), desc=f"{model} distortion", unit="sample",
                        disable=as_json, file=sys.stderr):
        t0 = time.perf_counter()
        if int(np.argmax(net.logits64(x[None].astype(np.float64))[0])) != int(y):
            rec = {"sample": int(i), "label": int(y), "lower": 0.0, "upper": 0.0, "exact": True,
                   "note": "misclassified"}
        else:
            d = min_distortion(net, x, int(y), solver, eps_max, time_limit, tightening, lp_solver)
            rec = {"sample": int(i), "label": int(y), "lower": d.lower, "upper": d.upper, "exact": d.exact,
                   "note": d.note}
        rec["time_s"] = time.perf_counter() - t0
        rows.append(rec)
        if as_json:
            click.echo(json_line(rec))
    if not as_json:
        click.echo(f"minimum l_inf distortion, {model}, {tightening} bounds, radius {eps_max:g}, {backend}")
        click.echo(f"{'sample':>6} {'label':>5} {'lower':>10} {'upper':>10} {'exact':>5} {'time s':>7}")
        for r in rows:
            click.echo(f"{r['sample']:6} {r['label']:5} {r['lower']:10.6f} {r['upper']:10.6f} "
                       f"{str(r['exact']):>5} {r['time_s']:7.2f} {r['note']}")

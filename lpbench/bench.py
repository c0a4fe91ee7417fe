"""``lpbench bench ...``: speed measurements (benchmarks measure; tests assert)."""

from __future__ import annotations

import json
import sys
import time

import click
import torch
from tqdm import tqdm


@click.group()
def bench() -> None:
    """Measure the speed of lpbench's methods."""


@bench.command("bounds")
@click.option("--models", default="NOR-MLP-B,NOR-CNN-SMALL", show_default=True)
@click.option("--methods", default="ibp,fast-lin,crown,lp-greedy", show_default=True)
@click.option("--eps", default=0.02, show_default=True, type=float)
@click.option("--samples", default=1000, show_default=True, type=click.IntRange(1, 10000))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--device", "devices", default="auto", show_default=True,
              help="cpu, cuda, or auto (cpu, and cuda where present).")
@click.option("--json", "as_json", is_flag=True)
def bench_bounds(models, methods, eps, samples, batch_size, devices, as_json) -> None:
    """Per-image time of bound propagation on zoo models (after one warm-up batch)."""
    from lpbench.cli import _check_device, _eps, _methods
    from lpbench.data import load_dataset
    from lpbench.methods import verify
    from lpbench.problem import Perturbation
    from lpbench.zoo import load_model

    names = _methods(methods)
    pset = Perturbation(_eps(eps))
    devs = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if devices == "auto" else devices.split(",")
    for d in devs:
        _check_device(d)
    data = load_dataset("mnist", "test")
    x, y = data.images[:samples], data.labels[:samples]
    rows = []
    jobs = [(m, d, n) for m in models.split(",") for d in devs for n in names]
    for model, dev, name in tqdm(jobs, desc="bench bounds", file=sys.stderr, disable=as_json):
        net = load_model(model)
        verify(net, x[:min(batch_size, samples)], y[:min(batch_size, samples)], pset, [name],
               device=dev, batch_size=batch_size)  # warm-up
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        outs = verify(net, x, y, pset, [name], device=dev, batch_size=batch_size)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        rows.append({"model": model, "device": dev, "method": name, "samples": samples, "eps": eps,
                     "ms_per_image": 1e3 * dt / samples, "total_s": dt,
                     "verified": sum(o.status.value == "verified" for o in outs),
                     "threads": torch.get_num_threads()})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'model':16} {'device':6} {'method':10} {'ms/image':>9} {'total s':>8} {'verified':>9}")
    for r in rows:
        click.echo(f"{r['model']:16} {r['device']:6} {r['method']:10} {r['ms_per_image']:9.3f} "
                   f"{r['total_s']:8.2f} {r['verified']:>9}")

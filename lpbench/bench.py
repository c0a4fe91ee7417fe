"""``lpbench bench ...``: speed measurements (benchmarks measure; tests assert)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import torch
from tqdm import tqdm

from lpbench.report.writers import json_line


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
        click.echo(json_line(rows, indent=1))
        return
    click.echo(f"{'model':16} {'device':6} {'method':10} {'ms/image':>9} {'total s':>8} {'verified':>9}")
    for r in rows:
        click.echo(f"{r['model']:16} {r['device']:6} {r['method']:10} {r['ms_per_image']:9.3f} "
                   f"{r['total_s']:8.2f} {r['verified']:>9}")


@bench.command("lp")
@click.option("--cases", default="NOR-MLP-B:0.02,LPD-MLP-B-0.1:0.1", show_default=True,
              help="Comma-separated MODEL:EPS pairs.")
@click.option("--samples", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="First N test images for LP-ALL.")
@click.option("--backend", default="highs", show_default=True, type=click.Choice(["highs", "cvxpy", "pulp"]))
@click.option("--baseline-images", default=2, show_default=True, type=click.IntRange(0, 100),
              help="Images on which the per-neuron cvxpy baseline is timed (0: no baseline).")
@click.option("--baseline-lps", default=2, show_default=True, type=click.IntRange(1, 1000),
              help="Neuron LPs and margin LPs timed per baseline image (each).")
@click.option("--json", "as_json", is_flag=True)
def bench_lp(cases, samples, backend, baseline_images, baseline_lps, as_json) -> None:
    """LP-ALL (Salman et al. 2019, Section 5.1) per image against a per-neuron cvxpy baseline.

    LP-ALL runs through ``verify`` on one thread after a one-image warm-up. The baseline writes
    and solves one cvxpy problem per LP (lpbench's cvxpy backend, rebuilt per solve, as in the
    paper's released code); it is timed on a few LPs only and extrapolated to the LPs per image:
    the LPs lpbench solves (same skipping of stable neurons) and, without any skipping, every
    neuron of the LP layers plus the margins."""
    import numpy as np

    from lpbench.cli import _eps
    from lpbench.data import load_dataset
    import lpbench.lp.methods  # noqa: F401  (registers lp-all and lp-last)
    from lpbench.lp.drivers import cheap_bounds, lp_layers
    from lpbench.lp.formulation import relaxation
    from lpbench.methods import margin_spec, verify
    from lpbench.problem import Perturbation
    from lpbench.solvers import get_backend
    from lpbench.zoo import load_model

    torch.set_num_threads(1)
    data = load_dataset("mnist", "test")
    rows = []
    for case in cases.split(","):
        model, _, eps = case.partition(":")
        net, pset = load_model(model.strip()), Perturbation(_eps(float(eps)))
        x, y = data.images[:samples], data.labels[:samples]
        opts = {"lp-all": {"backend": backend}}
        verify(net, x[:1], y[:1], pset, ["lp-all"], options=opts)  # warm-up: imports, first model
        t0, c0 = time.perf_counter(), time.process_time()
        outs = verify(net, x, y, pset, ["lp-all"], options=opts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        solved = sum(o.stats["lps_solved"] for o in outs)
        skipped = sum(o.stats["lps_skipped"] for o in outs)
        layers = lp_layers(net, "all")
        every = sum(2 * int(np.prod(net.shapes[i])) for i in layers) + net.n_classes - 1
        row = {"model": model, "eps": float(eps), "samples": samples, "backend": backend,
               "s_per_image": wall / samples, "cpu_s_per_image": cpu / samples,
               "lps_per_image": solved / samples, "lps_skipped_per_image": skipped / samples,
               "lps_per_s": solved / wall, "verified": sum(o.status.value == "verified" for o in outs)}
        if baseline_images:
            t_a, t_b = _time_cvxpy(net, data, pset, layers, baseline_images, baseline_lps,
                                   cheap_bounds, relaxation, margin_spec, get_backend)
            margins = (net.n_classes - 1)
            same = t_a * (solved / samples - margins) + t_b * margins
            row.update({"baseline_s_per_neuron_lp": t_a, "baseline_s_per_margin_lp": t_b,
                        "baseline_s_per_image": same, "ratio": same / row["s_per_image"],
                        "baseline_no_skip_s_per_image": t_a * (every - margins) + t_b * margins,
                        "ratio_no_skip": (t_a * (every - margins) + t_b * margins) / row["s_per_image"]})
        rows.append(row)
    if as_json:
        click.echo(json_line(rows, indent=1))
        return
    click.echo(f"LP-ALL with {backend}, one thread; per-neuron cvxpy baseline timed on "
               f"{baseline_images} image(s) x {baseline_lps} neuron + {baseline_lps} margin LPs and "
               "EXTRAPOLATED to the LPs per image")
    click.echo(f"{'model':16} {'eps':>5} {'s/image':>8} {'cpu s/im':>8} {'LPs/im':>7} {'skipped/im':>10} "
               f"{'LPs/s':>6} {'verified':>8} {'cvxpy s/im':>10} {'ratio':>7} {'no-skip ratio':>13}")
    for r in rows:
        base = (f"{r['baseline_s_per_image']:10.1f} {r['ratio']:7.0f} {r['ratio_no_skip']:13.0f}"
                if "ratio" in r else f"{'-':>10} {'-':>7} {'-':>13}")
        click.echo(f"{r['model']:16} {r['eps']:5g} {r['s_per_image']:8.3f} {r['cpu_s_per_image']:8.3f} "
                   f"{r['lps_per_image']:7.1f} {r['lps_skipped_per_image']:10.1f} {r['lps_per_s']:6.0f} "
                   f"{r['verified']:>8} " + base)


def _time_cvxpy(net, data, pset, layers, images, lps, cheap_bounds, relaxation, margin_spec, get_backend):
    """Mean seconds of one rebuilt-and-solved cvxpy LP: a step-A neuron LP (on the prefix of the
    first LP layer) and a step-B margin LP, over the first ``images`` test images."""
    import numpy as np

    backend = get_backend("cvxpy")
    t_a, t_b = [], []
    for s in range(images):
        x = torch.as_tensor(data.images[s:s + 1], dtype=torch.float64)
        label = int(data.labels[s])
        cb = cheap_bounds(net, x, pset, margin_spec(torch.as_tensor(data.labels[s:s + 1]), net.n_classes,
                                                    x.dtype, x.device))
        pre = {i: (lo[0], hi[0]) for i, (lo, hi) in cb.pre.items()}
        jobs = []
        if layers:
            rel = relaxation(net, data.images[s], pset, {k: v for k, v in pre.items() if k < layers[0]},
                             layers[0])
            jobs += [(t_a, rel, rel.neuron(j, 1.0 if k % 2 else -1.0)) for k, j in enumerate(range(lps))]
        rel = relaxation(net, data.images[s], pset, pre)
        others = [j for j in range(net.n_classes) if j != label][:lps]
        jobs += [(t_b, rel, rel.objective(np.eye(net.n_classes)[label] - np.eye(net.n_classes)[j]))
                 for j in others]
        for times, rel, objective in jobs:
            t0 = time.perf_counter()
            with backend.open(rel.lp) as session:  # one problem per LP, as the baseline does
                session.minimize(*objective)
            times.append(time.perf_counter() - t0)
    return float(np.mean(t_a)) if t_a else 0.0, float(np.mean(t_b))


@bench.command("milp")
@click.option("--cases", default="LPD-MLP-B-0.1:0.1,NOR-MLP-B:0.02", show_default=True,
              help="Comma-separated MODEL:EPS pairs.")
@click.option("--samples", default=500, show_default=True, type=click.IntRange(1, 10000),
              help="First N test images.")
@click.option("--time-limit", default=60.0, show_default=True, type=float,
              help="Seconds of MILP solving per image (> 0).")
@click.option("--clock", type=click.Choice(["cpu", "wall"]), default="cpu", show_default=True,
              help="What --time-limit counts: the solving thread's CPU seconds or wall-clock seconds.")
@click.option("--tightenings", default="lp-all", show_default=True,
              help="Comma-separated bound tightenings to compare: interval, lp-greedy, lp-all.")
@click.option("--targets", "target_modes", default="each", show_default=True,
              help="Comma-separated: each (a MILP per open target), joint (one MILP over them).")
@click.option("--backend", default="highs", show_default=True, type=click.Choice(["highs", "pulp"]))
@click.option("--cheap/--no-cheap", default=True, show_default=True,
              help="Verify by IBP, CROWN or LP-GREEDY first (the milp option 'cheap').")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write the rows to OUT.csv/.md/.tex with provenance, and every image's outcome to "
                   "OUT_images.csv, rewritten after every case.")
@click.option("--json", "as_json", is_flag=True)
def bench_milp(cases, samples, time_limit, clock, tightenings, target_modes, backend, cheap, out, as_json) -> None:
    """Exact MILP verification (Tjeng et al. 2019) per image, one thread: verified / falsified /
    timeout counts and the median and 95th percentile of the MILP solve time (over the images
    the MILP decided; PGD and clean checks come first), per bound tightening."""
    import numpy as np

    from lpbench.cli import _eps
    from lpbench.data import load_dataset
    import lpbench.milp.methods  # noqa: F401  (registers milp)
    from lpbench.methods import verify
    from lpbench.problem import Perturbation
    from lpbench.zoo import load_model

    from lpbench.report.writers import provenance
    prov = provenance()  # the code that runs is the code of the start
    torch.set_num_threads(1)
    data = load_dataset("mnist", "test")
    x, y = data.images[:samples], data.labels[:samples]
    rows, images = [], []
    jobs = [(c, t, m) for c in cases.split(",") for t in tightenings.split(",") for m in target_modes.split(",")]
    for case, tightening, mode in tqdm(jobs, desc="bench milp", file=sys.stderr, disable=as_json):
        model, _, eps = case.partition(":")
        net, pset = load_model(model.strip()), Perturbation(_eps(float(eps)))
        opts = {"milp": {"backend": backend, "time_limit": time_limit, "tightening": tightening.strip(),
                         "targets": mode.strip(), "cheap": cheap, "clock": clock}}
        t0 = time.perf_counter()
        with tqdm(total=len(y), desc=f"{model} {eps} {tightening} {mode}", unit="image", file=sys.stderr,
                  disable=as_json, leave=False) as bar:
            outs = verify(net, x, y, pset, ["milp"], options=opts, progress=bar.update)
        wall = time.perf_counter() - t0
        by_milp = [o for o in outs if o.stats.get("decided_by") == "milp"]
        solve = np.array([o.stats["solve_s"] for o in by_milp]) if by_milp else np.zeros(1)
        tight = np.array([o.stats["tightening_s"] for o in by_milp]) if by_milp else np.zeros(1)
        count = {s: sum(o.status.value == s for o in outs)
                 for s in ("verified", "falsified", "timeout", "unknown", "error")}
        by = [o.stats.get("decided_by") for o in outs]
        images += [{"model": model, "eps": float(eps), "tightening": tightening, "targets": mode,
                    "sample": int(o.sample), "status": o.status.value, "decided_by": o.stats.get("decided_by"),
                    "solve_s": o.stats.get("solve_s"), "tightening_s": o.stats.get("tightening_s"),
                    "nodes": o.stats.get("nodes"), "unstable": o.stats.get("unstable"),
                    "open_targets": ",".join(str(t["target"]) for t in o.stats.get("targets", [])
                                             if t["status"] not in ("verified", "falsified"))} for o in outs]
        rows.append({"model": model, "eps": float(eps), "tightening": tightening, "targets": mode, "samples": samples,
                     "time_limit": time_limit, "clock": clock, "backend": backend, "cheap": cheap, **count,
                     "by_pgd_or_clean": sum(b in ("pgd", "clean") for b in by),
                     "by_cheap": sum(b in ("ibp", "crown", "lp-greedy") for b in by), "by_milp": len(by_milp),
                     "median_solve_s": float(np.median(solve)), "p95_solve_s": float(np.percentile(solve, 95)),
                     "mean_tightening_s": float(tight.mean()),
                     "unstable_per_image": float(np.mean([o.stats["unstable"] for o in by_milp] or [0])),
                     "spurious": sum(o.stats.get("spurious", 0) for o in by_milp), "total_s": wall})
        if out:
            _write(rows, out, prov, "lpbench bench milp: exact MILP verification",
                   "Per (model, eps, tightening): outcome counts over the first `samples` MNIST test images "
                   "(clean check and PGD first, then, with `cheap`, IBP/CROWN/LP-GREEDY verification, then, with "
                   "`targeted`, a targeted PGD, then the MILP with early stop on the sign; a target whose LP "
                   "relaxation is certified positive needs no MILP). Solve times (median, p95) are over the "
                   "images the MILP decided, tightening time per image apart, in the `clock`'s seconds (cpu: the "
                   "solving thread's CPU time). One thread.")
            # one row per (case, image): status, what decided it, seconds, nodes, the targets left open
            images_csv = _stem(out).with_name(_stem(out).name + "_images")
            _write(images, images_csv, prov, "", "", csv_only=True)
    if as_json:
        click.echo(json_line(rows, indent=1))
        return
    click.echo(f"MILP ({backend}, one thread, {time_limit:g} {clock} s per image); solve times over the MILP-decided images")
    click.echo(f"{'model':16} {'eps':>5} {'tightening':10} {'targets':7} {'verif':>6} {'fals':>5} {'tmout':>5} {'unkn':>5} "
               f"{'err':>4} {'milp':>5} {'med s':>7} {'p95 s':>7} {'tight s':>7} {'unstable':>8}")
    for r in rows:
        click.echo(f"{r['model']:16} {r['eps']:5g} {r['tightening']:10} {r['targets']:7} {r['verified']:6} {r['falsified']:5} "
                   f"{r['timeout']:5} {r['unknown']:5} {r['error']:4} {r['by_milp']:5} {r['median_solve_s']:7.2f} "
                   f"{r['p95_solve_s']:7.2f} {r['mean_tightening_s']:7.3f} {r['unstable_per_image']:8.1f}")


def show(rows: list[dict], as_json: bool, digits: str = ".2f") -> None:
    """Print a bench's rows as JSON, or as a table with floats in format ``digits``."""
    if as_json:
        click.echo(json_line(rows, indent=1))
        return
    import pandas as pd
    click.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:{digits}}"))


def _write(rows: list[dict], out: str | Path, prov: dict, title: str, notes: str, csv_only: bool = False) -> None:
    """``rows`` to OUT.csv/.md/.tex (only OUT.csv with ``csv_only``) with the provenance taken
    when the command started (rewritten as rows come in)."""
    import pandas as pd

    from lpbench.report.writers import write_table

    write_table(pd.DataFrame(rows), _stem(out), prov, title, notes, csv_only=csv_only)


def _stem(out: str | Path) -> Path:
    stem = Path(out)
    return stem.with_suffix("") if stem.suffix in (".csv", ".md", ".tex") else stem


@bench.command("scaling")
@click.option("--model", default="NOR-MLP-B", show_default=True)
@click.option("--eps", default=0.02, show_default=True, type=float)
@click.option("--samples", default=40, show_default=True, type=click.IntRange(1, 10000),
              help="First N test images (LP-ALL on each).")
@click.option("--workers", "worker_counts", default="1,2", show_default=True,
              help="Comma-separated worker counts of the embedded cluster.")
@click.option("--chunks", default="100", show_default=True,
              help="Comma-separated LP-ALL slice sizes (neurons per task).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write the rows to OUT.csv/.md/.tex with provenance.")
@click.option("--json", "as_json", is_flag=True)
def bench_scaling(model, eps, samples, worker_counts, chunks, out, as_json) -> None:
    """LP-ALL sweep throughput (LPs per second) on an embedded dask cluster of 1, 2, ...
    single-threaded workers, and the task overhead against the solve time per task. Each run
    uses a fresh store; the wall time counts from the cluster being up to the last outcome."""
    import tempfile

    from lpbench.cli import _eps
    from lpbench.store import Store
    from lpbench.sweep import parse_spec, run_sweep

    from lpbench.report.writers import provenance
    prov = provenance()  # the code that runs is the code of the start
    rows = []
    combos = [(int(w), int(c)) for w in worker_counts.split(",") for c in chunks.split(",")]
    for w, c in tqdm(combos, desc="bench scaling", file=sys.stderr, disable=as_json):
        spec = parse_spec({"name": f"scaling-{w}-{c}", "models": [model], "epsilons": [_eps(eps)],
                           "methods": ["lp-all"], "samples": samples, "lp_chunk": c})
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "s.sqlite"
            started: list[float] = []
            report = run_sweep(spec, store, workers=w, on_start=lambda *_: started.append(time.perf_counter()))
            wall = time.perf_counter() - started[0]
            with Store(store) as st:
                f = st.frame()
        stats = f.stats.map(json.loads)
        lps = int(stats.map(lambda s: s.get("lps_solved", 0)).sum())
        compute = float(f.time_s.sum())
        rows.append({"model": model, "eps": eps, "samples": samples, "workers": w, "lp_chunk": c,
                     "tasks": report.tasks, "lps": lps, "wall_s": wall, "lps_per_s": lps / wall,
                     "compute_s": compute, "compute_per_task_ms": 1e3 * compute / report.tasks,
                     "overhead_per_task_ms": 1e3 * max(0.0, w * wall - compute) / report.tasks,
                     "errors": int((f.status == "error").sum())})
    base = {r["lp_chunk"]: r["lps_per_s"] for r in rows if r["workers"] == min(int(v) for v in worker_counts.split(","))}
    for r in rows:
        r["speedup"] = r["lps_per_s"] / base[r["lp_chunk"]]
    if out:
        _write(rows, out, prov, "lpbench bench scaling: LP-ALL sweep throughput on dask", SCALING_NOTES)
    show(rows, as_json)


SCALING_NOTES = ("LPs: per-neuron and margin LPs solved (stable neurons and redundant sides skipped). compute: "
                 "seconds inside the tasks (cheap bounds, LP slices, margin LPs), summed; overhead per task: "
                 "(workers x wall - compute) / tasks, i.e. scheduling, transfer and idle time charged to each "
                 "task; speedup: LPs per second against the fewest workers, same slice size.")


from lpbench.bound_commands import bench_radius  # noqa: E402  (radius bench, issue 7)
bench.add_command(bench_radius)

from lpbench.certificates.bench import bench_certificates  # noqa: E402  (certificates bench, issue 8)
bench.add_command(bench_certificates)

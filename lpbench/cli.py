"""The ``lpbench`` command line. Bad input ends with a one-line error and exit status 2."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from lpbench.errors import LpbenchError


def _methods(value: str) -> list[str]:
    from lpbench.methods import get_method
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise LpbenchError("no methods given")
    for m in names:
        get_method(m)
    return names


def _eps(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise LpbenchError(f"epsilon must be a finite number >= 0, got {value}")
    return value


@click.group()
@click.version_option(package_name="lpbench")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where data sets and fetched models are cached (default $LPBENCH_DATA_DIR or ~/.cache/lpbench).")
def cli(data_dir: str | None) -> None:
    """lpbench: exact-versus-relaxed verification benchmarks (Salman et al. 2019)."""
    if data_dir:
        os.environ["LPBENCH_DATA_DIR"] = data_dir


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """List the models of the zoo."""
    from lpbench.zoo import list_models
    infos = list_models()
    if as_json:
        click.echo(json.dumps([{"name": m.name, "arch": m.arch, "dataset": m.dataset, "training": m.training,
                                "train_eps": m.train_eps, "table1_eps": list(m.table1_eps)} for m in infos], indent=1))
        return
    click.echo(f"{'name':24} {'dataset':8} {'arch':18} {'training':9} {'train_eps':>9}  table1_eps")
    for m in infos:
        teps = "-" if m.train_eps is None else f"{m.train_eps:.4g}"
        click.echo(f"{m.name:24} {m.dataset:8} {m.arch:18} {m.training.split()[0]:9} {teps:>9}  "
                   f"{','.join(f'{e:g}' for e in m.table1_eps) or '-'}")




def _time_limit_option(f):
    """``--time-limit`` and ``--clock`` (what the limit counts) of the MILP."""
    f = click.option("--clock", type=click.Choice(["cpu", "wall"]), default="cpu", show_default=True,
                     help="What --time-limit counts: the solving thread's CPU seconds (the same work "
                          "however busy the machine is) or wall-clock seconds.")(f)
    return click.option("--time-limit", type=float, default=3600.0, show_default=True,
                        help="MILP time limit per sample, seconds (> 0).")(f)

_tightening_option = click.option("--tightening", type=click.Choice(["interval", "lp-greedy", "lp-all"]),
                                  default="lp-all", show_default=True,
                                  help="Pre-activation bounds used by the MILP.")


@cli.command()
@click.argument("model")
@click.option("--eps", type=float, required=True, help="Perturbation radius.")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1"]), default="linf", show_default=True)
@click.option("--methods", default="pgd,ibp,crown,lp-greedy", show_default=True,
              help="Comma-separated method names (see `lpbench methods`).")
@click.option("--samples", default="0:100", show_default=True, help="Test-set samples: N or A:B.")
@click.option("--dataset", default=None, help="Data set to draw samples from (default: the model's own).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--backend", type=click.Choice(["highs", "cvxpy", "pulp"]), default="highs", show_default=True,
              help="LP solver of lp-all / lp-last.")
@_time_limit_option
@_tightening_option
@click.option("--json", "as_json", is_flag=True, help="Per-sample outcomes as JSON lines.")
def verify(model: str, eps: float, norm: str, methods: str, samples: str, dataset: str | None,
           device: str, batch_size: int, backend: str, time_limit: float, clock: str, tightening: str,
           as_json: bool) -> None:
    """Verify MODEL on test samples with the given methods and print a summary."""
    from lpbench.data import load_dataset
    from lpbench.experiments.api import sample_ids
    from lpbench.methods import get_method, verify as run
    from lpbench.problem import Perturbation
    from lpbench.zoo import load_model, model_info

    names = _methods(methods)
    pset = Perturbation(_eps(eps), norm)
    _check_device(device)
    info = model_info(model)
    net = load_model(model)
    data = load_dataset(dataset or info.dataset, "test")
    ids = sample_ids(samples, len(data.labels))
    net.check_input_shape(data.images.shape[1:])
    options = {**_lp_options(backend, cascade=False), **_milp_options(time_limit, tightening, backend, clock)}
    outs = []
    with tqdm(total=len(names) * len(ids), desc=f"{model} {pset.describe()}", unit="outcome", disable=as_json,
              file=sys.stderr) as bar:  # MILP and LP methods report sample by sample, the others once done
        for name in names:
            seen = bar.n
            outs += run(net, data.images[ids], data.labels[ids], pset, [name], ids=ids, device=device,
                        batch_size=batch_size, options=options, progress=bar.update)
            bar.update(len(ids) - (bar.n - seen))
    if as_json:
        from lpbench.report.writers import json_line
        for o in outs:
            click.echo(json_line({**o.to_record(), "margin_lower": o.margin_lower}))
    falsified = {o.sample for o in outs if o.status.value == "falsified"}
    click.echo(f"{model}  {pset.describe()}  {len(ids)} samples", err=as_json)
    for name in names:
        mine = [o for o in outs if o.method == name]
        counts = {s: sum(o.status.value == s for o in mine) for s in ("verified", "falsified", "unknown", "timeout", "error")}
        kind = get_method(name).kind
        bound = (f"robust error >= {100 * counts['falsified'] / len(ids):6.2f}%" if kind == "attack"
                 else f"robust error <= {100 * (len(ids) - counts['verified']) / len(ids):6.2f}%")
        t = sum(o.time_s for o in mine) / len(ids)
        click.echo(f"  {name:10} {bound}   " + " ".join(f"{k}={v}" for k, v in counts.items() if v)
                   + f"   {1e3 * t:.2f} ms/sample", err=as_json)
    bad = falsified & {o.sample for o in outs if o.status.value == "verified"}
    if bad:
        raise LpbenchError(f"soundness violation: samples {sorted(bad)} both verified and falsified")


@cli.command("methods")
def list_methods() -> None:
    """List the registered verification methods."""
    from lpbench.methods import REGISTRY
    from lpbench.plugins import LOAD_ERRORS
    for m in REGISTRY.values():
        click.echo(f"{m.name:12} {m.kind:7} {m.summary}" + (f"  [{m.reference}]" if m.reference else ""))
    for name, why in LOAD_ERRORS.items():
        click.echo(f"warning: plugin {name} (entry point lpbench.verifiers) failed to load: {why}", err=True)


@cli.command()
@click.option("--samples", default=None, help="First N test images or A:B (default: all 10,000).")
@click.option("--quick", is_flag=True, help="The first 300 test images (a few minutes on 2 cores).")
@click.option("--methods", default="pgd,lp-greedy,crown,fast-lin,ibp", show_default=True)
@click.option("--rows", default=None, help="Comma-separated row numbers (1-11) to run; default all.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--store", type=click.Path(dir_okay=False), default="results/lpbench.sqlite", show_default=True,
              help="SQLite results store; finished outcomes are reused, so an interrupted run resumes.")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--pgd-steps", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--pgd-restarts", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--backend", type=click.Choice(["highs", "cvxpy", "pulp"]), default="highs", show_default=True,
              help="LP solver of lp-all / lp-last.")
@click.option("--cascade/--no-cascade", default=True, show_default=True,
              help="lp-all / lp-last decide only samples that cheaper methods leave open.")
@_time_limit_option
@_tightening_option
def table1(samples, quick, methods, rows, device, store, out, pgd_steps, pgd_restarts, backend, cascade,
           time_limit, clock, tightening) -> None:
    """Regenerate Table 1 of Salman et al. 2019 (bounds on the MNIST robust error)."""
    from lpbench.experiments.api import table1 as run
    from lpbench.experiments.table1 import parse_rows, table1_rows
    from lpbench.report.writers import provenance

    names = _methods(methods)
    _check_device(device)
    if quick and samples is None:
        samples = "300"
    chosen, row_tag = parse_rows(rows)
    chosen = chosen or table1_rows()
    options = {"pgd": {"steps": pgd_steps, "restarts": pgd_restarts}, **_lp_options(backend, cascade)}
    if "milp" in names:
        options.update(_milp_options(time_limit, tightening, backend, clock))
    from lpbench.experiments.api import sample_ids
    per_row = len(sample_ids(samples, 10000)) * (len(names) + 1)
    bars: dict = {}

    def progress(row, method, k):
        key = (row.model, row.eps)
        if key not in bars:
            for b in bars.values():
                b.close()
            bars.clear()
            bars[key] = tqdm(total=per_row, desc=f"{row.model} eps={row.eps:g}", unit="outcome", file=sys.stderr)
        bars[key].set_postfix_str(method)
        bars[key].update(k)

    prov = provenance(device=device,
                      pgd=f"{pgd_steps} steps x {pgd_restarts} restarts, step 2.5*eps/steps, margin+CE losses")
    df = run(samples, ["clean", *names], chosen, device=device, store=store, options=options, progress=progress)
    for b in bars.values():
        b.close()
    n = int(df.n_samples.iloc[0])
    prov["samples"] = f"MNIST test images {_describe(samples, n)}"
    if "milp" in names:
        prov["milp"] = (f"time limit {time_limit:g} {clock} s per sample, {tightening} bound tightening; "
                        "PGD, the cheap bounds and a targeted PGD first")
    tag = "" if samples is None else f"_random{n}" if str(samples).startswith("random:") else f"_{n}"
    _write_table1(df, Path(out) / f"table1{tag}{row_tag}", prov, store)


def _write_table1(df, stem: Path, prov: dict, store) -> None:
    """Table 1 to ``stem``.{csv,md,tex} in sections; an error if any sample is both verified and
    falsified."""
    from lpbench.report.writers import write_table

    prov["store"] = f"{store} (outcomes computed {_span(store)})"
    pct = [c for c in df.columns if c.endswith("_pct") and not c.startswith("paper_")]
    sections = {
        "Robust error bounds (%), this run": ["network", "epsilon", "n_samples", *pct, "conflicts"],
        "Salman et al. 2019, Table 1 (%)": ["network", "epsilon", *[c for c in df.columns if c.startswith("paper_")]],
        "Compute time (s, summed over samples)": ["network", "epsilon", *[c for c in df.columns if c.endswith("_time_s")]],
    }
    ci = [c for c in df.columns if c.endswith("_ci95")]
    if ci:
        sections["95% confidence intervals of the percentages (Wilson), this subset"] = ["network", "epsilon", *ci]
        sections["Projected compute time for all 10,000 images (s, from the time per image)"] = [
            "network", "epsilon", *[c for c in df.columns if c.endswith("_projected_full_s")]]
    if "milp_timeouts" in df.columns:
        sections["MILP: timeouts and errors (samples), time limit per sample"] = [
            "network", "epsilon", "milp_timeouts", "milp_unresolved"]
    est = [c for c in df.columns if c.endswith(("_upper_full_est", "_upper_full_est_interval", "_upper_full"))]
    if est:
        sections["Full-set estimates (%): LP-GREEDY run on all 10,000 images, plus each certifier's paired "
                 "difference from it on this random subset (95% interval)"] = ["network", "epsilon", *est,
                                                                             "paper_lp_all_upper_pct"]
    decided = [c for c in df.columns if c.endswith("_decided_by")]
    if decided:
        sections["Which method decided each sample (cascade)"] = ["network", "epsilon", *decided]
    paths = write_table(df, stem, prov, "Table 1: bounds on the MNIST robust error (%)", TABLE1_NOTES, sections)
    click.echo(_table1_view(df))
    click.echo("written: " + ", ".join(str(p) for p in paths))
    if int(df.conflicts.sum()):
        raise LpbenchError("soundness violation: some samples are both falsified and verified (column 'conflicts')")


@cli.group()
def reproduce() -> None:
    """Regenerate the tables of Salman et al. 2019 as resumable sweeps."""


@reproduce.command("table1")
@click.option("--samples", default=None,
              help="N (first N), A:B, or random:N[:SEED] (a fixed random subset); default all 10,000.")
@click.option("--quick", is_flag=True, help="The first 10 test images, MILP limited to 10 s per image.")
@click.option("--methods", default=",".join(m for m in ("pgd", "milp", "lp-all", "lp-last", "lp-greedy",
                                                       "crown", "fast-lin", "ibp")), show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the embedded cluster (default: one per core).")
@click.option("--scheduler", default=None, help="A running dask scheduler, e.g. tcp://host:8786.")
@click.option("--store", type=click.Path(dir_okay=False), default="results/lpbench.sqlite", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--anchor", is_flag=True,
              help="Over a random subset: also run LP-GREEDY on all 10,000 images and estimate each "
                   "certifier's full-set robust error by its paired difference from LP-GREEDY on the subset.")
@click.option("--rows", default=None,
              help="Comma-separated row numbers (1-11) to run and tabulate (default all); the output "
                   "name gets _rows<list>. Outcomes are shared with runs of other rows.")
@click.option("--rerun", type=click.Choice(["failed", "timeouts"]), default=None,
              help="Run the stored errors or timeouts of these rows again (say, MILP timeouts of an "
                   "older run whose limit counted wall-clock seconds on a busy machine).")
@_time_limit_option
def reproduce_table1(samples, quick, methods, workers, scheduler, store, out, time_limit, clock, anchor, rows,
                     rerun) -> None:
    """Table 1 (all 11 rows): test error, PGD, MILP lower/upper, LP-ALL, LP-LAST, LP-GREEDY,
    CROWN, Fast-Lin and IBP, MILP timeouts and compute time per column; resumable."""
    from lpbench.experiments.reproduce import reproduce_table1 as run, table1_spec
    from lpbench.experiments.table1 import parse_rows
    from lpbench.report.writers import provenance
    from lpbench.sweep.commands import SweepBar

    names = _methods(methods)
    if quick:
        samples = samples or "10"
        time_limit = min(time_limit, 10.0)
    options = {"pgd": {"steps": 100, "restarts": 5}}
    if "milp" in names:
        options.update(_milp_options(time_limit, "lp-all", "highs", clock))
    chosen, row_tag = parse_rows(rows)
    spec = table1_spec(samples if samples is not None else N_ALL, names, options, rows=chosen)
    prov = provenance(sweep=spec.to_json())  # the code that runs is the code of the start
    with SweepBar("reproduce table1") as bar:
        df, report = run(spec, store, scheduler=scheduler, workers=workers, progress=bar.progress,
                         on_start=bar.start, anchor=anchor, rerun=rerun)
    n = int(df.n_samples.iloc[0])
    prov["samples"] = f"MNIST test images {_describe(samples, n)}"
    if "milp" in names:
        prov["milp"] = (f"time limit {time_limit:g} {clock} s per sample, lp-all bound tightening; "
                        "PGD, the cheap bounds and a targeted PGD first")
    secs = float(df[[c for c in df.columns if c.endswith("_time_s")]].to_numpy().sum())
    prov["compute"] = (f"{secs:.0f} s = {secs / 3600:.2f} CPU-hours summed over every method and sample on the "
                       "machines that ran them (Salman et al. 2019: 22 CPU-years for their whole study)")
    tag = "" if n == 10000 else f"_random{n}" if str(samples).startswith("random:") else f"_{n}"
    _write_table1(df, Path(out) / f"table1{tag}{row_tag}", prov, store)


N_ALL = "0:10000"


TABLE1_NOTES = ("Attack columns (test_error, pgd) are lower bounds on the robust error: a sample counts "
                "only with a concrete counterexample re-checked in float64. Certifier columns (*_upper) are "
                "upper bounds: every sample not verified counts. `paper_*` columns are Salman et al. 2019, "
                "Table 1. The exact MILP gives a lower bound (misclassified or falsified) and an upper bound "
                "(not verified; `milp_unresolved` counts its timeouts and errors, which count as not "
                "verified). `conflicts` counts samples both falsified and verified (must be 0). fast-lin and "
                "lp-greedy coincide: with lower slope u/(u-l) the greedy dual of Wong & Kolter is Fast-Lin "
                "(Salman et al. 2019, Section 4). Over a random subset run with --anchor, `*_upper_full_est` "
                "estimates a certifier's robust error on all 10,000 images as LP-GREEDY's full-set rate "
                "(`lp_greedy_upper_full`, computed on every image) plus the certifier's mean paired "
                "difference from LP-GREEDY on the subset, with a 95% normal interval.")


def _lp_options(backend: str, cascade: bool) -> dict:
    return {m: {"backend": backend, "cascade": cascade} for m in ("lp-all", "lp-last")}


def _milp_options(time_limit: float, tightening: str, backend: str, clock: str = "cpu") -> dict:
    """The ``milp`` options of ``--time-limit``, ``--tightening``, ``--backend`` (CBC through
    PuLP for ``pulp``, HiGHS otherwise) and ``--clock``. The default CPU clock is left out of the
    options, and so of the store key: a verdict does not depend on the clock, and a stored timeout
    is run again with ``--rerun timeouts``."""
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise LpbenchError(f"--time-limit must be a positive number of seconds, got {time_limit}")
    return {"milp": {"time_limit": time_limit, "tightening": tightening,
                     "backend": backend if backend in ("highs", "pulp") else "highs",
                     **({"clock": clock} if clock != "cpu" else {})}}


def _span(store) -> str:
    from lpbench.store import Store
    with Store(store) as st:
        first, last = st.span()
    return f"{first} .. {last}"


def _describe(samples, n) -> str:
    if samples is None:
        return f"0:{n} (all)"
    s = str(samples)
    if s.startswith("random:"):
        return f"{s} (a fixed random subset of {n})"
    return s if ":" in s else f"0:{n}"


def _table1_view(df) -> str:
    cols = [c for c in df.columns if c.endswith("_pct") or c in ("network", "epsilon")]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}")


def _check_device(device: str) -> None:
    import torch
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise LpbenchError(f"unknown torch device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LpbenchError("--device cuda asked for, but torch sees no CUDA device")


def main() -> None:
    from lpbench.bench import bench
    from lpbench.bound_commands import neurons, radius
    from lpbench.experiments.commands import assemble, assemble_table2, compare, table2
    from lpbench.sweep.commands import sweep
    from lpbench.interop.commands import vnncomp
    from lpbench.milp.commands import distortion
    cli.add_command(distortion)
    cli.add_command(bench)
    cli.add_command(radius)
    cli.add_command(neurons)
    cli.add_command(sweep)
    cli.add_command(vnncomp)
    reproduce.add_command(table2)
    reproduce.add_command(assemble)
    reproduce.add_command(assemble_table2)
    cli.add_command(compare)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted; finished results are kept in the store", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except LpbenchError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; finished results are kept in the store", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

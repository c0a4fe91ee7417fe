"""``lpbench sweep ...``: run, inspect and export benchmark sweeps (see cluster/README.md)."""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from lpbench.errors import LpbenchError


class SweepBar:
    """The progress bar of a sweep (outcomes written, with status counts), opened once the
    cluster is up; prints the dashboard link. Use as a context manager."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def start(self, dashboard: str, total: int) -> None:
        if dashboard:
            click.echo(f"dask dashboard: {dashboard}", err=True)
        self.bar = tqdm(total=total, desc=self.desc, unit="outcome", file=sys.stderr)

    def progress(self, report, total: int) -> None:
        self.bar.update(report.written - self.bar.n)
        self.bar.set_postfix({k: report.counts.get(k, 0) for k in ("verified", "falsified", "unknown", "timeout", "error")})

    def __enter__(self) -> "SweepBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


@click.group()
def sweep() -> None:
    """Benchmark sweeps on dask.distributed (see cluster/README.md)."""


@sweep.command("run")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--scheduler", default=None, help="Address of a running dask scheduler, e.g. tcp://host:8786.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the embedded local cluster (default: one per core).")
@click.option("--rerun", type=click.Choice(["failed", "timeouts", "all"]), default=None,
              help="Compute again the stored outcomes that are errors, timeouts, or all of them.")
@click.option("--store", type=click.Path(dir_okay=False), default="results/lpbench.sqlite", show_default=True)
@click.option("--connect-timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for --scheduler.")
def sweep_run(spec: str, scheduler: str | None, workers: int | None, rerun: str | None, store: str,
              connect_timeout: float) -> None:
    """Run (or resume) the sweep in SPEC (TOML): only outcomes missing from the store are computed."""
    from lpbench.sweep import load_spec, run_sweep

    if scheduler and workers:
        raise LpbenchError("give --scheduler or --workers, not both")
    sw = load_spec(spec)
    click.echo(f"sweep {sw.name}: {len(sw.models)} model(s), {len(sw.methods)} method(s); spec {sw.to_json()}",
               err=True)
    with SweepBar(f"sweep {sw.name}") as bar:
        report = run_sweep(sw, store, scheduler=scheduler, workers=workers, rerun=rerun,
                           connect_timeout=connect_timeout, progress=bar.progress, on_start=bar.start)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing new"
    click.echo(f"sweep {sw.name}: {report.written} outcomes written ({counts}), {report.skipped} already "
               f"stored, {report.tasks} tasks, {report.wall_s:.1f} s; store {store}")


@sweep.command("status")
@click.argument("name")
@click.option("--store", type=click.Path(dir_okay=False, exists=True), default="results/lpbench.sqlite",
              show_default=True)
def sweep_status(name: str, store: str) -> None:
    """Progress of sweep NAME per model, epsilon and method."""
    from lpbench.store import Store
    from lpbench.sweep.results import status
    with Store(store) as st:
        df = status(st, name)
    click.echo(df.to_string(index=False, formatters={"epsilon": "{:g}".format}, float_format=lambda v: f"{v:.1f}"))


@sweep.command("export")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.parquet or FILE.csv")
@click.option("--store", type=click.Path(dir_okay=False, exists=True), default="results/lpbench.sqlite",
              show_default=True)
def sweep_export(name: str, out: str, store: str) -> None:
    """Write the outcomes of sweep NAME to parquet or CSV: those of every spec it has run with
    (say, Table 1 run a few --rows at a time), the specs travelling with them."""
    from lpbench.store import Store
    from lpbench.sweep.results import export
    with Store(store) as st:
        path = export(st, name, out)
    click.echo(f"written: {path}")


@sweep.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--store", type=click.Path(dir_okay=False), default="results/lpbench.sqlite", show_default=True)
def sweep_import(file: str, store: str) -> None:
    """Merge the outcomes of an export (FILE.parquet or FILE.csv) into the store, keeping the
    newest outcome of each key: a fresh checkout resumes a committed sweep this way."""
    from lpbench.store import Store
    from lpbench.sweep.results import import_export
    with Store(store) as st:
        spec, written, kept = import_export(st, file)
    click.echo(f"sweep {spec.name}: {written} outcomes merged into {store}, {kept} kept (the store's own "
               f"were as new)")

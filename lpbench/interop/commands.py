"""``lpbench vnncomp ...``: run VNN-COMP instances with lpbench's methods, export Table 1 as
instances, and export zoo models to ONNX."""

from __future__ import annotations

import json
import sys
from collections import Counter

import click
from tqdm import tqdm

from lpbench.errors import LpbenchError


@click.group()
def vnncomp() -> None:
    """VNN-COMP instances (ONNX network, VNNLIB property, timeout): run and export."""


@vnncomp.command("run")
@click.argument("instances", type=click.Path(dir_okay=False))
@click.option("--method", default="milp", show_default=True,
              help="A registered method (milp, lp-all, lp-last, crown, ibp, pgd, ...; see `lpbench methods`).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="vnncomp-results", show_default=True,
              help="Directory for results.csv and results/<instance>.txt.")
@click.option("--options", "options_json", default=None,
              help='Per-method options as JSON, e.g. \'{"milp": {"tightening": "lp-greedy"}}\'.')
def run(instances: str, method: str, out_dir: str, options_json: str | None) -> None:
    """Solve every row of INSTANCES (a VNN-COMP instances.csv: onnx,vnnlib,timeout; paths relative
    to its directory) and write one VNN-COMP result file per instance plus results.csv."""
    from lpbench.interop.vnncomp import read_instances, run_instances
    try:
        options = json.loads(options_json) if options_json else None
    except json.JSONDecodeError as e:
        raise LpbenchError(f"--options is not valid JSON: {e}") from None
    if options is not None and not isinstance(options, dict):
        raise LpbenchError("--options must be a JSON object of per-method objects")
    total = len(read_instances(instances))
    counts: Counter = Counter()
    with tqdm(total=total, desc=f"vnncomp {method}", unit="instance", file=sys.stderr) as bar:
        def progress(inst, ans) -> None:
            counts[ans.result] += 1
            if ans.result == "error":
                tqdm.write(f"instance {inst.index} ({inst.onnx}, {inst.vnnlib}): error: {ans.message}", file=sys.stderr)
            bar.update(1)
            bar.set_postfix(dict(counts))
        run_instances(instances, method, out_dir, options, progress)
    click.echo(f"{total} instance(s): " + ", ".join(f"{k} {counts.get(k, 0)}" for k in
                                                    ("sat", "unsat", "timeout", "unknown", "error")))
    click.echo(f"results: {out_dir}/results.csv")


@vnncomp.command("export")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="vnncomp-table1", show_default=True)
@click.option("--samples", type=click.IntRange(min=1), default=10, show_default=True,
              help="The first N test samples per (model, epsilon).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Timeout written into instances.csv, seconds.")
@click.option("--models", default=None, help="Comma-separated Table 1 models (default: all of its rows).")
def export(out_dir: str, samples: int, timeout: float, models: str | None) -> None:
    """Write Table 1 of Salman et al. 2019 (its models and epsilons) as VNN-COMP instances:
    onnx/, vnnlib/ and instances.csv."""
    from lpbench.experiments.table1 import table1_rows
    from lpbench.interop.benchmark import export_table1
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if names is not None:
        known = {r.model for r in table1_rows()}
        bad = [m for m in names if m not in known]
        if bad:
            raise LpbenchError(f"not Table 1 model(s): {bad}; Table 1 has {sorted(known)}")
    path = export_table1(out_dir, samples, timeout, names)
    n = sum(1 for _ in open(path))
    click.echo(f"{n} instance(s) written to {path}")


@vnncomp.command("onnx")
@click.argument("model")
@click.argument("output", type=click.Path(dir_okay=False))
def onnx_cmd(model: str, output: str) -> None:
    """Export the zoo MODEL to the ONNX file OUTPUT (input X: (1, *shape), output Y: (1, classes))."""
    from lpbench.interop.onnx_export import export_onnx
    from lpbench.zoo import load_model
    export_onnx(load_model(model), output)
    click.echo(f"{model} written to {output}")

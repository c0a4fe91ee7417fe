"""``lpbench reproduce table2``: the command-line face of :mod:`lpbench.experiments.table2`."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
from tqdm import tqdm

from lpbench.errors import LpbenchError
from lpbench.radius import MAX_OPEN

TABLE2_NOTES = (
    "Radii are l_inf epsilons x 1e-3, means over the `n_correct` samples the model classifies correctly "
    "(a misclassified sample has distortion 0 and no gap; the searches still run and are checked). `pgd` is the upper end: the smallest "
    "epsilon at which PGD found an adversarial example re-checked in float64. Certifier columns are the "
    "largest epsilon the method verified; `milp` the largest epsilon the MILP verified and `milp_upper` "
    "the smallest epsilon with a re-checked counterexample (a MILP-falsified probe or PGD's), so the minimum "
    "distortion lies in (milp, milp_upper]; `milp_exact` counts the samples where that interval is within "
    "the tolerance (a MILP probe that timed out bounds nothing). `*_gap_median_pct` is the median over the "
    "correctly classified samples of 100 (eps_PGD - eps_cert) / eps_PGD; `*_gap_ci95` a distribution-free 95% interval of that "
    "median (order statistics x_(k), x_(n+1-k), k = 2 for n = 10). `violations` counts certified radii "
    "above the attacked one or above the MILP's upper end (must be 0). Search: bisection to an absolute "
    "tolerance; PGD, IBP, CROWN and LP-GREEDY on [0, eps_max]; LP-LAST and LP-ALL on [r(LP-GREEDY), "
    "r(PGD)] (they dominate LP-GREEDY); the MILP on [r(LP-ALL), r(PGD)]; these three gallop up from the "
    "lower end before bisecting. A MILP probe that timed out is open: the MILP's search goes on below the "
    f"lowest open probe, then above the highest (at most {MAX_OPEN} open probes), so a falsified probe there still "
    "lowers `milp_upper`. Its decided probes count from every table-2 run in the store (a proof or a "
    "counterexample holds whatever the time limit), and so its probes, timeouts and seconds are those "
    "of all those runs for the sample; a MILP search still open (`finished` False) reports the lower "
    "end of its bracket so far, an epsilon it verified (or LP-ALL's radius, before its first probe). "
    "A reported certified radius is "
    "always an epsilon at which the method verified the sample; bisection assumes verification is "
    "monotone in epsilon (true for IBP and the LPs, assumed for CROWN's adaptive slopes).")


class _Bar:
    def __init__(self) -> None:
        self.bar = None

    def start(self, dashboard: str, total: int) -> None:
        if dashboard:
            click.echo(f"dask dashboard: {dashboard}", err=True)
        self.bar = tqdm(total=total, desc="reproduce table2", unit="search", file=sys.stderr)

    def progress(self, report, left: int) -> None:
        self.bar.update(self.bar.total - left - self.bar.n)
        self.bar.set_postfix(probes=report.written, **({"cancelled": report.cancelled} if report.cancelled else {}))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("table2")
@click.option("--models", default=None,
              help="Comma-separated models or families (e.g. MLP-2-100,NOR-CNN-SMALL); default every "
                   "experiment-2 MNIST model.")
@click.option("--methods", default="pgd,ibp,crown,lp-greedy,lp-last,lp-all,milp", show_default=True)
@click.option("--lp-all", "lp_all", type=click.Choice(["required", "all", "none"]), default="required",
              show_default=True, help="Models that get the LP-ALL and LP-LAST searches: the four families "
                                      "the paper's Table 2 needs, every model, or none.")
@click.option("--milp-models", default="MLP-2-100", show_default=True,
              help="Models or families that get the exact MILP distortion ('none' for no MILP).")
@click.option("--samples", default=None,
              help="MNIST test ids: N (the first N), A:B or I,J,... (default: the manifest's ten).")
@click.option("--quick", is_flag=True, help="MLP-2-100 models, the first 3 of the ten samples, MILP 10 s per probe.")
@click.option("--tol", type=float, default=1e-4, show_default=True, help="Bisection tolerance (absolute epsilon).")
@click.option("--eps-max", type=float, default=0.5, show_default=True, help="Upper end of the searches.")
@click.option("--time-limit", type=float, default=600.0, show_default=True, help="MILP seconds per probe.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the embedded cluster (default: one per core).")
@click.option("--scheduler", default=None, help="A running dask scheduler, e.g. tcp://host:8786.")
@click.option("--rerun", type=click.Choice(["timeouts"]), default=None,
              help="Run the stored probes of these models and samples that timed out again (the searches go on from there).")
@click.option("--replay", is_flag=True,
              help="Run no probe: write the tables from the stored probes, open searches with their "
                   "brackets so far (e.g. while a long run is stopped).")
@click.option("--store", type=click.Path(dir_okay=False), default="results/lpbench.sqlite", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
def table2(models, methods, lp_all, milp_models, samples, quick, tol, eps_max, time_limit, workers,
           scheduler, rerun, replay, store, out) -> None:
    """Table 2 and Figure 3: certified and attacked minimum l_inf distortion on the ten test
    samples for the experiment-2 MNIST models (bisection searches, resumable, on dask)."""
    from lpbench.experiments import table2 as t2
    from lpbench.experiments.api import sample_ids
    from lpbench.experiments.projection import lp_all_projections
    from lpbench.report.figure3 import plot_gaps
    from lpbench.report.writers import provenance, write_table

    if not (math.isfinite(time_limit) and time_limit > 0):
        raise LpbenchError(f"--time-limit must be a positive number of seconds, got {time_limit}")
    if replay and rerun:
        raise LpbenchError("--replay runs no probe: it cannot --rerun any")
    if quick:
        models, samples = models or "MLP-2-100", samples or "quick"
        time_limit = min(time_limit, 10.0)
    names = _models(models)
    lp_models = {"all": names, "none": [],
                 "required": [m for m in names if t2.family(m) in t2.LP_ALL_REQUIRED]}[lp_all]
    milp = [] if milp_models.strip().lower() == "none" else [m for m in _models(milp_models) if m in names]
    ids = ()
    if samples == "quick":
        from lpbench.zoo import ten_test_images
        ids = tuple(int(i) for i in ten_test_images()[2][:3])
    elif samples is not None:
        ids = tuple(int(i) for i in sample_ids(samples, 10000))
    options = {"pgd": {"steps": 100, "restarts": 5},
               "milp": {"time_limit": time_limit, "tightening": "lp-all", "backend": "highs"}}
    spec = t2.Table2Spec(tuple(names), tuple(m.strip() for m in methods.split(",") if m.strip()),
                         tuple(lp_models), tuple(milp), ids, eps_max, tol, "linf", options)
    prov = provenance(spec=spec.to_json())
    bar = _Bar()
    try:
        table, per_sample, report = t2.run_table2(spec, store, scheduler=scheduler, workers=workers,
                                                  progress=bar.progress, on_start=bar.start, rerun=rerun,
                                                  replay=replay)
    finally:
        bar.close()
    if rerun:
        click.echo(f"ran again: {report.dropped} stored probe(s) that had timed out")
    proj = lp_all_projections(spec, per_sample, store)
    if len(proj):
        cols = [f"{c}_{end}" for c in ("eps", "unstable", "probe_s", "cpu_h") for end in ("low", "high")]
        table = table.merge(proj[["model", *cols]].add_prefix("lp-all_proj_").rename(
            columns={"lp-all_proj_model": "model"}), on="model", how="left")
    prov["samples"] = "MNIST test ids " + ",".join(str(i) for i in (ids or t2._ids(spec)))
    prov["search"] = (f"bisection, tol {tol:g}, eps_max {eps_max:g}, MILP {time_limit:g} s per probe; LP-LAST, "
                      f"LP-ALL and MILP gallop up from their lower end (probes <= {t2.GROW:g}x it) until one fails; "
                      f"the MILP's first probe is PGD's radius - tol, its search goes on around its timed-out probes "
                      f"(at most {MAX_OPEN} of them), and targets a MILP probe proved are not solved again below it")
    if replay:
        prov["search"] += f"; replayed from the store with {int((~per_sample.finished).sum())} search(es) still open"
    secs = float(per_sample.time_s.sum())
    prov["compute"] = (f"{secs:.0f} s = {secs / 3600:.2f} CPU-hours summed over every probe on this machine "
                       "(Salman et al. 2019: 22 CPU-years for their whole study)")
    tag = "" if not (quick or samples or models) else "_quick" if quick else "_subset"
    stem = Path(out) / f"table2{tag}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    per_sample.to_csv(stem.with_name(stem.name + "_samples.csv"), index=False, float_format="%.6g")
    sections = _table2_sections(table)
    if len(proj):
        prov["projection"] = ("LP-ALL cost of the models without it: per-neuron LPs of each LP layer timed at the "
                              "median LP-GREEDY radius r (low) and at 1.25 r (high) on this machine, x unstable "
                              "neurons (cheap bounds) x mean probes per LP-ALL search x samples; "
                              f"{proj.cpu_h_low.sum():.1f} to {proj.cpu_h_high.sum():.1f} CPU-hours in all")
        click.echo(proj.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    paths = write_table(table, stem, prov, "Table 2: bounds on the minimum l_inf adversarial distortion (MNIST)",
                        TABLE2_NOTES, sections)
    fig = stem.with_name(stem.name.replace("table2", "figure3"))
    paths += plot_gaps(table, [m for m in spec.methods if m not in ("pgd", "milp")],
                       [fig.with_suffix(".png"), fig.with_suffix(".pdf")], prov)
    click.echo(table[sections[MEAN]].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    click.echo("written: " + ", ".join(str(p) for p in paths))
    if int(table.violations.sum()):
        raise LpbenchError("soundness violation: a certified radius exceeds an attacked one (column 'violations')")
    if replay and not bool(table.finished.all()):
        click.echo(f"{int((~per_sample.finished).sum())} search(es) still open: their brackets so far are in "
                   "the tables; run the command without --replay to go on")
    elif not bool(table.finished.all()):
        raise LpbenchError("some searches did not finish (errors); run the command again to resume them")


MEAN = "Mean radius (epsilon x 1e-3)"


def _table2_sections(table) -> dict[str, list[str]]:
    """The Markdown / LaTeX sections of a Table 2."""
    cols = list(table.columns)
    sections = {MEAN: ["model", "n_samples", "n_correct", *[c for c in cols if c.endswith("_mean_e3")]],
                "Median gap to PGD (%) and its 95% interval": ["model", *[c for c in cols if "_gap_" in c]],
                "Exactness and checks": ["model", *[c for c in ("milp_exact", "violations", "finished") if c in cols]],
                "Compute (s, summed over probes)": ["model", *[c for c in cols if c.endswith("_time_s")]]}
    if any("_proj_" in c for c in cols):
        sections["LP-ALL not run here: projected cost"] = ["model", *[c for c in cols if "_proj_" in c]]
    return sections


def _models(spec: str | None) -> list[str]:
    from lpbench.experiments.table2 import FAMILIES, table2_models
    from lpbench.zoo import list_models
    if spec is None:
        return table2_models()
    have = {m.name for m in list_models()}
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in FAMILIES:
            out += table2_models([part])
        elif part in have:
            out.append(part)
        else:
            raise LpbenchError(f"unknown model or family {part!r}; families: {', '.join(FAMILIES)}")
    return list(dict.fromkeys(out))


@click.command("compare")
@click.argument("method")
@click.option("--models", default=None, help="Comma-separated Table 1 networks (default: all 11 rows).")
@click.option("--eps", "eps", default=None, help="Comma-separated epsilons to keep (default: every row's).")
@click.option("--samples", default="100", show_default=True, help="N (first N), A:B or random:N[:SEED].")
@click.option("--time-limit", type=float, default=60.0, show_default=True,
              help="MILP seconds per sample for the barrier check.")
@click.option("--store", type=click.Path(dir_okay=False), default="results/lpbench.sqlite", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
def compare(method, models, eps, samples, time_limit, store, out) -> None:
    """METHOD against LP-GREEDY, LP-ALL (the optimal layer-wise bound) and the MILP on Table 1's
    rows: certified robust error, share of the LP-GREEDY-to-LP-ALL gap closed, and the barrier
    check (samples beyond LP-ALL, checked for soundness with the MILP)."""
    from lpbench.experiments.compare import compare as run
    from lpbench.experiments.table1 import table1_rows
    from lpbench.methods import get_method
    from lpbench.report.writers import provenance, write_table

    get_method(method)
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise LpbenchError(f"--time-limit must be a positive number of seconds, got {time_limit}")
    rows = table1_rows()
    if models:
        keep = [m.strip() for m in models.split(",") if m.strip()]
        unknown = sorted(set(keep) - {r.model for r in rows})
        if unknown:
            raise LpbenchError(f"not a Table 1 network: {', '.join(unknown)}")
        rows = [r for r in rows if r.model in keep]
    if eps:
        try:
            wanted = [float(e) for e in eps.split(",")]
        except ValueError:
            raise LpbenchError(f"--eps must be comma-separated numbers, got {eps!r}") from None
        rows = [r for r in rows if any(math.isclose(r.eps, e) for e in wanted)]
    if not rows:
        raise LpbenchError("no Table 1 row matches --models / --eps")
    prov = provenance()
    bar = tqdm(total=len(rows) * 4, desc=f"compare {method}", unit="column", file=sys.stderr)
    try:
        df = run(method, rows, samples, store=store, milp_time_limit=time_limit,
                 progress=lambda row, m, n: bar.update(1) if n == 0 else None)
    finally:
        bar.close()
    paths = write_table(df, Path(out) / f"compare_{method}", prov, f"{method} against the convex relaxation barrier",
                        COMPARE_NOTES)
    click.echo(df.drop(columns=["unsound_samples"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    click.echo("written: " + ", ".join(str(p) for p in paths))
    if int(df.beyond_barrier.sum()):
        click.echo(f"WARNING: {method} goes beyond the convex relaxation barrier on {int(df.beyond_barrier.sum())} "
                   "sample(s): tighter than LP-ALL, which no sound layer-wise convex relaxation can be. Either it "
                   "is outside that framework or it is unsound; the MILP check is in column 'unsound'.", err=True)
    if int(df.unsound.sum()):
        raise LpbenchError(f"{method} is UNSOUND on {int(df.unsound.sum())} sample(s) (see column "
                           "'unsound_samples'): a claimed bound is violated by a concrete point or the MILP")


COMPARE_NOTES = (
    "Certified robust error (%, upper bounds: every sample not verified counts) of the method beside "
    "LP-GREEDY and LP-ALL, and PGD's lower bound. `gap_closed_pct` = 100 (LP-GREEDY - method) / (LP-GREEDY "
    "- LP-ALL): 100 means the method is as tight as the optimal layer-wise relaxation. `beyond_barrier`: "
    "samples the method verifies and LP-ALL does not, or with a margin lower bound above LP-ALL's; "
    "`unsound`: samples where a claimed lower bound exceeds the margin at a concrete point (PGD's, or the "
    "MILP's counterexample) or the MILP falsifies a verified sample. Errors of the method count as not "
    "verified.")


@click.command("assemble")
@click.argument("sources", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default="results/table1_assembled", show_default=True,
              help="Output stem: writes STEM.csv, STEM.md and STEM.tex.")
def assemble(sources, out) -> None:
    """One Table 1 from the Table 1 CSVs of several runs (SOURCES): each (row, method) from the
    source that ran it on the most images, with its sample set and source named; differences
    between sources and the lower <= upper and theory-ordering checks listed. Recomputes nothing."""
    from lpbench.experiments.assemble import assemble as run
    from lpbench.report.writers import provenance, write_table

    stem = _assembled_stem(sources, out)
    df, srcs, diffs, checks = run(sources)
    spent = [c for c in df.columns if c.endswith("_time_s")]
    prov = provenance(sources="; ".join(f"{s.path.name} [{s.prov.get('command', '?')} at {s.prov.get('commit', '?')}, "
                                        f"{s.samples}]" for s in srcs))
    secs = float(df[spent].to_numpy(na_value=0.0).sum()) if spent else 0.0
    prov["compute"] = (f"{secs:.0f} s = {secs / 3600:.2f} CPU-hours summed over the columns shown, each on its "
                       "own sample set (Salman et al. 2019: 22 CPU-years for their whole study)")
    full = [c for c in df.columns if c.endswith("_projected_full_s")]
    if full:
        rest = float(df[full].to_numpy(na_value=0.0).sum())
        prov["projected"] = (f"{rest:.0f} s = {rest / 3600:.1f} CPU-hours to run the subset columns on all "
                             "10,000 images, from their measured time per image")
    pct = [c for c in df.columns if c.endswith("_pct") and not c.startswith("paper_")]
    methods = [c[:-8] for c in df.columns if c.endswith("_samples")]
    sections = {
        "Robust error bounds (%)": ["network", "epsilon", *pct],
        "Images behind each column (10000: the whole test set)": ["network", "epsilon",
                                                                  *[f"{m}_samples" for m in methods]],
        "Salman et al. 2019, Table 1 (%)": ["network", "epsilon", *[c for c in df.columns if c.startswith("paper_")]],
        "Compute time (s, summed over each column's images)": ["network", "epsilon", *spent],
    }
    if "milp_timeouts" in df.columns:
        sections["MILP timeouts (images), time limit per image"] = ["network", "epsilon", "milp_timeouts"]
    ci = [c for c in df.columns if c.endswith(("_ci95", "_upper_full_est", "_upper_full_est_interval"))]
    if ci:
        sections["Columns from a subset: 95% Wilson interval of the subset, and the full-set estimate anchored "
                 "on LP-GREEDY over all 10,000 images (95% interval)"] = ["network", "epsilon", *ci]
    sections["Source of each column"] = ["network", "epsilon", *[f"{m}_source" for m in methods]]
    paths = write_table(df, stem, prov, "Table 1: bounds on the MNIST robust error (%), assembled from several runs",
                        ASSEMBLE_NOTES, sections)
    paths += write_table(checks, stem.parent / f"{stem.name}_checks", prov, "", csv_only=True)
    failed = _report_checks(stem, checks, diffs,
                            "Checks (lower bounds <= upper bounds, and the theory's orderings, on shared sample sets)",
                            f" (every one in `{stem.name}_checks.csv`)",
                            "Differences between sources that ran the same column on the same images")
    click.echo(df[["network", "epsilon", *pct]].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    _echo_outcome(checks, diffs, paths)
    if len(failed):
        raise LpbenchError("check failed: " + "; ".join(f"{r.network} eps={r.epsilon:g} {r.check} "
                                                      f"({r.smaller:.2f} > {r.larger:.2f})" for r in failed.itertuples()))


def _assembled_stem(sources, out: str) -> Path:
    """The output stem of an assembled table, which must not overwrite one of its sources."""
    stem = Path(out)
    if any(Path(s).resolve() == stem.with_suffix(".csv").resolve() for s in sources):
        raise LpbenchError(f"--out {out} would overwrite a source; write the assembled table elsewhere")
    return stem


def _report_checks(stem: Path, checks, diffs, checks_head: str, where: str, diffs_head: str):
    """Append to ``stem``.md the checks' summary with the failed ones, and the differences between
    sources; returns the failed checks."""
    from lpbench.report.writers import to_markdown
    failed = checks[~checks.holds]
    summary = f"{int(checks.holds.sum())} of {len(checks)} hold{where}" + ("; these fail:" if len(failed) else ".")
    with stem.with_suffix(".md").open("a") as f:
        for head, frame, line in ((checks_head, failed, summary), (diffs_head, diffs, f"{len(diffs)} found.")):
            f.write(f"\n## {head}\n\n{line}\n\n" + (to_markdown(frame) + "\n" if len(frame) else ""))
    return failed


def _echo_outcome(checks, diffs, paths) -> None:
    click.echo(f"checks: {int(checks.holds.sum())} of {len(checks)} hold; {len(diffs)} difference(s) between sources")
    click.echo("written: " + ", ".join(str(p) for p in paths))


ASSEMBLE_NOTES = (
    "Each (row, method) comes from the source that ran it on the most test images (ties: the source named first "
    "on the command line); `*_samples` says how many and `*_source` which file. A column from a random subset is "
    "an estimate of the full-set figure, with its interval below. Attack columns (test error, PGD) and MILP lower "
    "are lower bounds on the robust error, certifier columns and MILP upper are upper bounds; the checks below "
    "compare them only where both ran on the same images.")


@click.command("assemble-table2")
@click.argument("sources", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default="results/table2_assembled", show_default=True,
              help="Output stem: STEM.{csv,md,tex}, STEM_samples.csv and the figure beside it.")
def assemble_table2(sources, out) -> None:
    """One Table 2 and Figure 3 from the Table 2 CSVs of several runs (SOURCES, each with its
    _samples.csv beside it): each (model, method) from the first source whose search of it
    finished; differences listed, every certified radius checked against every attacked radius
    and MILP upper end. Recomputes nothing."""
    from lpbench.experiments.assemble import assemble_table2 as run
    from lpbench.report.figure3 import plot_gaps
    from lpbench.report.writers import provenance, write_table

    stem = _assembled_stem(sources, out)
    table, radii, spec, srcs, diffs, checks = run(sources)
    prov = provenance(sources="; ".join(f"{k + 1}: {s.path.name} [{s.prov.get('command', '?')} at "
                                        f"{s.prov.get('commit', '?')}]" for k, s in enumerate(srcs)),
                      samples=srcs[0].prov.get("samples", "?"))
    for key in ("search", "projection"):
        if key in srcs[0].prov:
            prov[key] = srcs[0].prov[key] + " (of source 1)"
    secs = float(radii.time_s.sum())
    prov["compute"] = (f"{secs:.0f} s = {secs / 3600:.2f} CPU-hours summed over the probes of the searches shown "
                       "(Salman et al. 2019: 22 CPU-years for their whole study)")
    stem.parent.mkdir(parents=True, exist_ok=True)
    radii.to_csv(stem.with_name(stem.name + "_samples.csv"), index=False, float_format="%.6g")
    sections = {**_table2_sections(table), "Source of each method (source number: see provenance)": ["model", "sources"]}
    paths = write_table(table, stem, prov, "Table 2: bounds on the minimum l_inf adversarial distortion (MNIST), "
                        "assembled from several runs", TABLE2_NOTES, sections)
    failed = _report_checks(stem, checks, diffs,
                            "Checks (each sample's largest certified radius, over every source, against its least "
                            "attacked radius and MILP upper end)", "",
                            "Differences between sources that searched the same model and method")
    fig = stem.with_name(stem.name.replace("table2", "figure3") if "table2" in stem.name else stem.name + "_figure3")
    paths += plot_gaps(table, [m for m in spec.methods if m not in ("pgd", "milp")],
                       [fig.with_suffix(".png"), fig.with_suffix(".pdf")], prov)
    click.echo(table[sections[MEAN]].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    _echo_outcome(checks, diffs, paths)
    if len(failed) or int(table.violations.sum()):
        raise LpbenchError("soundness violation: a certified radius exceeds an attacked radius or a MILP upper end "
                           f"({len(failed)} sample(s) across sources, {int(table.violations.sum())} in the table)")

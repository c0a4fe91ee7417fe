"""``lpbench reproduce table1``: Table 1 of Salman et al. 2019 as one resumable sweep.

All 11 (network, epsilon) rows and every method of the ladder (PGD, MILP lower and upper, LP-ALL,
LP-LAST, LP-GREEDY, CROWN, Fast-Lin, IBP) run as a sweep (:mod:`lpbench.sweep`) on the embedded
cluster or any dask scheduler, so an interrupted run resumes and the same command scales to a
cluster. Over a subset of the 10,000 test images every percentage gets a 95% Wilson interval and
every method its projected full-set compute time (from its measured time per image).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from lpbench.experiments.table1 import summarize, table1_rows
from lpbench.store import Store
from lpbench.sweep import SweepReport, SweepSpec, experiment, parse_spec, run_sweep
from lpbench.sweep.runner import sample_set

METHODS = ("clean", "pgd", "milp", "lp-all", "lp-last", "lp-greedy", "crown", "fast-lin", "ibp")
N_TEST = 10000


def table1_spec(samples: Any, methods: Sequence[str] = METHODS, options: Mapping[str, Any] | None = None,
                name: str = "reproduce-table1", block: int = 500, lp_chunk: int = 100) -> SweepSpec:
    """The sweep of Table 1's rows (``clean`` always included)."""
    rows = table1_rows()
    models = list(dict.fromkeys(r.model for r in rows))
    methods = list(dict.fromkeys(["clean", *methods]))
    return parse_spec({"name": name, "models": models,
                       "epsilons": {m: [r.eps for r in rows if r.model == m] for m in models},
                       "methods": methods, "samples": samples, "block": block, "lp_chunk": lp_chunk,
                       "options": dict(options or {})}, "reproduce table1")


def reproduce_table1(spec: SweepSpec, store, *, scheduler: str | None = None, workers: int | None = None,
                     rerun: str | None = None, progress: Callable[[SweepReport, int], None] | None = None,
                     on_start: Callable[[str, int], None] | None = None) -> tuple[pd.DataFrame, SweepReport]:
    """Run (or resume) ``spec`` and summarise it as Table 1, with intervals and projections."""
    report = run_sweep(spec, store, scheduler=scheduler, workers=workers, rerun=rerun, progress=progress,
                       on_start=on_start)
    with Store(store) as st:
        frame = st.frame()
    _, ids, _ = sample_set(spec, spec.models[0])
    keys = {m: experiment(spec, m) for m in spec.methods}
    df = summarize(frame, table1_rows(), ids, spec.methods, keys=keys)
    return with_intervals(df, len(ids)), report


def wilson(k: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k/n, in percent."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def with_intervals(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """Over a subset: a ``*_ci95`` interval beside each percentage and ``*_projected_full_s``
    (measured seconds per image x 10,000) beside each time column."""
    if n >= N_TEST:
        return df
    df = df.copy()
    for col in [c for c in df.columns if c.endswith("_pct") and not c.startswith("paper_")]:
        df[col.replace("_pct", "_ci95")] = [
            "[{:.2f}, {:.2f}]".format(*wilson(round(v * n / 100), n)) for v in df[col]]
    for col in [c for c in df.columns if c.endswith("_time_s")]:
        df[col.replace("_time_s", "_projected_full_s")] = df[col] / n * N_TEST
    return df

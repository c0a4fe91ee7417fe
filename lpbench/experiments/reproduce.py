"""``lpbench reproduce table1``: Table 1 of Salman et al. 2019 as one resumable sweep.

All 11 (network, epsilon) rows and every method of the ladder (PGD, MILP lower and upper, LP-ALL,
LP-LAST, LP-GREEDY, CROWN, Fast-Lin, IBP) run as a sweep (:mod:`lpbench.sweep`) on the embedded
cluster or any dask scheduler, so an interrupted run resumes and the same command scales to a
cluster. Over a subset of the 10,000 test images every percentage gets a 95% Wilson interval and
every method its projected full-set compute time (from its measured time per image).

Over a random subset the upper bounds of the expensive certifiers also get a full-set estimate by
paired differences (:func:`anchored`): the cheap anchor ``ANCHOR`` runs on all 10,000 images, and
each certifier's rate is estimated as the anchor's exact full-set rate plus the mean, over the
subset, of the per-image difference "certifier leaves it open" minus "anchor leaves it open". The
two are strongly correlated per image, so the interval is several times narrower than the subset's
own (for LP-ALL on the 1,000-image subset about +-1 to +-2 points instead of +-3).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from lpbench.errors import LpbenchError
from lpbench.experiments.table1 import Row, summarize, table1_rows
from lpbench.store import Store
from lpbench.sweep import SweepReport, SweepSpec, experiment, parse_spec, run_sweep
from lpbench.sweep.runner import sample_set

#: The cheap certifier run on all 10,000 images to anchor the full-set estimates of a random subset.
ANCHOR = "lp-greedy"
METHODS = ("clean", "pgd", "milp", "lp-all", "lp-last", "lp-greedy", "crown", "fast-lin", "ibp")
N_TEST = 10000


def table1_spec(samples: Any, methods: Sequence[str] = METHODS, options: Mapping[str, Any] | None = None,
                name: str = "reproduce-table1", block: int = 500, lp_chunk: int = 100,
                rows: Sequence[Row] | None = None) -> SweepSpec:
    """The sweep of Table 1's rows (``rows``: a subset of them, default all; ``clean`` always
    included). Outcomes are stored under the same keys whichever rows a run names, so runs of
    different rows share one store and a later run of every row reuses them."""
    rows = table1_rows() if rows is None else list(rows)
    if not rows:
        raise LpbenchError("no Table 1 row to run")
    models = list(dict.fromkeys(r.model for r in rows))
    methods = list(dict.fromkeys(["clean", *methods]))
    return parse_spec({"name": name, "models": models,
                       "epsilons": {m: [r.eps for r in rows if r.model == m] for m in models},
                       "methods": methods, "samples": samples, "block": block, "lp_chunk": lp_chunk,
                       "options": dict(options or {})}, "reproduce table1")


def reproduce_table1(spec: SweepSpec, store, *, scheduler: str | None = None, workers: int | None = None,
                     rerun: str | None = None, progress: Callable[[SweepReport, int], None] | None = None,
                     on_start: Callable[[str, int], None] | None = None,
                     anchor: bool = False) -> tuple[pd.DataFrame, SweepReport]:
    """Run (or resume) ``spec`` and summarise it as Table 1, with intervals and projections; over
    a random subset that includes ``ANCHOR`` and with ``anchor``, also the anchor on all images and
    :func:`anchored`."""
    if anchor and not (str(spec.samples).startswith("random:") and ANCHOR in spec.methods):
        raise LpbenchError(f"full-set estimates need a random subset (--samples random:N) and {ANCHOR} "
                           "among the methods")
    report = run_sweep(spec, store, scheduler=scheduler, workers=workers, rerun=rerun, progress=progress,
                       on_start=on_start)
    _, ids, _ = sample_set(spec, spec.models[0])
    rows = spec_rows(spec)
    full = None
    if anchor and len(ids) < N_TEST:
        full = table1_spec("0:%d" % N_TEST, [ANCHOR], spec.options, name=spec.name + "-anchor",
                           block=spec.block, lp_chunk=spec.lp_chunk, rows=rows)
        run_sweep(full, store, scheduler=scheduler, workers=workers, rerun=rerun, progress=progress,
                  on_start=on_start)
    with Store(store) as st:
        frame = st.frame()
    keys = {m: experiment(spec, m) for m in spec.methods}
    df = summarize(frame, rows, ids, spec.methods, keys=keys)
    df = with_intervals(df, len(ids))
    if full is not None:
        df = anchored(df, frame, ids, keys, experiment(full, ANCHOR))
    return df, report


def spec_rows(spec: SweepSpec) -> list[Row]:
    """The Table 1 rows a sweep covers, in the paper's order."""
    return [r for r in table1_rows()
            if r.model in spec.epsilons and any(math.isclose(r.eps, e) for e in spec.epsilons[r.model])]


def anchored(df: pd.DataFrame, frame: pd.DataFrame, ids, keys: Mapping[str, str], anchor_key: str,
             z: float = 1.959963984540054) -> pd.DataFrame:
    """Full-set estimates of every certifier's upper bound from a random subset (module doc):
    ``{col}_upper_full_est`` (%) = anchor's full-set rate + 100 mean(open_M - open_anchor) over the
    subset, with ``{col}_upper_full_est_interval`` (95%) from the normal approximation of that mean."""
    from lpbench.methods import get_method
    df = df.copy()
    ids = np.asarray(sorted(int(i) for i in ids))

    def opened(rows: pd.DataFrame, method: str, key: str) -> pd.Series:
        """1.0 where ``method`` leaves the image open (not verified), by sample id."""
        part = rows[(rows.method == method) & (rows.experiment == key)]
        return part.set_index("sample").status.ne("verified").astype(float)

    per_row = [frame[(frame.model == n) & np.isclose(frame.epsilon, e)] for n, e in zip(df.network, df.epsilon)]
    full = []
    for (n, e), rows in zip(zip(df.network, df.epsilon), per_row):
        rate = opened(rows, ANCHOR, anchor_key)
        if len(rate) < N_TEST:
            raise RuntimeError(f"{n} eps={e}: the anchor {ANCHOR} has {len(rate)} of {N_TEST} images")
        full.append(100.0 * rate.mean())
    df[f"{ANCHOR.replace('-', '_')}_upper_full"] = full
    for m in keys:
        if get_method(m).kind == "attack" or m == ANCHOR:
            continue
        col = m.replace("-", "_")
        est, ci = [], []
        for rows, base in zip(per_row, full):
            d = (opened(rows, m, keys[m]).reindex(ids) - opened(rows, ANCHOR, keys[ANCHOR]).reindex(ids)).to_numpy()
            centre = base + 100.0 * d.mean()
            half = 100.0 * z * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
            est.append(min(100.0, max(0.0, centre)))  # a rate: the interval is clipped to [0, 100] too
            ci.append(f"[{max(0.0, centre - half):.2f}, {min(100.0, centre + half):.2f}]")
        df[f"{col}_upper_full_est"] = est
        df[f"{col}_upper_full_est_interval"] = ci
    return df


def wilson(k: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k/n, in percent."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def median_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: order statistics (x_(k), x_(n+1-k)) with
    the largest k whose binomial(n, 1/2) coverage is at least ``level``; (nan, nan) when n < 6."""
    x = np.sort(np.asarray(values, float)[np.isfinite(values)])
    n = len(x)
    best = None
    for k in range(1, n // 2 + 1):
        cover = stats.binom.cdf(n - k, n, 0.5) - stats.binom.cdf(k - 1, n, 0.5)
        if cover >= level:
            best = k
    return (math.nan, math.nan) if best is None else (float(x[best - 1]), float(x[n - best]))


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

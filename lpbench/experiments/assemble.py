"""``lpbench reproduce assemble``: one Table 1 from the tables of several runs.

Table 1's columns cost very different amounts: the certifiers and PGD run on all 10,000 test
images in hours, the exact MILP of some rows needs tens of CPU-hours and runs on a random subset
(or on a cluster), and columns get added later (a new certifier, a row's MILP finished on the full
set). Each run writes its own table (``lpbench table1``, ``lpbench reproduce table1``); this module
reads those files and puts every column of every row into one table:

* for each (row, method) the value comes from the source that ran it on the **most images**
  (ties: the source named first), and the table says which source and how many images
  (``{method}_samples``, ``{method}_source``), with the subset's 95% interval and its anchored
  full-set estimate where the source has them;
* sources that ran the same (row, method) on the same sample set are compared, and every
  difference is listed (two PGD runs that batched the images differently may differ by an image);
* every lower bound (test error, PGD, MILP lower) of every source is checked against every upper
  bound of every source on the same sample set (they bound the same robust error, so lower <= upper
  or some verdict is unsound), and so are the orderings the theory guarantees (LP-ALL <= LP-LAST
  <= LP-GREEDY, LP-ALL <= CROWN, LP-ALL <= IBP, MILP upper <= LP-ALL).

Table 2 (:func:`assemble_table2`) is assembled the same way from the per-sample radii of its runs:
each (model, method) from the first run, in the order named, that finished its searches on every
sample; the summary and Figure 3 are recomputed from the merged radii, and every certified radius
of every run is checked against every attacked radius and MILP upper end of the same sample.

Nothing is recomputed: each source names the command that regenerates it, and the assembled
table names its sources.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from lpbench.errors import LpbenchError
from lpbench.experiments.table1 import reference

if TYPE_CHECKING:
    from lpbench.experiments.table2 import Table2Spec

#: Table 1's methods in column order, each with its primary columns.
METHODS = {
    "clean": ("test_error_pct",),
    "pgd": ("pgd_lower_pct",),
    "milp": ("milp_lower_pct", "milp_upper_pct"),
    "lp_all": ("lp_all_upper_pct",),
    "lp_last": ("lp_last_upper_pct",),
    "lp_greedy": ("lp_greedy_upper_pct",),
    "crown": ("crown_upper_pct",),
    "fast_lin": ("fast_lin_upper_pct",),
    "ibp": ("ibp_upper_pct",),
}
#: Columns that travel with a method's value from its source (``{m}`` its column name).
CARRIED = ("{m}_timeouts", "{m}_unresolved", "{m}_time_s", "{m}_projected_full_s", "{m}_lower_ci95",
           "{m}_upper_ci95", "{m}_upper_full_est", "{m}_upper_full_est_interval", "{m}_decided_by")
#: Orderings the theory guarantees on one sample set: (smaller, larger).
ORDERINGS = (("lp_all_upper_pct", "lp_last_upper_pct"), ("lp_last_upper_pct", "lp_greedy_upper_pct"),
             ("lp_all_upper_pct", "lp_greedy_upper_pct"), ("lp_all_upper_pct", "crown_upper_pct"),
             ("lp_all_upper_pct", "ibp_upper_pct"), ("milp_upper_pct", "lp_all_upper_pct"))


@dataclass(frozen=True)
class Source:
    """One run's Table 1: its file, provenance and rows."""

    path: Path
    prov: dict
    table: pd.DataFrame

    @property
    def samples(self) -> str:
        """The sample set the run names (its provenance ``samples`` line)."""
        return self.prov.get("samples", "?")


def read_source(path: str | Path) -> Source:
    """A Table 1 CSV written by ``lpbench table1`` or ``lpbench reproduce table1``."""
    path = Path(path)
    prov, table = _read(path)
    need = {"network", "epsilon", "n_samples"}
    if not need <= set(table.columns) or not any(c in table.columns for cs in METHODS.values() for c in cs):
        raise LpbenchError(f"{path} is not a Table 1 CSV (it needs the columns {sorted(need)} and at least "
                           "one method's percentage)")
    return Source(path, prov, table)


def _row(src: Source, network: str, eps: float) -> pd.Series | None:
    hit = src.table[(src.table.network == network) & np.isclose(src.table.epsilon, eps)]
    return None if hit.empty else hit.iloc[0]


def assemble(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, list[Source], pd.DataFrame, pd.DataFrame]:
    """(table, sources, differences between sources on one sample set, checks) from the Table 1
    CSVs ``paths`` (module doc)."""
    sources = _read_all(paths, read_source, "Table 1")
    records, diffs, checks = [], [], []
    for paper in reference().itertuples():
        net, eps = paper.network, float(paper.epsilon)
        rows = [(k, s, _row(s, net, eps)) for k, s in enumerate(sources)]
        rows = [(k, s, r) for k, s, r in rows if r is not None]
        if not rows:
            continue
        rec: dict = {"network": net, "epsilon": eps}
        for m, cols in METHODS.items():
            have = [(k, s, r) for k, s, r in rows if all(c in r.index and pd.notna(r[c]) for c in cols)]
            if not have:
                continue
            k, s, r = max(have, key=lambda t: (int(t[2].n_samples), -t[0]))
            for c in cols:
                rec[c] = float(r[c])
            rec[f"{m}_samples"] = int(r.n_samples)
            rec[f"{m}_source"] = s.path.name
            for c in (t.format(m=m) for t in CARRIED):
                if c in r.index and pd.notna(r[c]):
                    rec[c] = r[c]
            for k2, s2, r2 in have:
                if k2 != k and s2.samples == s.samples:
                    for c in cols:
                        if not math.isclose(float(r2[c]), float(r[c]), abs_tol=1e-9):
                            diffs.append({"network": net, "epsilon": eps, "column": c, "value": float(r[c]),
                                          "source": s.path.name, "other_value": float(r2[c]),
                                          "other_source": s2.path.name, "samples": s.samples})
        for c in paper._fields[3:]:
            rec[f"paper_{c}"] = float(getattr(paper, c))
        checks += _checks(net, eps, rows)
        records.append(rec)
    if not records:
        raise LpbenchError("no source holds a row of Table 1")
    table = pd.DataFrame.from_records(records)
    for c in table.columns:  # intervals and estimates exist only for subset columns: blank elsewhere
        if c.endswith(("_ci95", "_full_est", "_full_est_interval")):
            table[c] = [v if isinstance(v, str) else "" if pd.isna(v) else f"{v:.2f}" for v in table[c]]
    diff_cols = ["network", "epsilon", "column", "value", "source", "other_value", "other_source", "samples"]
    check_cols = ["network", "epsilon", "check", "holds", "smaller", "larger", "sources", "samples"]
    return (table, sources, pd.DataFrame(diffs, columns=diff_cols),
            pd.DataFrame(checks, columns=check_cols))


def _checks(net: str, eps: float, rows: list[tuple[int, Source, pd.Series]]) -> list[dict]:
    """Lower bounds against upper bounds, and the theory's orderings, over every source's value
    (not only the one shown): per shared sample set, the largest smaller side against the least
    larger side."""
    vals: dict[str, dict[str, list[tuple[float, str]]]] = {}  # column -> sample set -> (value, source)
    for _, src, r in rows:
        for c in r.index:
            if c.endswith("_pct") and not c.startswith("paper_") and pd.notna(r[c]):
                vals.setdefault(c, {}).setdefault(src.samples, []).append((float(r[c]), src.path.name))
    lows = [c for c in ("test_error_pct", "pgd_lower_pct", "milp_lower_pct") if c in vals]
    ups = [c for c in vals if c.endswith("_upper_pct")]
    pairs = [(lo, up, f"lower <= upper: {lo} <= {up}") for lo in lows for up in ups]
    pairs += [(a, b, f"ordering: {a} <= {b}") for a, b in ORDERINGS if a in vals and b in vals]
    out = []
    for a, b, name in pairs:
        for samples in vals[a].keys() & vals[b].keys():
            small, s_src = max(vals[a][samples])
            large, l_src = min(vals[b][samples])
            out.append({"network": net, "epsilon": eps, "check": name, "holds": small <= large + 1e-9,
                        "smaller": small, "larger": large, "sources": f"{s_src} / {l_src}", "samples": samples})
    return out


# --------------------------------------------------------------------------------------------
# Table 2: the same, per (model, method), from the runs' per-sample radii


@dataclass(frozen=True)
class Source2:
    """One ``lpbench reproduce table2`` run: its table (with provenance) and per-sample radii."""

    path: Path
    prov: dict
    table: pd.DataFrame
    radii: pd.DataFrame
    spec: "Table2Spec"


def read_source2(path: str | Path) -> Source2:
    """A Table 2 CSV and the ``*_samples.csv`` written beside it by ``lpbench reproduce table2``."""
    from lpbench.experiments.table2 import Table2Spec
    path = Path(path)
    prov, table = _read(path)
    beside = path.with_name(path.stem + "_samples.csv")
    if "spec" not in prov or "model" not in table.columns:
        raise LpbenchError(f"{path} is not a Table 2 CSV of lpbench reproduce table2 (no spec in its provenance)")
    try:
        radii = pd.read_csv(beside)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise LpbenchError(f"cannot read the per-sample radii {beside} beside {path}: {e}") from None
    spec = Table2Spec.from_dict(json.loads(prov["spec"]), str(path))
    return Source2(path, prov, table, radii, spec)


def _read_all(paths: Sequence[str | Path], reader, table: str) -> list:
    """``reader`` of each of ``paths``: at least one, none named twice."""
    if not paths:
        raise LpbenchError(f"name at least one {table} CSV to assemble")
    sources = [reader(p) for p in paths]
    if len({s.path.resolve() for s in sources}) < len(sources):
        raise LpbenchError("a source is named twice")
    return sources


def _read(path: Path) -> tuple[dict, pd.DataFrame]:
    """(provenance, table) of a CSV written by :func:`lpbench.report.writers.write_table`."""
    try:
        text = path.read_text()
    except OSError as e:
        raise LpbenchError(f"cannot read {path}: {e.strerror or e}") from None
    prov = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(": ")
        prov[key] = value
    if "sources" in prov:
        raise LpbenchError(f"{path} is itself an assembled table; name the runs' own tables")
    try:
        return prov, pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise LpbenchError(f"{path} is not a table of lpbench: {e}") from None


def assemble_table2(paths: Sequence[str | Path]):
    """(table, per-sample radii, spec, sources, differences, checks) from Table 2 CSVs: each
    (model, method) from the first source (in ``paths`` order) whose search of it finished on every
    sample, else the first that has it (the MILP: among the sources with the most exact samples);
    the summary recomputed from the merged radii."""
    from lpbench.experiments.table2 import Table2Spec, summarize
    sources = _read_all(paths, read_source2, "Table 2")
    samples = {s.prov.get("samples") for s in sources}
    if len(samples) > 1:
        raise LpbenchError(f"the sources searched different samples ({'; '.join(sorted(map(str, samples)))}): "
                           "Table 2 compares models on the same ones")
    parts, chosen, diffs = [], {}, []
    keys = list(dict.fromkeys((m, meth) for s in sources for m, meth in zip(s.radii.model, s.radii.method)))
    for model, method in keys:
        have = [(s, s.radii[(s.radii.model == model) & (s.radii.method == method)]) for s in sources]
        have = [(s, g) for s, g in have if len(g)]
        pick = have
        if method == "milp":  # the most samples exact first (a longer time limit's run)
            most = max(int(g.exact.sum()) for _, g in have)
            pick = [(s, g) for s, g in have if int(g.exact.sum()) == most]
        s, g = next(((s, g) for s, g in pick if g.finished.all()), pick[0])
        parts.append(g)
        chosen[(model, method)] = s.path.name
        for s2, g2 in have:
            if s2 is s:
                continue
            a = g.set_index("sample").radius
            b = g2.set_index("sample").radius.reindex(a.index)
            differ = int((~np.isclose(a, b, rtol=0, atol=1e-12, equal_nan=True)).sum())
            if differ:
                diffs.append({"model": model, "method": method, "samples_differing": differ,
                              "mean_e3": 1e3 * float(a.mean()), "source": s.path.name,
                              "other_mean_e3": 1e3 * float(b.mean()), "other_source": s2.path.name})
    radii = pd.concat(parts, ignore_index=True)
    first = sources[0].spec
    models = tuple(dict.fromkeys(m for s in sources for m in s.spec.models))
    spec = Table2Spec(models, tuple(dict.fromkeys(m for s in sources for m in s.spec.methods)),
                      tuple(dict.fromkeys(m for s in sources for m in s.spec.lp_models)),
                      tuple(dict.fromkeys(m for s in sources for m in s.spec.milp_models)),
                      first.samples, first.eps_max, first.tol, first.norm, first.options)
    table = summarize(spec, radii)
    by_name = {s.path.name: s for s in sources}
    for k, row in table.iterrows():  # carried: the projected LP-ALL cost, from the run that gave LP-GREEDY
        src = by_name[chosen.get((row.model, "lp-greedy"), sources[0].path.name)]
        proj = src.table[src.table.model == row.model]
        for c in [c for c in src.table.columns if "_proj_" in c]:
            if len(proj) and pd.notna(proj[c].iloc[0]):
                table.loc[k, c] = proj[c].iloc[0]
    number = {s.path.name: k + 1 for k, s in enumerate(sources)}
    table["sources"] = [" ".join(f"{meth}:{number[chosen[(m, meth)]]}" for meth in spec.methods_of(m)
                                 if (m, meth) in chosen) for m in table.model]
    diff_cols = ["model", "method", "samples_differing", "mean_e3", "source", "other_mean_e3", "other_source"]
    return table, radii, spec, sources, pd.DataFrame(diffs, columns=diff_cols), _checks2(sources)


def _checks2(sources: Sequence[Source2]) -> pd.DataFrame:
    """Every certified radius of every source against every attacked radius (PGD's) and MILP upper
    end of every source, per (model, sample): a certified radius above one is unsound."""
    allr = pd.concat([s.radii.assign(source=s.path.name) for s in sources], ignore_index=True)
    out = []
    for (model, sample), g in allr.groupby(["model", "sample"], sort=False):
        ups = pd.concat([g[g.method == "pgd"].radius, g[g.method == "milp"].get("upper", pd.Series(dtype=float))])
        cert = g[g.method != "pgd"].dropna(subset=["radius"])
        if ups.dropna().empty or cert.empty:
            continue
        top = cert.loc[cert.radius.idxmax()]
        least = float(ups.min())
        out.append({"model": model, "sample": int(sample), "holds": float(top.radius) <= least + 1e-12,
                    "largest_certified": float(top.radius), "by": f"{top.method} ({top.source})",
                    "least_attacked_or_milp_upper": least})
    return pd.DataFrame(out, columns=["model", "sample", "holds", "largest_certified", "by",
                                      "least_attacked_or_milp_upper"])

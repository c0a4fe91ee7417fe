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

Nothing is recomputed: each source names the command that regenerates it, and the assembled
table names its sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lpbench.errors import LpbenchError
from lpbench.experiments.table1 import reference

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
             ("lp_all_upper_pct", "ibp_upper_pct"), ("milp_upper_pct", "lp_all_upper_pct"),
             ("milp_lower_pct", "milp_upper_pct"))
N_TEST = 10000


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
        table = pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise LpbenchError(f"{path} is not a Table 1 CSV: {e}") from None
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
    if not paths:
        raise LpbenchError("name at least one Table 1 CSV to assemble")
    sources = [read_source(p) for p in paths]
    if len({s.path.resolve() for s in sources}) < len(sources):
        raise LpbenchError("a source is named twice")
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
    pairs += [(a, b, f"ordering: {a} <= {b}") for a, b in ORDERINGS if a in vals and b in vals
              and (a, b) != ("milp_lower_pct", "milp_upper_pct")]
    out = []
    for a, b, name in pairs:
        for samples in vals[a].keys() & vals[b].keys():
            small, s_src = max(vals[a][samples])
            large, l_src = min(vals[b][samples])
            out.append({"network": net, "epsilon": eps, "check": name, "holds": small <= large + 1e-9,
                        "smaller": small, "larger": large, "sources": f"{s_src} / {l_src}", "samples": samples})
    return out

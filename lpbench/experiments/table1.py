"""Table 1 of Salman et al. 2019: certified bounds on the robust error of the MNIST MLPs.

Every (network, epsilon) row is run method by method over a sample set, in chunks written to the
results store as they finish (so an interrupted run resumes), and summarised as percentages:
an attack's column is a LOWER bound on the robust error (samples it falsifies), a certifier's
column an UPPER bound (samples it does not verify). The exact MILP gives both (lower:
misclassified or falsified; upper: not verified, timeouts included), equal when no sample timed
out; ``*_unresolved`` counts the timeouts and errors. The clean test error is the ``clean`` column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lpbench.errors import LpbenchError
from lpbench.methods import get_method, verify
from lpbench.network import Network
from lpbench.problem import Perturbation
from lpbench.store import Store

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "salman2019" / "table1_reference.csv"
DEFAULT_METHODS = ("clean", "pgd", "lp-greedy", "crown", "fast-lin", "ibp")


@dataclass(frozen=True)
class Row:
    model: str
    eps: float


def reference() -> pd.DataFrame:
    """The paper's Table 1 (percentages), one row per (network, epsilon)."""
    return pd.read_csv(REFERENCE)


def table1_rows() -> list[Row]:
    """The 11 rows of Table 1, in the paper's order."""
    return [Row(r.network, float(r.epsilon)) for r in reference().itertuples()]


def parse_rows(rows: str | None) -> tuple[list[Row] | None, str]:
    """``--rows``: (the chosen rows in the paper's order, None for all; the output name suffix,
    e.g. ``_rows1-5-8``)."""
    if rows is None:
        return None, ""
    all_rows = table1_rows()
    try:
        nums = sorted({int(r) for r in rows.split(",") if r.strip()})
    except ValueError:
        nums = []
    if not nums or not all(1 <= k <= len(all_rows) for k in nums):
        raise LpbenchError(f"--rows takes comma-separated numbers 1..{len(all_rows)}, got {rows!r}")
    if len(nums) == len(all_rows):
        return None, ""
    return [all_rows[k - 1] for k in nums], "_rows" + "-".join(str(k) for k in nums)


def experiment_key(method: str, options: Mapping[str, Any]) -> str:
    """Store key of one method's Table 1 outcomes: results computed with other options for that
    method (e.g. PGD steps) are not reused, results of the other methods are."""
    blob = json.dumps(options.get(method, {}), sort_keys=True, default=str).encode()
    return "table1:" + hashlib.sha256(blob).hexdigest()[:10]


def run_row(store: Store, row: Row, net: Network, images: np.ndarray,
            labels: np.ndarray, ids: Sequence[int], methods: Sequence[str], *, device: str = "cpu",
            batch_size: int = 256, chunk: int = 500, options: Mapping[str, Any] | None = None,
            progress: Callable[[str, int], None] | None = None) -> None:
    """Compute every (method, sample) of one row that the store does not hold yet."""
    pset = Perturbation(row.eps)
    options = dict(options or {})
    for method in methods:
        get_method(method)
        experiment = experiment_key(method, options)
        have = store.done(experiment, row.model, row.eps, pset.norm, method)
        todo = [i for i in ids if i not in have]
        if progress is not None and len(ids) - len(todo):
            progress(method, len(ids) - len(todo))
        for s in range(0, len(todo), chunk):
            part = np.asarray(todo[s:s + chunk])
            outs = verify(net, images[part], labels[part], pset, [method], ids=part, device=device,
                          batch_size=batch_size, options=options)
            store.add(experiment, row.model, row.eps, pset.norm, outs)
            if progress is not None:
                progress(method, len(part))


def summarize(frame: pd.DataFrame, rows: Sequence[Row], ids: Sequence[int],
              methods: Sequence[str], options: Mapping[str, Any] | None = None,
              keys: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Percentages per row and method from stored outcomes restricted to the sample ids
    (``keys``: each method's experiment key in the store; default that of :func:`run_row`)."""
    keys = dict(keys) if keys is not None else {m: experiment_key(m, dict(options or {})) for m in methods}
    ids = set(int(i) for i in ids)
    ref = reference().set_index(["network", "epsilon"])
    records = []
    for row in rows:
        sub = frame[(frame.model == row.model) & np.isclose(frame.epsilon, row.eps)
                    & frame["sample"].isin(ids)]
        rec: dict[str, Any] = {"network": row.model, "epsilon": row.eps, "n_samples": len(ids)}
        falsified: set[int] = set()
        verified: set[int] = set()
        for m in methods:
            part = sub[(sub.method == m) & (sub.experiment == keys[m])]
            if len(part) != len(ids):
                raise RuntimeError(f"{row.model} eps={row.eps} {m}: {len(part)} of {len(ids)} samples stored")
            col = m.replace("-", "_")
            status = part.status
            kind = get_method(m).kind
            if kind in ("attack", "milp"):
                name = "test_error_pct" if m == "clean" else f"{col}_lower_pct"
                rec[name] = 100.0 * (status == "falsified").sum() / len(ids)
                falsified |= set(part["sample"][status == "falsified"])
            if kind != "attack":
                rec[f"{col}_upper_pct"] = 100.0 * (status != "verified").sum() / len(ids)
                verified |= set(part["sample"][status == "verified"])
                deciders = part.stats.map(lambda js: json.loads(js or "{}").get("decided_by"))
                if deciders.notna().any():  # a cascade: say which method decided how many samples
                    counts = deciders.fillna(m).value_counts()
                    rec[f"{col}_decided_by"] = " ".join(f"{k}:{v}" for k, v in counts.items())
            rec[f"{col}_unresolved"] = int(status.isin(["timeout", "error"]).sum())
            if kind == "milp":
                rec[f"{col}_timeouts"] = int((status == "timeout").sum())
            rec[f"{col}_time_s"] = float(part.time_s.sum())
        rec["conflicts"] = len(falsified & verified)
        if (row.model, row.eps) in ref.index:
            paper = ref.loc[(row.model, row.eps)]
            for c in paper.index:
                rec[f"paper_{c}"] = float(paper[c])
        records.append(rec)
    return pd.DataFrame.from_records(records)

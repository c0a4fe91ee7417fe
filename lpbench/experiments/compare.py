"""``lpbench compare METHOD``: a verifier against LP-GREEDY, the optimal layer-wise bound LP-ALL
and the exact MILP, on Table 1's rows (Salman et al. 2019).

Per (model, epsilon): the certified robust error (%) of each method, the share of the LP-GREEDY
to LP-ALL gap the method closes, and the *barrier check*. A sound method inside the layer-wise
convex framework can never certify a sample LP-ALL does not, nor bound a margin above LP-ALL's
optimum, so every such sample is flagged ``beyond_barrier``; on those samples the MILP is run,
and the method is declared ``unsound`` on a sample where (a) the MILP finds a re-checked
counterexample the method claims verified, or (b) a margin the method bounds from below is
smaller at a concrete point in the set (the PGD point, or the MILP's counterexample). A method
outside the framework (e.g. branch and bound) may go beyond the barrier soundly; the MILP decides.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lpbench.experiments.api import DEFAULT_STORE, sample_ids, table1
from lpbench.experiments.table1 import Row, experiment_key
from lpbench.methods import get_method
from lpbench.store import Store

BASELINES = ("pgd", "lp-greedy", "lp-all")
#: Relative slack for "tighter than LP-ALL" on a margin (LP solver tolerances).
SLACK = 1e-6


def compare(method: str, rows: Sequence[Row], samples: Any = 100, *, store=DEFAULT_STORE,
            milp_time_limit: float = 60.0, options: Mapping[str, Any] | None = None,
            progress: Callable[[Row, str, int], None] | None = None) -> pd.DataFrame:
    """One row per Table 1 row: see the module doc."""
    get_method(method)
    options = {"pgd": {"steps": 100, "restarts": 5}, **dict(options or {})}
    methods = [m for m in BASELINES if m != method] + [method]
    table = table1(samples, methods, rows, store=store, options=options, progress=progress)
    from lpbench.data import load_dataset
    from lpbench.zoo import load_model
    data = load_dataset("mnist", "test")
    ids = sample_ids(samples, len(data.labels))
    with Store(store) as st:
        frame = st.frame()
    out = []
    for row, rec in zip(rows, table.to_dict("records")):
        sub = frame[(frame.model == row.model) & np.isclose(frame.epsilon, row.eps) & frame["sample"].isin(set(ids))]
        per = {m: sub[(sub.method == m) & (sub.experiment == experiment_key(m, options))].set_index("sample")
               for m in methods}
        col = method.replace("-", "_")
        greedy, lpall, mine = rec["lp_greedy_upper_pct"], rec["lp_all_upper_pct"], rec[f"{col}_upper_pct"]
        gap = greedy - lpall
        beyond = _beyond(per[method], per["lp-all"])
        unsound = _unsound(per[method], per["pgd"], beyond, load_model(row.model), data, row.eps, milp_time_limit)
        out.append({"network": row.model, "epsilon": row.eps, "n_samples": len(ids),
                    "pgd_lower_pct": rec["pgd_lower_pct"], f"{col}_upper_pct": mine,
                    "lp_greedy_upper_pct": greedy, "lp_all_upper_pct": lpall,
                    "gap_closed_pct": 100.0 * (greedy - mine) / gap if gap > 0 else np.nan,
                    "beyond_barrier": len(beyond), "unsound": len(unsound),
                    "unsound_samples": " ".join(str(i) for i in sorted(unsound)),
                    f"{col}_errors": int((per[method].status == "error").sum()),
                    f"{col}_time_s": rec[f"{col}_time_s"], "lp_all_time_s": rec["lp_all_time_s"]})
    return pd.DataFrame.from_records(out)


def _margins(part: pd.DataFrame, column: str) -> dict[int, np.ndarray]:
    return {int(i): np.array([np.nan if v is None else v for v in json.loads(js)], float)
            for i, js in part[column].dropna().items()}


def _beyond(mine: pd.DataFrame, lpall: pd.DataFrame) -> set[int]:
    """Samples the method verifies and LP-ALL does not, or where one of its margin lower bounds
    exceeds LP-ALL's (beyond the optimal layer-wise relaxation)."""
    out = set(mine.index[(mine.status == "verified") & (lpall.status.reindex(mine.index) != "verified")])
    lo_m, lo_a = _margins(mine, "margin_lower"), _margins(lpall, "margin_lower")
    for i, m in lo_m.items():
        a = lo_a.get(i)
        if a is not None and lpall.status.get(i) != "falsified":
            ok = np.isfinite(m) & np.isfinite(a)
            if (m[ok] > a[ok] + SLACK * (1 + np.abs(a[ok]))).any():
                out.add(i)
    return out


def _unsound(mine: pd.DataFrame, pgd: pd.DataFrame, beyond: set[int], net, data, eps: float,
             time_limit: float) -> set[int]:
    """Samples where the method is provably wrong: a claimed margin lower bound above the margin
    at a concrete point (PGD's, on every sample; the MILP's counterexample, on ``beyond``), or a
    verified sample the MILP falsifies."""
    from lpbench.methods import verify
    from lpbench.problem import Perturbation, Status
    bad = set()
    lo_m, at_pgd = _margins(mine, "margin_lower"), _margins(pgd, "margin_upper")
    for i, lo in lo_m.items():
        p = at_pgd.get(i)
        if p is not None and (lo > p + SLACK * (1 + np.abs(p))).any():
            bad.add(i)
    if beyond:
        ids = np.array(sorted(beyond))
        outs = verify(net, data.images[ids], data.labels[ids], Perturbation(eps), ["milp"], ids=ids,
                      options={"milp": {"time_limit": time_limit}})
        for o in outs:
            claimed = lo_m.get(o.sample)
            if o.status is Status.FALSIFIED and mine.status.get(o.sample) == "verified":
                bad.add(o.sample)
            elif o.counterexample is not None and claimed is not None:
                logits = net.logits64(o.counterexample[None].astype(np.float64))[0]
                at = logits[o.label] - logits
                if (claimed > at + SLACK * (1 + np.abs(at))).any():
                    bad.add(o.sample)
    return bad

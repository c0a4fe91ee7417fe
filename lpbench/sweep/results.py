"""A sweep's results as pandas: progress per (model, epsilon, method), and export to files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lpbench.errors import LpbenchError
from lpbench.experiments.table2 import Table2Spec
from lpbench.store import KEY, Store
from lpbench.sweep.runner import experiment, sample_set
from lpbench.sweep.spec import SweepSpec, parse_spec

STATUSES = ("verified", "falsified", "unknown", "timeout", "error")
#: The metadata key (parquet) and line prefix (CSV) of the spec history echoed into an export.
_HISTORY_META, _HISTORY_LINE = b"lpbench.sweep_history", "# lpbench sweep history: "


def stored_spec(st: Store, name: str) -> SweepSpec | Table2Spec:
    """The specification sweep ``name`` last ran with."""
    raw = st.sweep_spec(name)
    if raw is None:
        known = ", ".join(st.sweeps()) or "none"
        raise LpbenchError(f"no sweep named {name!r} in {st.path} (known: {known})")
    return _parse(json.loads(raw), f"stored sweep {name!r}")


def stored_history(st: Store, name: str) -> list[SweepSpec | Table2Spec]:
    """Every specification sweep ``name`` has run with, its current one last (say, the rows of
    Table 1 run one ``--rows`` at a time)."""
    current = stored_spec(st, name)
    now = st.sweep_spec(name)
    return [_parse(json.loads(r), f"stored sweep {name!r} (history)")
            for r in st.sweep_history(name) if r != now] + [current]


def _parse(raw: dict, where: str) -> SweepSpec | Table2Spec:
    """A sweep's spec, or the spec of Table 2's radius searches (which has a bisection ``tol``)."""
    if isinstance(raw, dict) and "tol" in raw:
        return Table2Spec.from_dict(raw, where)
    return parse_spec(raw, where)


def outcomes(st: Store, spec: SweepSpec | Table2Spec) -> pd.DataFrame:
    """Every stored outcome of the sweep's current (model, epsilon, method, sample) set; for
    Table 2, every probe of its searches."""
    if isinstance(spec, Table2Spec):
        frame = spec.outcomes(st)
        return _ordered(frame[frame.model.isin(spec.models)].assign(sweep=spec.name), spec)
    keys = {experiment(spec, m) for m in spec.methods}
    frame = st.frame()
    frame = frame[frame.experiment.isin(keys)]
    parts = []
    for model in spec.models:
        _, ids, _ = sample_set(spec, model)
        sub = frame[(frame.model == model) & frame["sample"].isin(set(int(i) for i in ids))]
        parts.append(sub[sub.epsilon.isin(spec.epsilons[model]) & (sub.norm == spec.norm)])
    out = pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]
    return _ordered(out.assign(sweep=spec.name), spec)


def _ordered(frame: pd.DataFrame, spec: SweepSpec | Table2Spec) -> pd.DataFrame:
    """Outcomes in the order exports list them: a Table 2 search's probes together."""
    by = ["model", "method", "sample", "epsilon"] if isinstance(spec, Table2Spec) else \
        ["model", "epsilon", "method", "sample"]
    return frame.sort_values(by, ignore_index=True)


def status(st: Store, name: str) -> pd.DataFrame:
    """Per (model, epsilon, method): samples expected, done, and the count of each status."""
    spec = stored_spec(st, name)
    if isinstance(spec, Table2Spec):
        raise LpbenchError(f"{name!r} holds Table 2's radius searches: `lpbench reproduce table2` "
                           "with the same options reports their progress and resumes them")
    done = outcomes(st, spec)
    rows = []
    for model, eps, method in spec.jobs():
        _, ids, _ = sample_set(spec, model)
        sub = done[(done.model == model) & (done.epsilon == eps) & (done.method == method)]
        counts = sub.status.value_counts()
        rows.append({"model": model, "epsilon": eps, "method": method, "samples": len(ids),
                     "done": len(sub), **{s: int(counts.get(s, 0)) for s in STATUSES},
                     "time_s": float(sub.time_s.sum())})
    return pd.DataFrame(rows)


def history_outcomes(st: Store, specs: list[SweepSpec | Table2Spec]) -> pd.DataFrame:
    """The union of :func:`outcomes` over several specs of one sweep, each key once."""
    frame = pd.concat([outcomes(st, s) for s in specs], ignore_index=True)
    return _ordered(frame.drop_duplicates(subset=list(KEY), ignore_index=True), specs[-1])


def export(st: Store, name: str, out: str | Path) -> Path:
    """Write the sweep's outcomes to ``out`` (.parquet or .csv): those of every spec it has run
    with, so that a sweep run a few rows at a time exports whole. The current spec and the
    history are echoed (parquet metadata / leading ``#`` lines of the CSV)."""
    out = Path(out)
    specs = stored_history(st, name)
    spec = specs[-1]
    frame = history_outcomes(st, specs)
    history = json.dumps([json.loads(s.to_json()) for s in specs])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"lpbench.sweep": spec.to_json().encode(),
                                               _HISTORY_META: history.encode()})
        pq.write_table(table, out, compression="zstd")  # half the size of the default snappy
    elif out.suffix == ".csv":
        with open(out, "w") as f:
            f.write(f"# lpbench sweep {spec.name}: {spec.to_json()}\n")
            f.write(f"{_HISTORY_LINE}{history}\n")
            frame.to_csv(f, index=False)
    else:
        raise LpbenchError(f"export to .parquet or .csv, not {out.name!r}")
    return out


def read_export(path: str | Path) -> tuple[SweepSpec | Table2Spec, pd.DataFrame,
                                            list[SweepSpec | Table2Spec]]:
    """The current spec, the outcomes and the spec history (the current spec alone in files
    written before exports carried one) of a file written by :func:`export`."""
    path = Path(path)
    if not path.is_file():
        raise LpbenchError(f"no such export: {path}")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(b"lpbench.sweep")
            past = (table.schema.metadata or {}).get(_HISTORY_META)
            frame = table.to_pandas()
        elif path.suffix == ".csv":
            with open(path) as f:
                head = f.readline()
                raw = head.split(": ", 1)[1] if head.startswith("# lpbench sweep ") else None
                at = f.tell()
                line = f.readline()
                past = line[len(_HISTORY_LINE):] if line.startswith(_HISTORY_LINE) else None
                if past is None:
                    f.seek(at)
                frame = pd.read_csv(f, keep_default_na=False, na_values=[""])
        else:
            raise LpbenchError(f"import from .parquet or .csv, not {path.name!r}")
    except (OSError, ValueError) as e:  # pyarrow and pandas parse errors are ValueErrors
        raise LpbenchError(f"cannot read {path}: {e}") from None
    if raw is None:
        raise LpbenchError(f"{path} is not an lpbench sweep export (its sweep spec is missing)")
    spec = _parse(json.loads(raw), f"the spec in {path}")
    history = [spec] if past is None else \
        [_parse(d, f"the spec history in {path}") for d in json.loads(past)]
    if any(h.name != spec.name for h in history):
        raise LpbenchError(f"{path}: its spec history names another sweep than {spec.name!r}")
    return spec, frame.drop(columns=["sweep"], errors="ignore"), history


def import_export(st: Store, path: str | Path) -> tuple[SweepSpec | Table2Spec, int, int]:
    """Merge an export into the store (newest outcome per key wins) so that the sweep resumes
    where the exporting store stood; the spec is recorded unless the store already has one of
    that name, and the export's spec history joins the sweep's. Returns the spec and the rows
    written and kept."""
    spec, frame, history = read_export(path)
    written, kept = st.merge(frame)
    for past in history:
        st.add_sweep_history(spec.name, past.to_json())
    if st.sweep_spec(spec.name) is None:
        st.save_sweep(spec.name, spec.to_json())
    return spec, written, kept

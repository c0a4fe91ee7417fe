"""The results store: an embedded SQLite database (WAL) with one row per outcome (and a small
table of named measurements, such as projected costs, kept as JSON).

Keyed by (experiment, model, epsilon, norm, method, sample), so an interrupted run resumes by
computing only the missing keys. Only the client process writes. The store knows nothing of the
math: it stores records and hands back pandas frames.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from lpbench.errors import LpbenchError
from lpbench.problem import Outcome
from lpbench.report.writers import json_line

SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    experiment TEXT NOT NULL,
    model TEXT NOT NULL,
    epsilon REAL NOT NULL,
    norm TEXT NOT NULL,
    method TEXT NOT NULL,
    sample INTEGER NOT NULL,
    label INTEGER NOT NULL,
    status TEXT NOT NULL,
    min_margin_lower REAL,
    min_margin_upper REAL,
    margin_lower TEXT,
    margin_upper TEXT,
    time_s REAL,
    stats TEXT,
    created TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    worker TEXT,
    host TEXT,
    versions TEXT,
    PRIMARY KEY (experiment, model, epsilon, norm, method, sample)
);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    updated TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS sweep_history (
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    first_run TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_run TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (name, spec)
);
CREATE TABLE IF NOT EXISTS measurements (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

#: The columns that identify an outcome (the primary key of ``outcomes``).
KEY = ("experiment", "model", "epsilon", "norm", "method", "sample")
_COLUMNS = KEY + ("label", "status", "min_margin_lower", "min_margin_upper", "margin_lower",
                  "margin_upper", "time_s", "stats", "created", "worker", "host", "versions")

#: Columns added after the first release; older stores get them on open.
_ADDED = {"worker": "TEXT", "host": "TEXT", "versions": "TEXT"}


def _json_list(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    return json.dumps([None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)])


def _nan_to_none(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


class Store:
    """``Store(path)``; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(outcomes)")}
        for col, kind in _ADDED.items():
            if col not in have:
                self._db.execute(f"ALTER TABLE outcomes ADD COLUMN {col} {kind}")
        # stores from before the history: their sweeps' current specs start it
        self._db.execute("INSERT OR IGNORE INTO sweep_history (name, spec, first_run, last_run)"
                         " SELECT name, spec, updated, updated FROM sweeps")
        self._db.commit()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def add(self, experiment: str, model: str, epsilon: float, norm: str,
            outcomes: Iterable[Outcome], where: Mapping[str, str] | None = None) -> int:
        """Write outcomes in one transaction (all or none survive a crash); ``where``: the
        ``worker``, ``host`` and ``versions`` that computed them. Returns the number of rows."""
        where = where or {}
        rows = [(experiment, model, float(epsilon), norm, o.method, int(o.sample), int(o.label),
                 o.status.value, _nan_to_none(o.min_margin_lower), _nan_to_none(o.min_margin_upper),
                 _json_list(o.margin_lower), _json_list(o.margin_upper), float(o.time_s),
                 json_line(dict(o.stats)), where.get("worker"), where.get("host"),
                 where.get("versions")) for o in outcomes]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO outcomes (experiment, model, epsilon, norm, method, sample, label,"
                " status, min_margin_lower, min_margin_upper, margin_lower, margin_upper, time_s, stats,"
                " worker, host, versions) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def merge(self, frame: pd.DataFrame) -> tuple[int, int]:
        """Write outcome rows taken from another store (a :meth:`frame`, say read back from an
        export), keeping for each key the row computed last (by ``created``). Returns (rows
        written, rows kept because the store's own was as new or newer)."""
        missing = {*KEY, "label", "status", "created"} - set(frame.columns)
        if missing:
            raise LpbenchError(f"not a table of lpbench outcomes: no column {', '.join(sorted(missing))}")
        cols = [c for c in _COLUMNS if c in frame.columns]
        rows = [tuple(None if v is None or (isinstance(v, float) and not np.isfinite(v)) else
                      (v.item() if isinstance(v, np.generic) else v) for v in r)
                for r in frame[cols].itertuples(index=False, name=None)]
        before = self._db.total_changes
        updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in KEY)
        with self._db:
            self._db.executemany(
                f"INSERT INTO outcomes ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})"
                f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}"
                " WHERE excluded.created > outcomes.created", rows)
        written = self._db.total_changes - before
        return written, len(rows) - written

    def delete(self, experiment: str, model: str, epsilon: float | None, norm: str, method: str,
               statuses: Iterable[str] | None = None, samples: Iterable[int] | None = None) -> int:
        """Remove one method's outcomes at ``epsilon`` (None: at every epsilon), only those with
        the given statuses and of the given samples, if any."""
        q = "DELETE FROM outcomes WHERE experiment=? AND model=? AND norm=? AND method=?"
        args = [experiment, model, norm, method]
        if epsilon is not None:
            q += " AND epsilon=?"
            args.append(float(epsilon))
        if samples is not None:
            samples = [int(i) for i in samples]
            q += f" AND sample IN ({','.join('?' * len(samples))})"
            args += samples
        if statuses is not None:
            statuses = list(statuses)
            q += f" AND status IN ({','.join('?' * len(statuses))})"
            args += statuses
        with self._db:
            return self._db.execute(q, args).rowcount

    def save_sweep(self, name: str, spec: str) -> None:
        """Record the specification a sweep runs with now (its current spec), and add it to the
        sweep's history."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO sweeps (name, spec) VALUES (?, ?)", (name, spec))
            self._remember(name, spec)

    def add_sweep_history(self, name: str, spec: str) -> None:
        """Add a spec a sweep ran with elsewhere (an imported export's) to its history, leaving
        its current spec alone (a spec already there keeps its times)."""
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO sweep_history (name, spec) VALUES (?, ?)", (name, spec))

    def _remember(self, name: str, spec: str) -> None:
        self._db.execute("INSERT INTO sweep_history (name, spec) VALUES (?, ?) ON CONFLICT (name, spec)"
                         " DO UPDATE SET last_run=excluded.last_run", (name, spec))

    def sweep_spec(self, name: str) -> str | None:
        """The spec sweep ``name`` last ran with."""
        row = self._db.execute("SELECT spec FROM sweeps WHERE name=?", (name,)).fetchone()
        return None if row is None else row[0]

    def sweep_history(self, name: str) -> list[str]:
        """Every spec sweep ``name`` has run with (or was imported with), the least recently
        recorded first."""
        return [r[0] for r in self._db.execute(
            "SELECT spec FROM sweep_history WHERE name=? ORDER BY last_run, rowid", (name,))]

    def save_measurement(self, name: str, value: Mapping) -> None:
        """Keep a measurement that is not an outcome (e.g. a projected cost) as JSON."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO measurements (name, value) VALUES (?, ?)",
                             (name, json.dumps(value, sort_keys=True)))

    def measurement(self, name: str) -> dict | None:
        row = self._db.execute("SELECT value FROM measurements WHERE name=?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def sweeps(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM sweeps ORDER BY name")]

    def done(self, experiment: str, model: str, epsilon: float, norm: str, method: str) -> set[int]:
        cur = self._db.execute(
            "SELECT sample FROM outcomes WHERE experiment=? AND model=? AND epsilon=? AND norm=? AND method=?",
            (experiment, model, float(epsilon), norm, method))
        return {r[0] for r in cur}

    def span(self) -> tuple[str, str]:
        """Creation times of the oldest and newest outcome (UTC, ISO 8601)."""
        return tuple(self._db.execute("SELECT MIN(created), MAX(created) FROM outcomes").fetchone())

    def method_rows(self, prefix: str, method: str, norm: str) -> pd.DataFrame:
        """(experiment, model, sample, label, epsilon, status, margin_lower, time_s) of every outcome
        of ``method`` and ``norm`` in the experiments whose key starts with ``prefix``."""
        return pd.read_sql_query(
            "SELECT experiment, model, sample, label, epsilon, status, margin_lower, time_s FROM outcomes WHERE "
            "substr(experiment, 1, ?) = ? AND method = ? AND norm = ?",
            self._db, params=(len(prefix), prefix, method, norm))

    def frame(self, experiment: str | None = None) -> pd.DataFrame:
        q, args = "SELECT * FROM outcomes", ()
        if experiment is not None:
            q, args = q + " WHERE experiment=?", (experiment,)
        return pd.read_sql_query(q, self._db, params=args)

"""Python entry points for the experiments (the CLI is a thin layer over these)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lpbench.data import load_dataset
from lpbench.errors import LpbenchError
from lpbench.experiments.table1 import DEFAULT_METHODS, Row, run_row, summarize, table1_rows
from lpbench.methods import get_method
from lpbench.store import Store
from lpbench.zoo import load_model

DEFAULT_STORE = Path("results") / "lpbench.sqlite"


def sample_ids(spec: int | str | Sequence[int] | None, n_total: int) -> np.ndarray:
    """Sample indices from ``None`` (all), ``N`` (the first N), ``"A:B"``, ``"random:N[:SEED]"``
    (a fixed random subset of N, sorted; seed 0 by default), ``"I,J,..."`` or explicit ids."""
    if spec is None:
        return np.arange(n_total)
    if isinstance(spec, str) and "," in spec:
        try:
            spec = [int(t) for t in spec.split(",") if t.strip()]
        except ValueError:
            raise LpbenchError(f"sample ids must look like I,J,..., got {spec!r}") from None
    if isinstance(spec, str):
        spec = spec.strip()
        if spec.startswith("random:"):
            return _random_ids(spec, n_total)
        if ":" in spec:
            a, _, b = spec.partition(":")
            try:
                lo, hi = int(a or 0), int(b or n_total)
            except ValueError:
                raise LpbenchError(f"sample range must look like A:B, got {spec!r}") from None
            if not 0 <= lo < hi <= n_total:
                raise LpbenchError(f"sample range {spec} is out of bounds for {n_total} samples")
            return np.arange(lo, hi)
        try:
            spec = int(spec)
        except ValueError:
            raise LpbenchError(f"samples must be N, A:B or I,J,..., got {spec!r}") from None
    if isinstance(spec, (int, np.integer)):
        if not 0 < spec <= n_total:
            raise LpbenchError(f"sample count {spec} must be between 1 and {n_total}")
        return np.arange(int(spec))
    ids = np.asarray(list(spec), dtype=np.int64)
    if ids.size == 0 or ids.min() < 0 or ids.max() >= n_total:
        raise LpbenchError(f"sample ids must lie in [0, {n_total})")
    return ids


def _random_ids(spec: str, n_total: int) -> np.ndarray:
    parts = spec.split(":")
    try:
        n, seed = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
    except (ValueError, IndexError):
        raise LpbenchError(f"a random subset looks like random:N or random:N:SEED, got {spec!r}") from None
    if len(parts) > 3 or not 0 < n <= n_total:
        raise LpbenchError(f"random subset {spec!r}: N must be between 1 and {n_total}")
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def table1(samples: int | str | Sequence[int] | None = None, methods: Sequence[str] = DEFAULT_METHODS,
           rows: Sequence[Row] | None = None, *, device: str = "cpu", store: str | Path = DEFAULT_STORE,
           batch_size: int = 256, options: Mapping[str, Any] | None = None,
           progress: Callable[[Row, str, int], None] | None = None) -> pd.DataFrame:
    """Table 1 of Salman et al. 2019 (robust-error bounds on MNIST) over the first ``samples``
    test images (all 10,000 by default); results are kept in ``store`` and reused."""
    for m in methods:
        get_method(m)
    if "clean" not in methods:
        methods = ("clean", *methods)
    data = load_dataset("mnist", "test")
    ids = sample_ids(samples, len(data.labels))
    rows = list(rows) if rows is not None else table1_rows()
    options = dict(options or {})
    with Store(store) as st:
        for row in rows:
            net = load_model(row.model)
            net.check_input_shape(data.images.shape[1:])
            cb = (lambda m, n, row=row: progress(row, m, n)) if progress else None
            run_row(st, row, net, data.images, data.labels, ids, methods, device=device,
                    batch_size=batch_size, options=options, progress=cb)
        frame = st.frame()
    return summarize(frame, rows, ids, methods, options)

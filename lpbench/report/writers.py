"""Write a pandas table as CSV, Markdown and LaTeX, each carrying its provenance.

Provenance says how the numbers were produced: the command that regenerates the file, the git
commit, the sample set, the date and the machine. CSV files carry it as ``# key: value`` comment
lines (``pandas.read_csv(path, comment="#")`` reads the table back).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

import lpbench


def provenance(command: str | None = None, **extra: Any) -> dict[str, str]:
    """Who made this, how, where and when."""
    info = {
        "command": command or " ".join(["lpbench"] + sys.argv[1:]),
        "lpbench": getattr(lpbench, "__version__", "?"),
        "commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
                   f"python {platform.python_version()}, torch {torch.__version__}"
                   + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
    }
    info.update({k: str(v) for k, v in extra.items()})
    return info


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        # results/ is what the code writes, not code: regenerated tables do not make a run dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def json_line(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON (one line unless ``indent``; RFC 8259, which ``jq`` and other parsers expect): non-finite
    floats (an absent incumbent, a bound of -inf) become null, numpy scalars and arrays plain
    numbers and lists, anything else its ``str``."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, np.ndarray)):
            return [plain(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    return json.dumps(plain(obj), allow_nan=False, indent=indent)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def to_markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def write_table(df: pd.DataFrame, stem: str | Path, prov: Mapping[str, str], title: str,
                notes: str = "", sections: Mapping[str, Sequence[str]] | None = None,
                csv_only: bool = False) -> list[Path]:
    """Write ``stem.csv`` (every column), ``stem.md`` and ``stem.tex`` (only the CSV with
    ``csv_only``, for long per-sample tables); returns the paths.

    ``sections`` maps a heading to the columns shown under it in the Markdown and LaTeX files
    (default: one table with every column)."""
    sections = sections or {"": list(df.columns)}
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"# {k}: {v}\n" for k, v in prov.items())
    csv = stem.with_suffix(".csv")
    csv.write_text(lines + df.to_csv(index=False, float_format="%.4f"))
    if csv_only:
        return [csv]
    md = stem.with_suffix(".md")
    prov_md = "\n".join(f"- **{k}**: `{v}`" for k, v in prov.items())
    body = "\n\n".join((f"## {head}\n\n" if head else "") + to_markdown(df[list(cols)])
                       for head, cols in sections.items())
    md.write_text(f"# {title}\n\n{body}\n\n{notes}\n\n## Provenance\n\n{prov_md}\n")
    tex = stem.with_suffix(".tex")
    prov_tex = "".join(f"% {k}: {v}\n" for k, v in prov.items())
    tex.write_text(prov_tex + "\n".join((f"% {head}\n" if head else "")
                                         + df[list(cols)].to_latex(index=False, float_format="%.2f", escape=True)
                                         for head, cols in sections.items()))
    return [csv, md, tex]

"""Figure 3 of Salman et al. 2019: the median percentage gap between certified and attacked
minimum distortion per model and method, with 95% intervals as error bars and the 1.5x and 5x
gap levels (33.3% and 80%) as reference lines."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

COLORS = {"lp-greedy": "#4c72b0", "lp-last": "#dd8452", "lp-all": "#55a868", "crown": "#8172b3",
          "ibp": "#937860"}


def _interval(text: str) -> tuple[float, float]:
    if not isinstance(text, str) or not text.startswith("["):
        return np.nan, np.nan
    a, b = text.strip("[]").split(",")
    return float(a), float(b)


#: Models per panel: a larger table wraps onto further rows.
ROW = 9


def _panel(ax, table: pd.DataFrame, methods: Sequence[str], slots: int) -> None:
    """One row of grouped bars (``slots`` places, so every panel has the same bar width)."""
    models = list(table.model)
    x = np.arange(len(models))
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        med = table[f"{m}_gap_median_pct"].to_numpy(float)
        ci = np.array([_interval(t) for t in table.get(f"{m}_gap_ci95", [""] * len(models))]).reshape(-1, 2)
        pos = x + (k - (len(methods) - 1) / 2) * width
        ax.bar(pos, med, width, label=m.upper(), color=COLORS.get(m), edgecolor="black", linewidth=0.3)
        has = np.isfinite(ci).all(axis=1) & np.isfinite(med)  # no interval below 6 samples
        if has.any():
            err = np.vstack([med[has] - ci[has, 0], ci[has, 1] - med[has]])
            ax.errorbar(pos[has], med[has], yerr=np.maximum(err, 0), fmt="none", ecolor="black",
                        elinewidth=0.8, capsize=2)
    for level, name in ((100 / 3, "1.5x\ngap"), (80.0, "5x\ngap")):  # labels right of the axes, off the bars
        ax.axhline(level, color="black", linestyle="--", linewidth=0.8)
        ax.text(1.005, level, name, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median gap to PGD (%)\n100 (eps_PGD - eps_cert) / eps_PGD", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.6, slots - 0.4)


def plot_gaps(table: pd.DataFrame, methods: Sequence[str], paths: Sequence[str | Path],
              prov: Mapping[str, str]) -> list[Path]:
    """Grouped bars (one group per model) of ``{method}_gap_median_pct`` with the
    ``{method}_gap_ci95`` intervals; saved to each of ``paths`` (PNG, PDF, ...)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = {m: k for k, m in enumerate(("lp-greedy", "lp-last", "lp-all", "crown", "ibp"))}
    methods = sorted((m for m in methods if f"{m}_gap_median_pct" in table.columns),
                     key=lambda m: order.get(m, len(order)))
    rows = [table.iloc[i:i + ROW] for i in range(0, len(table), ROW)] or [table]
    width_in = max(8.0, 0.55 * min(len(table), ROW) * max(1, len(methods)) / 2.5)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width_in, 0.6 + 3.6 * len(rows)), squeeze=False)
    for ax, part in zip(axes[:, 0], rows):
        _panel(ax, part, methods, ROW if len(rows) > 1 else len(part))
    ax = axes[0, 0]
    ax.legend(ncol=len(methods), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    n = int(table.n_correct.max()) if "n_correct" in table.columns and len(table) else 0
    ax.set_title(f"Median gap between certified and PGD minimum l_inf distortion, up to {n} MNIST test "
                 "samples\n(error bars: distribution-free 95% intervals of the median)", fontsize=9, pad=22)
    footer = textwrap.wrap(f"regenerate: {prov.get('command', '')}  (commit {prov.get('commit', '?')}, "
                           f"{prov.get('date', '')})", width=int(fig.get_figwidth() * 20))
    fig.text(0.01, 0.005, "\n".join(footer), fontsize=6, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.1 * len(footer) / fig.get_figheight(), 1, 1))
    out = []
    for p in paths:
        p = Path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = {"Title": "Figure 3 (lpbench)", "Description" if p.suffix == ".png" else "Subject":
                f"regenerate with: {prov.get('command', '')}"}
        fig.savefig(p, dpi=150, metadata=meta)
        out.append(p)
    plt.close(fig)
    return out

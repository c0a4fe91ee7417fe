"""Projected LP-ALL cost of a Table 2 model whose LP-ALL searches were not run.

The issue leaves LP-ALL on CNN-SMALL, CNN-WIDE-2/4 and CNN-DEEP-2 to a cluster run unless the
measured cost allows it here. The projection is measured, not guessed: on one correctly classified
sample (the one with the median LP-GREEDY radius) it takes the cheap bounds LP-ALL starts from,
counts the unstable neurons of every LP layer and times the per-neuron LPs of ``K`` of them per
layer (spread over the layer). A probe is projected as the cheap-bounds time plus, per layer,
unstable neurons x seconds per timed neuron; a search as ``probes`` such probes (the mean of the
LP-ALL searches that did run) and the model as that times its correctly classified samples.

A probe's cost rises steeply with epsilon, so it is measured at two ends: the LP-GREEDY radius
(where the search starts: ``low``) and GROW times it (its first galloping probe: ``high``). Checked
against the models whose LP-ALL did run (at 1d9a88f, per-model seconds low / high / actual):
NOR-CNN-WIDE-1 273 / 385 / 251, ADV-CNN-WIDE-1 95 / 698 / 262, LPD-CNN-WIDE-1 235 / 1063 / 606,
LPD-MLP-9-100 33 / 49 / 105, ADV-MLP-9-100 211 / 647 / 2297 (part of it bisection, which probes
far higher). On the CNNs the actual cost lies inside the two ends; on the 9-layer MLPs it is up to
3.5x the high end, where unstable neurons multiply with depth as epsilon grows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lpbench.store import Store

if TYPE_CHECKING:
    from lpbench.experiments.table2 import Table2Spec

#: Neurons timed per LP layer.
K = 6


def measure(model: str, sample: int, eps: float, k: int = K) -> dict:
    """Time ``k`` per-neuron LPs in every LP-ALL layer of ``model`` at ``eps`` on ``sample``."""
    from lpbench.lp.drivers import lp_layers, tighten_neurons
    from lpbench.problem import Perturbation
    from lpbench.solvers import get_backend
    from lpbench.sweep.tasks import dataset, lp_start, network

    net, d = network(model), dataset("mnist")
    state = lp_start(model, "mnist", eps, "linf", sample)
    x, pset, backend = d.images[sample].astype(np.float64), Perturbation(eps), get_backend("highs")
    layers = []
    for i in lp_layers(net, "all"):
        lo, hi = (np.ravel(b) for b in state.pre[i])
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        pick = unstable[np.unique(np.linspace(0, unstable.size - 1, min(k, unstable.size)).astype(int))] \
            if unstable.size else unstable
        t0 = time.perf_counter()
        _, _, counts = tighten_neurons(net, x, pset, state.pre, i, pick, backend)
        layers.append({"layer": int(i), "neurons": int(lo.size), "unstable": int(unstable.size),
                       "timed": int(pick.size), "lps": int(counts.solved), "seconds": time.perf_counter() - t0})
    probe = state.seconds + sum(l["unstable"] * l["seconds"] / l["timed"] for l in layers if l["timed"])
    return {"model": model, "sample": int(sample), "eps": float(eps), "cheap_s": state.seconds,
            "layers": layers, "probe_s": probe}


def project(low: dict, high: dict, probes: float, samples: int) -> dict:
    """The projected seconds of a model's LP-ALL searches from two :func:`measure` records: at
    the LP-GREEDY radius (``low``) and at the first galloping probe above it (``high``)."""
    row = {"model": low["model"], "eps_low": low["eps"], "eps_high": high["eps"]}
    for end, m in (("low", low), ("high", high)):
        row[f"unstable_{end}"] = sum(l["unstable"] for l in m["layers"])
        row[f"probe_s_{end}"] = m["probe_s"]
        row[f"cpu_h_{end}"] = m["probe_s"] * probes * samples / 3600
    return {**row, "probes_per_search": probes, "samples": samples}


def lp_all_projections(spec: Table2Spec, per_sample: pd.DataFrame, store) -> pd.DataFrame:
    """Projected LP-ALL cost of every model of ``spec`` whose LP-ALL searches were not run
    (:func:`measure`, :func:`project`), measured once per model and kept in the store; probes per
    search: the mean of the finished LP-ALL searches, else of the LP-GREEDY ones."""
    from lpbench.experiments.table2 import GROW
    skipped = [m for m in spec.models if "lp-all" in spec.methods and m not in spec.lp_models]
    done = per_sample[per_sample.finished & (per_sample.probes > 0)]
    ran = done[done.method == "lp-all"]  # none: LP-GREEDY's bisections from 0, which take more probes
    probes = float((ran if len(ran) else done[done.method == "lp-greedy"]).probes.mean())
    rows = []
    with Store(store) as st:
        for model in skipped:
            d = per_sample[per_sample.model == model].pivot(index="sample", columns="method", values="radius")
            r = d.loc[(d.pgd > 0) & (d["lp-greedy"] > 0), "lp-greedy"].sort_values()
            if r.empty or not d.notna().all().all():
                continue  # nothing certified yet to start from, or searches unfinished
            sample, eps = int(r.index[(len(r) - 1) // 2]), float(r.iloc[(len(r) - 1) // 2])
            ms = []
            for e in (eps, min(GROW * eps, float(d.pgd[sample]))):  # the two ends of a galloping probe
                name = f"table2-projection:{model}:{sample}:{e:.8g}:k{K}"
                m = st.measurement(name)
                if m is None:
                    m = measure(model, sample, e)
                    st.save_measurement(name, m)
                ms.append(m)
            rows.append(project(*ms, probes, int((d.pgd > 0).sum())))
    return pd.DataFrame.from_records(rows)

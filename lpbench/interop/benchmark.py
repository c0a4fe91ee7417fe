"""Write lpbench robustness problems as a VNN-COMP benchmark: ``onnx/<model>.onnx``,
``vnnlib/<model>_eps<eps>_<sample>.vnnlib`` and ``instances.csv`` (paths relative to it).

Each property is the l_inf ball of radius eps around a test image, clipped to the pixel range
[0, 1], with the counterexample region ``Y_j >= Y_label`` for some j != label: the same problem
lpbench solves (misclassified samples included, as Table 1 counts them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lpbench.interop.onnx_export import export_onnx, is_float32_exact
from lpbench.interop.vnnlib import robustness_property, write_vnnlib
from lpbench.network import Network


def write_robustness_instances(out_dir: str | Path, net: Network, name: str, images: np.ndarray,
                               labels: Sequence[int], ids: Sequence[int], epsilons: Sequence[float],
                               timeout: float, dataset: str = "") -> list[tuple[str, str, float]]:
    """Add one model's instances under ``out_dir``; returns the (onnx, vnnlib, timeout) rows."""
    out_dir = Path(out_dir)
    (out_dir / "onnx").mkdir(parents=True, exist_ok=True)
    (out_dir / "vnnlib").mkdir(parents=True, exist_ok=True)
    onnx_rel = f"onnx/{name}.onnx"
    if not is_float32_exact(net):
        raise ValueError(f"network {name} has weights that are not float32 numbers; its ONNX export would "
                         "round them")
    export_onnx(net, out_dir / onnx_rel)
    rows = []
    for eps in epsilons:
        for img, label, idx in zip(images, labels, ids):
            prop = robustness_property(np.asarray(img, np.float32), int(label), float(eps), net.n_classes)
            rel = f"vnnlib/{name}_eps{eps:g}_{int(idx)}.vnnlib"
            write_vnnlib(out_dir / rel, prop, comment=(
                f"lpbench robustness property: model {name}, {dataset} test sample {int(idx)}, "
                f"label {int(label)}, l_inf eps {eps!r} around the float32 image, clipped to [0, 1]"))
            rows.append((onnx_rel, rel, float(timeout)))
    return rows


def write_instances_csv(out_dir: str | Path, rows: Sequence[tuple[str, str, float]]) -> Path:
    path = Path(out_dir) / "instances.csv"
    path.write_text("".join(f"{o},{v},{t:g}\n" for o, v, t in rows))
    return path


def export_table1(out_dir: str | Path, samples: int = 10, timeout: float = 300.0,
                  models: Sequence[str] | None = None) -> Path:
    """The Table 1 rows of Salman et al. 2019 (model, eps) on the first ``samples`` test images;
    returns the instances.csv path."""
    from lpbench.data import load_dataset
    from lpbench.experiments.table1 import table1_rows
    from lpbench.zoo import load_model, model_info
    rows_t1 = [r for r in table1_rows() if models is None or r.model in models]
    if models is not None:
        for m in models:
            model_info(m)
    rows = []
    for model in dict.fromkeys(r.model for r in rows_t1):
        net, info = load_model(model), model_info(model)
        data = load_dataset(info.dataset, "test")
        ids = np.arange(min(samples, len(data.labels)))
        eps = [r.eps for r in rows_t1 if r.model == model]
        rows += write_robustness_instances(out_dir, net, model, data.images[ids], data.labels[ids], ids, eps,
                                           timeout, info.dataset)
    return write_instances_csv(out_dir, rows)

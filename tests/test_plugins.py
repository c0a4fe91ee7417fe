"""User verifiers (lpbench.plugins) and `lpbench compare`.

A plugin registered from Python or through the entry point group lpbench.verifiers runs like any
method, in Table 1, Table 2 and compare; a broken plugin (raises, wrong shape, NaN, +inf) is an
error outcome and never verified; a plugin claiming bounds beyond the barrier is flagged, and
caught as unsound by concrete points.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lpbench.bounds.propagate import interval_bounds, linear_bounds
from lpbench.experiments.compare import compare
from lpbench.experiments.table1 import Row
from lpbench.methods import REGISTRY, margin_spec, verify
from lpbench.plugins import register_verifier
from lpbench.problem import Perturbation, Status
from lpbench.zoo import load_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bounds(net, images, labels, pset, kind="ibp"):
    x = torch.as_tensor(images, dtype=torch.float64)
    spec = margin_spec(torch.as_tensor(labels), net.n_classes, x.dtype, x.device)
    with torch.no_grad():
        b = interval_bounds(net, x, pset, spec) if kind == "ibp" else linear_bounds(net, x, pset, spec, "adaptive")
    return b.lower.numpy()


@pytest.fixture
def registered():
    names = []

    def add(name, fn, **kw):
        names.append(name)
        return register_verifier(name, fn, **kw)
    yield add
    for n in names:
        REGISTRY.pop(n, None)


@pytest.fixture(scope="module")
def lpd():
    from lpbench.data import load_dataset
    d = load_dataset("mnist", "test")
    return load_model("LPD-MLP-B-0.1"), d.images[:40], d.labels[:40]


def test_python_plugin_matches_the_method_it_wraps(registered, lpd) -> None:
    net, images, labels = lpd
    registered("my-ibp", _bounds)
    pset = Perturbation(0.002)
    mine = verify(net, images, labels, pset, ["my-ibp"])
    ref = verify(net, images, labels, pset, ["ibp"])
    assert [o.status for o in mine] == [o.status for o in ref]
    assert sum(o.status is Status.VERIFIED for o in mine) > 0
    assert all(o.method == "my-ibp" for o in mine)


class _Crown:
    """CROWN bounds as a class plugin."""

    def __call__(self, net, images, labels, pset):
        return torch.as_tensor(_bounds(net, images, labels, pset, "crown"))


def test_class_plugin_and_tensor_result(registered, lpd) -> None:
    net, images, labels = lpd
    m = registered("my-crown", _Crown)
    assert m.summary == "CROWN bounds as a class plugin."
    mine = verify(net, images, labels, Perturbation(0.05), ["my-crown"])
    ref = verify(net, images, labels, Perturbation(0.05), ["crown"])
    assert [o.status for o in mine] == [o.status for o in ref]


def _raises(net, images, labels, pset):
    raise RuntimeError("solver exploded")


@pytest.mark.parametrize("fn, message", [
    (_raises, "raised RuntimeError: solver exploded"),
    (lambda n, x, y, p: np.ones((len(y), 3)), "returned shape"),
    (lambda n, x, y, p: np.full((len(y), n.n_classes), np.nan), "NaN"),
    (lambda n, x, y, p: np.full((len(y), n.n_classes), np.inf), "+inf"),
    (lambda n, x, y, p: "verified", "not an array"),
])
def test_broken_plugins_are_errors_never_verified(registered, lpd, fn, message) -> None:
    net, images, labels = lpd
    registered("broken", fn)
    outs = verify(net, images, labels, Perturbation(0.01), ["broken"])
    clean = net.logits64(images).argmax(1) == labels
    for o, ok in zip(outs, clean):
        if ok:
            assert o.status is Status.ERROR and message in o.stats["error"]
        else:  # misclassified at x: falsified by x itself, whatever the plugin says
            assert o.status is Status.FALSIFIED
    assert not any(o.status is Status.VERIFIED for o in outs)


def test_bad_registration() -> None:
    with pytest.raises(ValueError):
        register_verifier("a,b", _bounds)
    with pytest.raises(TypeError):
        register_verifier("not-callable", 3)


def test_unsound_plugin_is_flagged_beyond_the_barrier(registered, tmp_path, shared_mirror) -> None:
    # CROWN's bounds pushed up by 3: beyond LP-ALL, and violated at PGD's points
    registered("too-good", lambda n, x, y, p: _bounds(n, x, y, p, "crown") + 3.0)
    df = compare("too-good", [Row("LPD-MLP-B-0.1", 0.1)], 15, store=tmp_path / "s.sqlite", milp_time_limit=20)
    r = df.iloc[0]
    assert r.beyond_barrier > 0 and r.unsound > 0
    assert r.too_good_upper_pct < r.lp_all_upper_pct  # it "beats" the optimal layer-wise bound


def test_sound_plugin_closes_part_of_the_gap(registered, tmp_path, shared_mirror) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from lpbench_example_plugin import best_of_ibp_crown
    finally:
        sys.path.remove(str(EXAMPLE))
    registered("best", best_of_ibp_crown)
    df = compare("best", [Row("NOR-MLP-B", 0.02)], 30, store=tmp_path / "s.sqlite", milp_time_limit=20)
    r = df.iloc[0]
    assert r.beyond_barrier == 0 and r.unsound == 0
    assert r.lp_all_upper_pct <= r.best_upper_pct <= r.lp_greedy_upper_pct
    assert r.pgd_lower_pct <= r.lp_all_upper_pct


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> dict[str, str]:
    """The example plugin as an installed distribution (module + dist-info with its entry
    point) on a fresh sys.path entry, as `pip install examples/plugin` would leave it."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy(EXAMPLE / "lpbench_example_plugin.py", site)
    info = site / "lpbench_example_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lpbench-example-plugin\nVersion: 0.1.0\n")
    text = (EXAMPLE / "pyproject.toml").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("best-of-ibp-crown"))
    (info / "entry_points.txt").write_text(f"[lpbench.verifiers]\n{line.replace(' = ', '=').replace(chr(34), '')}\n"
                                           "broken-plugin=lpbench_example_plugin:no_such_function\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _lpbench(env, *args):
    return subprocess.run([sys.executable, "-m", "lpbench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_entry_point_plugin_in_both_tables_and_compare(installed_example, tmp_path, shared_mirror) -> None:
    env, store = installed_example, str(tmp_path / "s.sqlite")
    listed = _lpbench(env, "methods")
    assert listed.returncode == 0 and "best-of-ibp-crown" in listed.stdout
    # a plugin that cannot be loaded breaks nothing and is named
    assert "broken-plugin" not in listed.stdout and "plugin broken-plugin" in listed.stderr
    t1 = _lpbench(env, "table1", "--samples", "10", "--rows", "8", "--methods", "pgd,lp-greedy,best-of-ibp-crown",
                  "--store", store, "--out", str(tmp_path))
    assert t1.returncode == 0, t1.stderr[-2000:]
    df1 = pd.read_csv(next(tmp_path.glob("table1*.csv")), comment="#")
    assert "best_of_ibp_crown_upper_pct" in df1.columns
    t2 = _lpbench(env, "reproduce", "table2", "--models", "NOR-MLP-2-100", "--samples", "6139:6140", "--methods",
                  "pgd,best-of-ibp-crown", "--milp-models", "none", "--lp-all", "none", "--tol", "1e-3",
                  "--workers", "1", "--store", store, "--out", str(tmp_path / "t2"))
    assert t2.returncode == 0, t2.stderr[-2000:]
    df2 = pd.read_csv(tmp_path / "t2" / "table2_subset.csv", comment="#")
    assert df2["best-of-ibp-crown_mean_e3"].iloc[0] > 0
    cmp = _lpbench(env, "compare", "best-of-ibp-crown", "--models", "LPD-MLP-B-0.1", "--samples", "10",
                   "--store", store, "--out", str(tmp_path / "cmp"))
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    df3 = pd.read_csv(tmp_path / "cmp" / "compare_best-of-ibp-crown.csv", comment="#")
    assert df3.unsound.tolist() == [0] and df3.beyond_barrier.tolist() == [0]
    assert "compare best-of-ibp-crown" in (tmp_path / "cmp" / "compare_best-of-ibp-crown.md").read_text()


def test_compare_bad_input(installed_example, tmp_path) -> None:
    for args, msg in ((["compare", "nope"], "unknown method"),
                      (["compare", "crown", "--models", "CNN-X"], "not a Table 1 network"),
                      (["compare", "crown", "--eps", "abc"], "--eps must be")):
        r = _lpbench(installed_example, *args, "--store", str(tmp_path / "s.sqlite"))
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr

"""Implied bounds of single ReLU splits (lpbench.milp.implications): they hold at every sampled
input on the split's side, the first hidden layer's are the exact LP minimum, a partial table
(deadline) holds too, and the branch and bound that splits with them keeps agreeing with brute
force."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from helpers import random_relu_net
from lpbench.milp import tightened_bounds
from lpbench.milp.bab import _branch, _Domains, _empty, _with_split, bab_search, dense_relu
from lpbench.milp.implications import SampleImplications, implied_bounds
from lpbench.problem import Perturbation, Status
from lpbench.solvers import get_backend
from test_bab import agrees_with_brute_force
from test_milp import _net, _sample, mnist  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _root(net, x, label, pset, tightening="lp-all"):
    pre, _ = tightened_bounds(net, x, label, pset, tightening, get_backend("highs") if tightening == "lp-all" else None)
    acts = net.activation_indices
    lo = [torch.as_tensor(np.ravel(pre[i][0]), dtype=torch.float64) for i in acts]
    hi = [torch.as_tensor(np.ravel(pre[i][1]), dtype=torch.float64) for i in acts]
    box = tuple(t.reshape(-1) for t in pset.enclosing_box(torch.as_tensor(x)))
    return pre, lo, hi, box


def _pre_activations(wb, pts: torch.Tensor) -> list[torch.Tensor]:
    z, h = [], pts
    for w, b in wb[:-1]:
        h = h @ w.T + b
        z.append(h)
        h = h.clamp(min=0)
    return z


@pytest.mark.parametrize("seed", range(6))
def test_implied_bounds_hold_at_sampled_inputs_on_the_split_side(seed):
    """Three hidden layers, LP-ALL root bounds: at 40,000 inputs of the box, every neuron lies
    inside the bounds implied by each root-unstable neuron's side the input takes; and some
    split does imply something (the test can fail both ways)."""
    rng = np.random.default_rng(seed)
    net = random_relu_net(rng, [5, 12, 10, 8, 3], f"implied{seed}")
    x = rng.uniform(0.2, 0.8, 5)
    label = int(np.argmax(net.logits64(x[None])[0]))
    pset = Perturbation(0.25)
    _, lo, hi, box = _root(net, x, label, pset)
    wb = dense_relu(net)
    tables = implied_bounds(wb, lo, hi, box, time.perf_counter() + 60, time.perf_counter)
    assert tables.pairs == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
    pts = torch.as_tensor(rng.uniform(box[0].numpy(), box[1].numpy(), size=(40000, 5)))
    z = _pre_activations(wb, pts)
    checked = 0
    for i, (l, u) in enumerate(zip(lo, hi)):
        for m in torch.nonzero((l < 0) & (u > 0)).flatten().tolist():
            for sd, on in ((0, z[i][:, m] >= 0), (1, z[i][:, m] <= 0)):
                for j in range(len(z)):
                    zj = z[j][on]
                    assert bool((zj >= tables.lo[i][sd][j][m][None]).all())
                    assert bool((zj <= tables.hi[i][sd][j][m][None]).all())
                    checked += int(on.sum())
    assert checked > 100000
    assert tables.stabilising() > 0


def test_first_layer_bounds_are_the_lp_minimum():
    """Both neurons in the first hidden layer: the bound equals min +-z_k over the box with the
    split's half-space (HiGHS through scipy) to 1e-7, and is never above it; a pair left out
    (the split keeps the box minimiser of +-z_k) has that minimum equal to the root bound."""
    rng = np.random.default_rng(7)
    net = random_relu_net(rng, [6, 14, 3], "knapsack")
    x = rng.uniform(0.2, 0.8, 6)
    label = int(np.argmax(net.logits64(x[None])[0]))
    pset = Perturbation(0.3)
    _, lo, hi, box = _root(net, x, label, pset, "interval")
    w, b = dense_relu(net)[0]
    tables = implied_bounds(dense_relu(net), lo, hi, box, time.perf_counter() + 60, time.perf_counter)
    units = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).flatten().tolist()
    assert len(units) >= 4
    bounds = list(zip(box[0].tolist(), box[1].tolist()))
    compared = skipped = 0
    for m in units:
        for sd, s in ((0, 1.0), (1, -1.0)):
            for k in units:
                if k == m:
                    continue
                for sign in (1.0, -1.0):
                    res = linprog(sign * w[k].numpy(), A_ub=-s * w[m].numpy()[None], b_ub=[s * float(b[m])],
                                  bounds=bounds, method="highs")
                    assert res.status == 0
                    exact = res.fun + sign * float(b[k])
                    ours = float(tables.lo[0][sd][0][m, k]) if sign > 0 else -float(tables.hi[0][sd][0][m, k])
                    root = float(lo[0][k]) if sign > 0 else -float(hi[0][k])
                    if ours == -np.inf:  # skipped: the split keeps the box minimiser, nothing to gain
                        assert exact == pytest.approx(root, abs=1e-7)
                        skipped += 1
                    else:
                        assert ours <= exact + 1e-12
                        assert ours == pytest.approx(exact, abs=1e-7)
                        compared += 1
    assert compared > 50 and skipped > 50


def test_a_deadline_keeps_the_finished_pairs_only():
    net = random_relu_net(np.random.default_rng(3), [5, 10, 9, 3], "partial")
    x = np.full(5, 0.5)
    label = int(np.argmax(net.logits64(x[None])[0]))
    _, lo, hi, box = _root(net, x, label, Perturbation(0.3), "interval")
    none = implied_bounds(dense_relu(net), lo, hi, box, time.perf_counter() - 1, time.perf_counter)
    assert none.pairs == [] and none.rows == 0
    assert all(bool(torch.isinf(t).all()) for side in none.lo[0] for t in side)


def test_a_deadline_within_a_pair_keeps_the_bounds_it_finished(monkeypatch):
    """A clock that runs out after a few chunks: the bounds finished so far are those of the full
    tables (nearest-to-stable first), the rest are left out, and the stabilising counts are kept
    for what was finished."""
    import lpbench.milp.implications as implications
    rng = np.random.default_rng(12)
    net = random_relu_net(rng, [6, 16, 3], "partial-pair")
    x = rng.uniform(0.3, 0.7, 6)
    label = int(np.argmax(net.logits64(x[None])[0]))
    _, lo, hi, box = _root(net, x, label, Perturbation(0.3), "interval")
    wb = dense_relu(net)
    full = implied_bounds(wb, lo, hi, box, time.perf_counter() + 60, time.perf_counter)
    monkeypatch.setattr(implications, "CHUNK", 16)
    ticks = iter(range(10 ** 6))
    part = implied_bounds(wb, lo, hi, box, 4.0, lambda: float(next(ticks)))
    assert part.pairs == [] and 0 < part.rows < full.rows
    done = torch.isfinite(part.lo[0][0][0]) | torch.isfinite(part.lo[0][1][0])
    assert bool(done.any()) and not bool(done.all())
    for side in (0, 1):
        for mine, whole in ((part.lo[0][side][0], full.lo[0][side][0]), (part.hi[0][side][0], full.hi[0][side][0])):
            kept = torch.isfinite(mine)
            assert torch.allclose(mine[kept], whole[kept], rtol=1e-12, atol=1e-12)
    assert part.stabilising() <= full.stabilising()


def test_splits_take_the_implied_bounds_and_empty_domains_are_found():
    """A child of a split has the bounds the tables give for it, and a domain whose lower bound
    passes its upper bound is empty; the branching score prefers neurons that imply more."""
    rng = np.random.default_rng(11)
    net = random_relu_net(rng, [4, 10, 8, 3], "child")
    x = rng.uniform(0.3, 0.7, 4)
    label = int(np.argmax(net.logits64(x[None])[0]))
    _, lo, hi, box = _root(net, x, label, Perturbation(0.3), "interval")
    tables = implied_bounds(dense_relu(net), lo, hi, box, time.perf_counter() + 60, time.perf_counter)
    m = int(torch.nonzero((lo[0] < 0) & (hi[0] > 0)).flatten()[0])
    dom = _Domains(torch.tensor([0]), [t[None].clone() for t in lo], [t[None].clone() for t in hi],
                   [torch.zeros(1, t.numel(), dtype=torch.float64) for t in lo],
                   [torch.zeros(1, t.numel(), dtype=torch.float64) for t in lo],
                   [torch.zeros(1, t.numel(), dtype=torch.float64) for t in lo])
    for side, sd in ((1, 0), (-1, 1)):
        child = _with_split(dom, torch.tensor([0]), torch.tensor([m]), side, tables)
        for j in range(2):
            want_lo, want_hi = lo[j].clone(), hi[j].clone()
            if j == 0:
                (want_lo if side > 0 else want_hi)[m] = 0.0
            assert torch.equal(child.lo[j][0], torch.maximum(want_lo, tables.lo[0][sd][j][m]))
            assert torch.equal(child.hi[j][0], torch.minimum(want_hi, tables.hi[0][sd][j][m]))
        assert child.split[0][0, m] == side and not bool(_empty(child).any())
    broken = _Domains(dom.target, [t.clone() for t in dom.lo], [t.clone() for t in dom.hi], dom.split, dom.alpha,
                      dom.beta)
    broken.lo[1][0, 0] = broken.hi[1][0, 0] + 1.0
    assert bool(_empty(broken)[0])
    coef = {i: -torch.ones(1, t.numel(), dtype=torch.float64) for i, t in enumerate(lo)}
    plain = _branch(dom, coef)
    weighted = _branch(dom, coef, tables)
    assert plain[0].item() >= 0 and weighted[0].item() >= 0


def test_search_with_implied_bounds_agrees_with_brute_force():
    """With the tables in hand from the start (LP-ALL and interval roots): a verified target has
    a positive brute-force minimum at or above the bound, a falsified one a negative minimum and
    a re-checked point; nearly all decided, and at least one split implied something."""
    decided = total = implied = 0
    for seed in range(16):
        net = _net(700 + seed)
        x, label, pset = _sample(net, 700 + seed)
        for tightening in ("interval", "lp-all"):
            pre, lo, hi, box = _root(net, x, label, pset, tightening)
            for j in (j for j in range(net.n_classes) if j != label):
                lazy = SampleImplications(dense_relu(net), lo, hi, box, 30.0, time.perf_counter() + 60,
                                          time.perf_counter)
                implied += lazy.get().stabilising()
                found = bab_search(net, x, label, [j], pset, pre, time.perf_counter() + 30, time.perf_counter, lazy)
                decided += agrees_with_brute_force(found, net, x, label, j, pset)
                total += 1
    assert decided >= 0.9 * total
    assert implied > 0


def test_a_zoo_target_is_decided_the_same_with_implied_bounds(mnist):
    """NOR-MLP-B at 0.02, test image 66, target 7 (verified by the exact MILP): with the tables
    the search verifies it too, in fewer domains (measured: 2,245 against 13,117)."""
    from lpbench.zoo import load_model
    net = load_model("NOR-MLP-B")
    x, label = np.asarray(mnist.images[66], np.float64), int(mnist.labels[66])
    pset = Perturbation(0.02)
    pre, lo, hi, box = _root(net, x, label, pset)
    lazy = SampleImplications(dense_relu(net), lo, hi, box, 60.0, time.perf_counter() + 600, time.perf_counter)
    assert lazy.get().stabilising() > 0
    with_tables = bab_search(net, x, label, [7], pset, pre, time.perf_counter() + 120, time.perf_counter, lazy)
    without = bab_search(net, x, label, [7], pset, pre, time.perf_counter() + 120, time.perf_counter)
    assert with_tables.verified == (7,) and without.verified == (7,)
    assert with_tables.domains < without.domains / 2


def test_the_implied_option_of_the_milp_method(mnist, monkeypatch):
    """NOR-MLP-B at 0.02, test image 66 (its hardest MILP target needs the search for most of a
    second, so the search asks for the tables after 0.1 s here): with ``implied`` (the default)
    the targets' records name the implied bounds, with ``implied = false`` none does, and both
    verify it; a value that is not a boolean is refused."""
    import lpbench.milp.bab as bab
    from lpbench.methods import verify
    from lpbench.zoo import load_model
    monkeypatch.setattr(bab, "TRIGGER_S", 0.1)
    net, pset = load_model("NOR-MLP-B"), Perturbation(0.02)
    ids = np.array([66])
    images, labels = mnist.images[ids], mnist.labels[ids]
    runs = {flag: verify(net, images, labels, pset, ["milp"], ids=ids,
                         options={"milp": {"implied": flag, "time_limit": 120}})[0] for flag in (True, False)}
    assert runs[True].status is Status.VERIFIED and runs[False].status is Status.VERIFIED
    notes = {flag: " ".join(t["message"] for t in o.stats["targets"]) for flag, o in runs.items()}
    assert "implied bounds" in notes[True] and "implied bounds" not in notes[False]
    with pytest.raises(ValueError, match="implied"):
        verify(net, images, labels, pset, ["milp"], options={"milp": {"implied": 1}})

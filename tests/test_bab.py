"""The branch and bound with batched bound propagation (lpbench.milp.bab): every bound it uses is
sound for any multipliers, its verdicts agree with brute force, and the milp method's option
turns it off (inside verify_sample it decides what the MILPs leave open: test_milp.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from helpers import random_relu_net
from lpbench.attacks.pgd import recheck
from lpbench.milp import tightened_bounds
from lpbench.milp.bab import _backward, _Domains, _leaf, bab_search, dense_relu
from lpbench.network import Network
from test_milp import _brute_force, _net, _sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("seed", range(6))
def test_a_domain_bound_holds_for_any_multipliers_on_sampled_points(seed):
    """Random splits of the unstable neurons, random alpha in [0, 1] and beta >= 0: the bound is
    below f_y - f_j at every sampled input of the box whose pre-activations take the split sides."""
    rng = np.random.default_rng(seed)
    net, x, label, pset, dom = _split_domains(rng, f"bab{seed}", 0.3, 64, (-1.0, 0.0, 1.0))
    target, split, n_dom = dom.target, dom.split, len(dom)
    dom.alpha = [torch.as_tensor(rng.uniform(0, 1, size=t.shape)) for t in dom.lo]
    dom.beta = [torch.as_tensor(rng.exponential(1.0, size=t.shape)) for t in dom.lo]
    spec = torch.zeros(n_dom, 3, dtype=torch.float64)
    spec[:, label] = 1.0
    spec[torch.arange(n_dom), target] = -1.0
    box = tuple(t.reshape(-1) for t in pset.enclosing_box(torch.as_tensor(x)))
    bound, _, _ = _backward(dense_relu(net), dom, spec, box, dom.alpha, dom.beta)
    pts, z, h = _sampled(net, box, rng, 20000)
    margins = (h[:, label][None] - h[:, target].T)  # (domains, points)
    checked = 0
    for d in range(n_dom):
        inside = torch.ones(len(pts), dtype=torch.bool)
        for zi, s in zip(z, split):
            inside &= ((zi * s[d]) >= 0).all(dim=1)
        assert bool((margins[d][inside] >= bound[d]).all())
        checked += int(inside.sum())
    assert checked > 10000


def test_the_exact_lp_of_a_domain_with_nothing_left_to_split():
    """Every unstable neuron split to a random side: the leaf LP's bound is below the margin at
    every sampled input of the box on those sides; its minimiser, when it returns one, is such an
    input whose margin is the sampled minimum or lower; an empty verdict has no such input."""
    seen = {"closed": 0, "point": 0, "empty": 0}
    for seed in range(8):
        _leaf_checks(seed, seen)
    assert seen["closed"] and seen["point"], seen


def _split_domains(rng, name: str, eps: float, n_dom: int, sides: tuple[float, ...]):
    """A random 4-6-5-3 network, a point, the set of radius ``eps``, and ``n_dom`` domains on its
    interval bounds with each unstable neuron split to a side drawn from ``sides`` (0: unsplit)
    and a random target; alpha and beta 0."""
    from lpbench.problem import Perturbation
    net = random_relu_net(rng, [4, 6, 5, 3], name)
    x = rng.uniform(0.2, 0.8, 4)
    label = int(np.argmax(net.logits64(x[None])[0]))
    pset = Perturbation(eps)
    pre, _ = tightened_bounds(net, x, label, pset, "interval")
    lo = [torch.as_tensor(np.ravel(pre[i][0]), dtype=torch.float64).repeat(n_dom, 1) for i in net.activation_indices]
    hi = [torch.as_tensor(np.ravel(pre[i][1]), dtype=torch.float64).repeat(n_dom, 1) for i in net.activation_indices]
    split = []
    for l, u in zip(lo, hi):
        s = torch.as_tensor(rng.choice(sides, size=l.shape)) * ((l < 0) & (u > 0))
        l[s > 0], u[s < 0] = 0.0, 0.0
        split.append(s)
    target = torch.as_tensor(rng.choice([j for j in range(3) if j != label], size=n_dom))
    return net, x, label, pset, _Domains(target, lo, hi, split, [torch.zeros_like(t) for t in lo],
                                         [torch.zeros_like(t) for t in lo])


def _sampled(net, box, rng, n: int):
    """``n`` uniform points of the box, their pre-activations per hidden layer, and their logits."""
    pts = rng.uniform(box[0].numpy(), box[1].numpy(), size=(n, box[0].numel()))
    h, z = torch.as_tensor(pts), []
    wb = dense_relu(net)
    for k, (w, b) in enumerate(wb):
        h = h @ w.T + b
        if k < len(wb) - 1:
            z.append(h)
            h = h.clamp(min=0)
    return pts, z, h


def _leaf_checks(seed: int, seen: dict) -> None:
    rng = np.random.default_rng(seed)
    net, x, label, pset, dom = _split_domains(rng, f"leaf{seed}", 0.4, 24, (-1.0, 1.0))
    wb, target, split, n_dom = dense_relu(net), dom.target, dom.split, len(dom)
    box = tuple(t.reshape(-1) for t in pset.enclosing_box(torch.as_tensor(x)))
    pts, z, h = _sampled(net, box, rng, 40000)
    for d in range(n_dom):
        inside = torch.ones(len(pts), dtype=torch.bool)
        for zi, s in zip(z, split):
            inside &= ((zi * s[d]) >= 0).all(dim=1)
        j = int(target[d])
        margins = (h[:, label] - h[:, j])[inside]
        verdict, value = _leaf(wb, dom, d, label, box)
        seen[verdict] += 1
        if verdict == "closed":
            assert bool((margins >= value).all()) and value > 0
        elif verdict == "point":
            logits = net.logits64(value[None])[0]
            at = logits[label] - logits[j]
            assert at <= 1e-9
            hv, sides_ok = torch.as_tensor(value)[None], True
            for k, (w, b) in enumerate(wb[:-1]):
                hv = hv @ w.T + b
                sides_ok &= bool(((hv[0] * split[k][d]) >= -1e-6).all())  # HiGHS: rows to 1e-7
                hv = hv.clamp(min=0)
            assert sides_ok and bool((margins >= at - 1e-9).all()), (sides_ok, float(margins.min()) if len(margins) else None, at)
        else:
            assert verdict == "empty" and not bool(inside.any()), (verdict, int(inside.sum()))


def test_verdicts_equal_brute_force_on_tiny_networks():
    """From interval bounds: a verified target has a positive brute-force minimum at or above the
    search's bound, a falsified one a negative minimum and a re-checked point; every target is
    decided (a domain with nothing left to split gets its exact LP, :func:`_leaf`)."""
    decided = total = 0
    for seed in range(16):
        net = _net(500 + seed)
        x, label, pset = _sample(net, 500 + seed)
        pre, _ = tightened_bounds(net, x, label, pset, "interval")
        for j in (j for j in range(net.n_classes) if j != label):
            found = bab_search(net, x, label, [j], pset, pre, time.perf_counter() + 30, time.perf_counter)
            decided += agrees_with_brute_force(found, net, x, label, j, pset)
            total += 1
    assert decided == total


def agrees_with_brute_force(found, net, x, label: int, j: int, pset) -> bool:
    """Check one target's search against the brute-force minimum: verified only with a positive
    minimum at or above its bound, falsified only with a negative one and a re-checked point
    whose margin it reports; True if it decided."""
    exact = _brute_force(net, x, label, j, pset)
    if j in found.verified:
        assert exact > 0 and found.bound[j] <= exact + 1e-9
        return True
    if found.point is not None:
        assert exact < 0 and found.target == j and recheck(net, found.point, x, label, pset)[2]
        assert found.margin == pytest.approx(recheck(net, found.point, x, label, pset)[1][j])
        return True
    assert j in found.open
    return False


def test_several_targets_at_once_and_a_deadline_in_the_past():
    net = _net(520)
    x, label, pset = _sample(net, 520)
    pre, _ = tightened_bounds(net, x, label, pset, "interval")
    targets = [j for j in range(net.n_classes) if j != label]
    found = bab_search(net, x, label, targets, pset, pre, time.perf_counter() - 1, time.perf_counter)
    assert found.verified == () and set(found.open) == set(targets) and found.domains == 0
    both = bab_search(net, x, label, targets, pset, pre, time.perf_counter() + 30, time.perf_counter)
    for j in targets:
        alone = bab_search(net, x, label, [j], pset, pre, time.perf_counter() + 30, time.perf_counter)
        assert (j in both.verified) == (j in alone.verified) or both.point is not None


def test_only_dense_relu_networks():
    from lpbench.activations import parse_activation
    from lpbench.network import Act, Conv2d, Dense, Flatten
    rng = np.random.default_rng(0)
    conv = Network((Conv2d(rng.normal(size=(2, 1, 2, 2)).astype(np.float32), np.zeros(2, np.float32), 1, 0),
                    Act(parse_activation("relu")), Flatten(), Dense(rng.normal(size=(3, 8)).astype(np.float32),
                                                                     np.zeros(3, np.float32))), (1, 3, 3), "conv")
    tanh = Network((Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)), Act(parse_activation("tanh")),
                    Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32))), (2,), "tanh")
    assert dense_relu(conv) is None and dense_relu(tanh) is None
    assert dense_relu(_net(0)) is not None
    assert bab_search(conv, np.zeros((1, 3, 3)), 0, [1], None, {}, 0.0, time.perf_counter) is None


def test_the_bab_option_of_the_milp_method():
    """``bab = false`` turns the search off (no target decided by it) and leaves every verdict
    as it was; a value that is not a boolean is refused."""
    from lpbench.methods import verify
    rng = np.random.default_rng(7)
    net = random_relu_net(rng, [6, 8, 8, 3], "opt")
    images = rng.uniform(0.2, 0.8, size=(6, 6)).astype(np.float32)
    labels = net.logits64(images.astype(np.float64)).argmax(axis=1)
    from lpbench.problem import Perturbation
    pset = Perturbation(0.15)
    runs = {flag: verify(net, images, labels, pset, ["milp"], options={"milp": {"bab": flag, "time_limit": 30,
                                                                                "tightening": "interval"}})
            for flag in (True, False)}
    assert [o.status for o in runs[True]] == [o.status for o in runs[False]]
    solvers = {flag: {t["solver"] for o in outs for t in o.stats.get("targets", [])} for flag, outs in runs.items()}
    assert "branch and bound" in solvers[True] and "branch and bound" not in solvers[False]
    with pytest.raises(ValueError, match="bab"):
        verify(net, images, labels, pset, ["milp"], options={"milp": {"bab": "yes"}})


def test_pruning_neurons_inactive_everywhere_leaves_every_bound_as_it_was():
    """Neurons inactive and unsplit in every domain of a batch add nothing to a bound: the bounds
    over the pruned layers equal the full ones, and exactly those neurons are dropped."""
    from lpbench.milp.bab import _pruned
    rng = np.random.default_rng(5)
    net = random_relu_net(rng, [6, 9, 7, 3], "pruned")
    wb = dense_relu(net)
    n_dom = 32
    lo = [torch.as_tensor(rng.uniform(-2, 0.5, size=(n_dom, n))) for n in (9, 7)]
    hi = [l + torch.as_tensor(rng.uniform(0, 2, size=l.shape)) for l in lo]
    for l, u in zip(lo, hi):  # neurons 0 and 1 inactive in every domain
        l[:, :2], u[:, :2] = -1.0, -0.1
    split = [torch.as_tensor(rng.choice([-1.0, 0.0, 1.0], size=t.shape)) * ((l < 0) & (u > 0))
             for t, l, u in zip(lo, lo, hi)]
    for l, u, s in zip(lo, hi, split):
        l[s > 0], u[s < 0] = 0.0, 0.0
    split[1][3, 1] = -1.0  # a split neuron carries a beta term even where it is inactive
    alpha = [torch.as_tensor(rng.uniform(0, 1, size=t.shape)) for t in lo]
    beta = [torch.as_tensor(rng.exponential(1.0, size=t.shape)) for t in lo]
    dom = _Domains(torch.as_tensor(rng.integers(1, 3, size=n_dom)), lo, hi, split, alpha, beta)
    spec = torch.zeros(n_dom, 3, dtype=torch.float64)
    spec[:, 0] = 1.0
    spec[torch.arange(n_dom), dom.target] = -1.0
    box = (torch.full((6,), 0.1, dtype=torch.float64), torch.full((6,), 0.7, dtype=torch.float64))
    full = _backward(wb, dom, spec, box, alpha, beta)[0]
    layers, view, keep = _pruned(wb, dom)
    assert keep[0].tolist() == [False, False] + [True] * 7 and keep[1].tolist() == [False, True] + [True] * 5
    pruned = _backward(layers, view, spec, box, view.alpha, view.beta)[0]
    assert torch.allclose(pruned, full, rtol=1e-12, atol=1e-12)

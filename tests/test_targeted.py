"""The targeted PGD (lpbench.attacks.targeted) and its place in the ``milp`` method.

On a linear classifier the smallest margin to each class over the ball is known in closed form:
the attack must reach it to a small tolerance, never go below it, and report a counterexample
exactly for the classes whose minimum is negative. On zoo networks every reported point must be
in the set and misclassified, and must never contradict a sound bound. Inside the MILP method it
may only move a verdict from the solver to the attack, never change it.
"""

from __future__ import annotations

import numpy as np
import pytest

import lpbench.lp.methods  # noqa: F401  (registers lp-greedy)
import lpbench.milp.methods  # noqa: F401  (registers milp)
from helpers import random_relu_net
from lpbench.attacks.pgd import PGDConfig, attack
from lpbench.attacks.targeted import TargetedConfig, targeted_attack
from lpbench.methods import verify
from lpbench.network import Dense, Network
from lpbench.problem import Perturbation, Status

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DUAL = {"linf": 1, "l2": 2, "l1": np.inf}
EPS = {"linf": 0.05, "l2": 0.3, "l1": 0.4}


def _three_classes(seed: int, norm: str):
    """A linear 3-class classifier on [0,1]^8 and x in [0.4, 0.6]^8 (the ball stays in the box)
    whose closest class 1 is out of reach (minimum margin +0.2) while class 2, further at x, is
    reachable (minimum margin -0.5). Returns the network, x, the set and the minima per class."""
    rng = np.random.default_rng(seed)
    d, eps = 8, EPS[norm]
    w = rng.normal(size=(3, d))
    x = rng.uniform(0.4, 0.6, size=d).astype(np.float32)
    reach1 = np.linalg.norm(w[0] - w[1], DUAL[norm]) * eps
    d2 = w[0] - w[2]  # rescaled so class 2's reach exceeds class 1's by 1.5
    w[2] = w[0] - d2 * (reach1 + 1.5) / (np.linalg.norm(d2, DUAL[norm]) * eps)
    at_x = {1: reach1 + 0.2, 2: reach1 + 1.0}  # margins f_0 - f_j at x; minima 0.2 and -0.5
    bias = np.zeros(3)
    for j in (1, 2):
        bias[j] = (w[0] - w[j]) @ x.astype(np.float64) - at_x[j]
    net = Network((Dense(w.astype(np.float32), bias.astype(np.float32)),), (d,), "linear3")
    return net, x, Perturbation(eps, norm), {1: 0.2, 2: -0.5}


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("seed", range(3))
def test_each_target_reaches_its_closed_form_minimum(seed, norm):
    net, x, pset, minimum = _three_classes(seed, norm)
    at_x = net.logits64(x)[0]
    assert at_x.argmax() == 0 and at_x[0] - at_x[1] < at_x[0] - at_x[2]  # class 1 is the closer
    res = targeted_attack(net, x, 0, pset, [2, 1], TargetedConfig(steps=100, restarts=2))
    assert [r.target for r in res] == [2, 1] and res[0].found
    for r in res:
        reached = r.margins[r.target]
        assert reached >= minimum[r.target] - 1e-4  # never below the minimum over the ball
        assert reached <= minimum[r.target] + 0.02  # and close to it
        assert r.found is bool(np.nanmin(r.margins) < 0)  # a point that misclassifies, to any class
        assert pset.contains(r.point, x.astype(np.float64))


def test_bad_targets_are_refused():
    net, x, pset, _ = _three_classes(0, "linf")
    with pytest.raises(ValueError, match="targets"):
        targeted_attack(net, x, 0, pset, [0, 1])
    with pytest.raises(ValueError, match="targets"):
        targeted_attack(net, x, 0, pset, [3])
    assert targeted_attack(net, x, 0, pset, []) == []
    with pytest.raises(ValueError, match="restarts"):
        TargetedConfig(restarts=0)


@pytest.mark.parametrize("eps", [0.03, 0.08])
def test_on_nor_mlp_b_every_point_holds_and_no_bound_is_contradicted(shared_mirror, eps):
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds, net = load_mnist("test"), load_model("NOR-MLP-B")
    pset, found = Perturbation(eps), 0
    images, labels = ds.images[:20], ds.labels[:20]
    bounds = verify(net, images, labels, pset, ["lp-greedy"])
    for s, (image, label) in enumerate(zip(images, labels)):
        label = int(label)
        if net.logits64(image)[0].argmax() != label:
            continue
        res = targeted_attack(net, image, label, pset, [j for j in range(10) if j != label], sample_id=s)
        lower = bounds[s].margin_lower
        for r in res:
            assert r.margins[r.target] >= lower[r.target] - 1e-9  # a value on the set, above a sound bound
            if r.found:
                found += 1
                assert bounds[s].status is not Status.VERIFIED
                assert pset.contains(r.point, image.astype(np.float64))
                logits = net.logits64(r.point)[0]
                assert np.delete(logits, label).max() > logits[label]
    assert found > 0 or eps < 0.05


def test_it_finds_what_the_table_pgd_misses_on_nor_mlp_2_100(shared_mirror):
    """Image 5845 at eps 0.0499: the table's PGD stalls on class 9 (margin 0.001); class 8 is
    reachable. The MILP method is decided by the targeted attack before any solver runs."""
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds, net = load_mnist("test"), load_model("NOR-MLP-2-100")
    x, label, pset = ds.images[5845], int(ds.labels[5845]), Perturbation(0.0499)
    ((_, _, ok),) = attack(net, x[None], np.array([label]), pset, PGDConfig())
    assert not ok
    hits = [r.target for r in targeted_attack(net, x, label, pset, [j for j in range(10) if j != label])
            if r.found]
    assert 8 in hits
    (out,) = verify(net, x[None], [label], pset, ["milp"], options={"milp": {"time_limit": 5}})
    assert out.status is Status.FALSIFIED and out.stats["decided_by"] == "targeted-pgd"
    assert out.stats["target"] in hits
    assert pset.contains(out.counterexample, x.astype(np.float64))
    logits = net.logits64(out.counterexample)[0]
    assert logits[out.stats["target"]] > logits[label]
    assert np.nanmin(out.margin_upper) < 0


def test_in_the_milp_method_it_changes_no_verdict():
    """Tiny networks with a one-step PGD and no cheap bounds, so the targeted attack and the
    solver both decide samples: every verdict equals the run without the attack."""
    by_attack = 0
    for seed in range(4):
        rng = np.random.default_rng(seed + 300)
        widths = [int(rng.integers(2, 6)), 5, 4, 3]
        net = random_relu_net(rng, widths, f"tiny{seed}")
        xs = rng.uniform(0.2, 0.8, (8, widths[0])).astype(np.float32)  # the points verify holds
        labels = net.logits64(xs).argmax(1)
        pset = Perturbation(0.2)
        runs = {flag: verify(net, xs, labels, pset, ["milp"],
                             options={"milp": {"time_limit": 30, "targeted": flag, "cheap": False},
                                      "pgd": {"restarts": 1, "steps": 1, "loss": "ce"}})
                for flag in (True, False)}
        for on, off in zip(runs[True], runs[False]):
            assert on.status is off.status
            assert off.stats["decided_by"] != "targeted-pgd"
            if on.stats["decided_by"] == "targeted-pgd":
                by_attack += 1
                assert pset.contains(on.counterexample, xs[on.sample].astype(np.float64))
                assert net.logits64(on.counterexample)[0].argmax() != labels[on.sample]
    assert by_attack > 0
    with pytest.raises(ValueError, match="targeted"):
        verify(net, xs[:1], labels[:1], pset, ["milp"], options={"milp": {"targeted": "yes"}})


def test_the_milp_takes_the_targets_in_the_order_given():
    """``order_by`` sets the order the targets are tried in, in the LP pass and in the MILPs
    after it, and changes no verdict; the samples of a 5-class network include MILP-decided ones."""
    from lpbench.milp import verify_sample
    from lpbench.solvers import get_backend

    seen = set()
    for seed in range(6):
        rng = np.random.default_rng(seed + 500)
        net = random_relu_net(rng, [4, 6, 5, 5], f"five{seed}")
        x = rng.uniform(0.2, 0.8, 4)
        label = int(net.logits64(x[None])[0].argmax())
        pset = Perturbation(float(rng.uniform(0.05, 0.3)))
        rank = {j: float(v) for j, v in enumerate(rng.permutation(5)) if j != label}
        runs = [verify_sample(net, x, label, pset, get_backend("highs"), 30, order_by=by) for by in (None, rank)]
        assert runs[0].status is runs[1].status
        for how in (True, False):  # the LP pass's records, then the MILPs'
            got = [t.target for t in runs[1].targets if (t.solver_status == "lp relaxation") is how]
            assert got == sorted(got, key=rank.get)
        seen |= {t.solver_status == "lp relaxation" for t in runs[1].targets}
    assert seen == {True, False}

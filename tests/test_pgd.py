"""The PGD attack and its float64 re-check (lpbench.attacks.pgd, the "pgd" method).

PGD must find adversarial examples where they provably exist, must never claim one where a sound
bound method certifies the set, and every counterexample it reports must be inside the
perturbation set and misclassified in the reference float64 forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpbench.activations import parse_activation
from lpbench.attacks.pgd import PGDConfig, margins, pgd_attack, recheck
from lpbench.methods import verify
from lpbench.network import Act, Dense, Network
from lpbench.problem import Perturbation, Status

BOUND_METHODS = ("ibp", "fast-lin", "crown", "lp-greedy")
DUAL = {"linf": 1, "l2": 2, "l1": np.inf}  # ||.||_q of the decrease direction per norm
EPS = {"linf": 0.1, "l2": 0.3, "l1": 0.25}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _linear_classifier(seed: int, norm: str, ratio: float, relu: bool = False, box=(0.0, 1.0)):
    """A 2-class classifier on [0,1]^8 and a point x in [0.3, 0.7]^8 (so the ball stays in the
    box) whose margin f_0 - f_1 at x is ``ratio * eps * ||w_0 - w_1||_q``.

    The smallest margin over the ball is (1 - ratio) * eps * ||w||_q, attained at x - eps * d*
    (d* the dual-norm direction): ratio < 1 means an adversarial example provably exists,
    ratio > 1 means the set is robust. With ``relu`` the classifier is W2 relu(I x' + 5) with
    every hidden unit active on the set, the same function written through a ReLU layer.

    Ratios are kept off multiples of 0.05: PGD's sign / normalised steps of 2.5 eps / 50 lower
    this margin by exactly 0.05 eps ||w||_q each, and a step landing on margin 0 exercises a
    float32-versus-float64 tie rather than the attack."""
    rng = np.random.default_rng(seed)
    d = 8
    w = rng.normal(size=(2, d))
    x = rng.uniform(0.3, 0.7, size=d).astype(np.float32)
    eps = EPS[norm]
    diff = w[0] - w[1]
    b1 = 0.0
    b0 = ratio * eps * np.linalg.norm(diff, DUAL[norm]) - diff @ x.astype(np.float64)
    bias = np.array([b0, b1])
    if relu:
        bias = bias - w @ np.full(d, 5.0)  # W2 (x + 5) + b = W2 x + (W2 5 + b)
        layers = (Dense(np.eye(d, dtype=np.float32), np.full(d, 5.0, np.float32)),
                  Act(parse_activation("relu")), Dense(w.astype(np.float32), bias.astype(np.float32)))
    else:
        layers = (Dense(w.astype(np.float32), bias.astype(np.float32)),)
    net = Network(layers, (d,), "linear")
    pset = Perturbation(eps, norm, box)
    return net, x, pset


def _assert_counterexample(net: Network, cex: np.ndarray, x: np.ndarray, label: int,
                           pset: Perturbation) -> None:
    assert cex is not None
    assert pset.contains(cex, x), "counterexample outside the perturbation set"
    logits = net.logits64(cex)[0]
    others = np.delete(logits, label)
    assert others.max() > logits[label], "counterexample is not misclassified in float64"


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pgd_finds_a_counterexample_that_provably_exists(seed, norm, relu):
    net, x, pset = _linear_classifier(seed, norm, ratio=0.37, relu=relu)
    assert net.logits64(x)[0].argmax() == 0
    out = verify(net, x[None], [0], pset, ["pgd"], options={"pgd": {"steps": 50, "restarts": 2}})
    assert out[0].status == Status.FALSIFIED
    _assert_counterexample(net, out[0].counterexample, x, 0, pset)
    assert np.nanmin(out[0].margin_upper) < 0


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pgd_does_not_falsify_a_robust_set(seed, norm):
    """Margin at x larger than the most the ball can remove: robust by the closed form."""
    net, x, pset = _linear_classifier(seed, norm, ratio=1.5)
    out = verify(net, x[None], [0], pset, ["pgd", "lp-greedy"], options={"pgd": {"steps": 50}})
    assert out[0].status == Status.UNKNOWN and out[0].counterexample is None
    assert out[1].status == Status.VERIFIED
    assert np.nanmin(out[0].margin_upper) >= np.nanmin(out[1].margin_lower)


def test_pgd_with_zero_radius_only_falsifies_misclassified_points():
    net, x, _ = _linear_classifier(0, "linf", ratio=0.5)
    pset = Perturbation(0.0)
    out = verify(net, np.stack([x, x]), [0, 1], pset, ["pgd"])
    assert out[0].status == Status.UNKNOWN
    assert out[1].status == Status.FALSIFIED  # label 1 is wrong at x itself
    np.testing.assert_array_equal(out[1].counterexample, x.astype(np.float64))


# --------------------------------------------------------------------------------------------
# against the bound methods on NOR-MLP-B


@pytest.fixture(scope="module")
def nor_mlp_b_outcomes():
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds = load_mnist("test")
    net = load_model("NOR-MLP-B")
    images, labels = ds.images[100:200], ds.labels[100:200]  # holds 3 misclassified images
    pset = Perturbation(0.02)
    outs = verify(net, images, labels, pset, ("pgd",) + BOUND_METHODS,
                  options={"pgd": {"steps": 50, "restarts": 3}})
    by = {(o.method, o.sample): o for o in outs}
    return net, images, labels, pset, by


def test_pgd_never_falsifies_a_certified_sample(nor_mlp_b_outcomes):
    net, images, labels, pset, by = nor_mlp_b_outcomes
    n_verified = n_attacked = 0
    for s in range(len(labels)):
        pgd = by["pgd", s]
        correct = net.logits64(images[s])[0].argmax() == labels[s]
        n_attacked += pgd.status == Status.FALSIFIED and correct
        for m in BOUND_METHODS:
            o = by[m, s]
            n_verified += o.status == Status.VERIFIED
            assert not (pgd.status == Status.FALSIFIED and o.status == Status.VERIFIED), (m, s)
            # the margins at the PGD point are values on the set: never below a sound lower bound
            keep = ~np.isnan(o.margin_lower)
            assert np.all(pgd.margin_upper[keep] >= o.margin_lower[keep]), (m, s)
    # both sides of the comparison are populated, so the test has something to compare
    assert n_verified > 0 and n_attacked > 0


def test_every_falsified_outcome_has_a_valid_counterexample(nor_mlp_b_outcomes):
    net, images, labels, pset, by = nor_mlp_b_outcomes
    n = 0
    for (m, s), o in by.items():
        if o.status == Status.FALSIFIED:
            n += 1
            _assert_counterexample(net, o.counterexample, images[s], int(labels[s]), pset)
            if m == "pgd":  # the reported margins are the float64 margins at the point
                logits = net.logits64(o.counterexample)[0]
                marg = logits[labels[s]] - logits
                keep = np.arange(10) != labels[s]
                np.testing.assert_array_equal(o.margin_upper[keep], marg[keep])
        else:
            assert o.counterexample is None
    assert n > 0


def test_misclassified_images_are_falsified_by_every_method(nor_mlp_b_outcomes):
    net, images, labels, pset, by = nor_mlp_b_outcomes
    wrong = np.flatnonzero(net.logits64(images).argmax(1) != labels)
    assert wrong.size > 0  # NOR-MLP-B errs on a few of the first 100 test images
    for s in wrong:
        for m in ("pgd",) + BOUND_METHODS:
            assert by[m, s].status == Status.FALSIFIED, (m, s)


@pytest.mark.parametrize("norm, eps", [("l2", 1.0), ("l1", 3.0), ("linf", 0.05)])
def test_pgd_points_stay_in_the_ball_and_the_box(norm, eps):
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds = load_mnist("test")
    net = load_model("NOR-MLP-B")
    x, y = torch.as_tensor(ds.images[:20]), torch.as_tensor(ds.labels[:20])
    pset = Perturbation(eps, norm)
    adv = pgd_attack(net, x, y, pset, PGDConfig(steps=30, restarts=2))
    assert adv.dtype == torch.float32 and adv.shape == x.shape
    d = (adv - x).reshape(len(y), -1).double()
    ord_ = {"linf": float("inf"), "l2": 2, "l1": 1}[norm]
    # float32 candidates: the ball up to float32 rounding; recheck makes it exact in float64
    assert float(torch.linalg.vector_norm(d, ord=ord_, dim=1).max()) <= eps * (1 + 1e-5)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    moved = torch.linalg.vector_norm(d, ord=ord_, dim=1) > 0.5 * eps
    assert bool(moved.any())  # the attack did use the budget
    with torch.no_grad():
        assert bool((margins(net.forward(adv), y) <= margins(net.forward(x), y)).all())
    for r in range(len(y)):
        pt, _, _ = recheck(net, adv[r].numpy(), ds.images[r], int(y[r]), pset)
        assert pset.contains(pt, ds.images[r]), (norm, r, np.linalg.norm((pt - ds.images[r]).ravel(), ord_) - eps)


@pytest.mark.parametrize("pset", [Perturbation(1.0, "l2"), Perturbation(1.0, "l2", None),
                                  Perturbation(10.0, "l1", None)], ids=str)
def test_verify_pgd_keeps_every_float64_counterexample_it_found(pset):
    """Under l2 / l1 every PGD candidate that is misclassified in float64 after the float64
    projection is reported, with a counterexample inside the set (an l2 projection can land an
    ulp outside the ball, which must not cost the counterexample)."""
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds = load_mnist("test")
    net = load_model("NOR-MLP-B")
    x, y = ds.images[:20], ds.labels[:20]
    cfg = {"steps": 30, "restarts": 2}
    outs = verify(net, x, y, pset, ["pgd"], options={"pgd": cfg})
    falsified = [o for o in outs if o.status == Status.FALSIFIED]
    for o in falsified:
        _assert_counterexample(net, o.counterexample, x[o.sample], o.label, pset)
    # the same attack by hand: every candidate whose float64 projection is misclassified
    cand = pgd_attack(net, torch.as_tensor(x), torch.as_tensor(y), pset, PGDConfig(**cfg)).numpy()
    ord_ = {"l2": 2, "l1": 1}[pset.norm]
    found = set()
    for r in range(len(y)):
        pt = pset.project(torch.as_tensor(cand[r], dtype=torch.float64)[None],
                          torch.as_tensor(x[r], dtype=torch.float64)[None])[0].numpy()
        d = (pt - x[r]).ravel()
        if np.linalg.norm(d, ord_) > pset.eps:  # an ulp outside: the same point pulled in
            pt = x[r] + (pt - x[r]) * (1 - 1e-9)
        logits = net.logits64(pt)[0]
        if np.delete(logits, y[r]).max() > logits[y[r]]:
            found.add(r)
    assert len(found) > 2
    assert {o.sample for o in falsified} == found


# --------------------------------------------------------------------------------------------
# recheck


def test_recheck_rejects_a_misclassified_point_outside_the_set():
    net, x, pset = _linear_classifier(0, "linf", ratio=1.5)  # robust on the set
    w = net.layers[0].weight.astype(np.float64)
    far = x - 5 * pset.eps * np.sign(w[0] - w[1])  # far outside the ball, misclassified there
    assert net.logits64(far)[0].argmax() == 1
    pt, marg, ok = recheck(net, far, x, 0, pset)
    assert not ok
    assert pset.contains(pt, x)
    assert np.nanmin(marg) > 0 and np.isnan(marg[0])


def test_recheck_rejects_a_point_outside_the_box_but_inside_the_ball():
    # f_0 - f_1 = x + 0.05 on one input; at x = 0 the ball [-0.1, 0.1] meets the box in [0, 0.1]
    net = Network((Dense(np.array([[1.0], [0.0]], np.float32), np.array([0.05, 0.0], np.float32)),), (1,))
    x = np.zeros(1, np.float32)
    cand = np.array([-0.1])
    boxed, free = Perturbation(0.1), Perturbation(0.1, box=None)
    pt, marg, ok = recheck(net, cand, x, 0, boxed)
    assert not ok and boxed.contains(pt, x) and marg[1] == pytest.approx(0.05)
    pt, marg, ok = recheck(net, cand, x, 0, free)
    assert ok and free.contains(pt, x) and marg[1] < 0


def test_recheck_accepts_a_genuine_counterexample_at_a_float32_rounded_vertex():
    """A float32 candidate x + eps (rounded up past the ball in float64) is pulled back into
    the set exactly and still counts."""
    net, x, pset = _linear_classifier(3, "linf", ratio=0.5)
    w = net.layers[0].weight.astype(np.float64)
    cand = (x - np.float32(pset.eps) * np.sign(w[0] - w[1]).astype(np.float32)).astype(np.float32)
    pt, marg, ok = recheck(net, cand, x, 0, pset)
    assert ok and pset.contains(pt, x)
    assert np.abs(pt - x.astype(np.float64)).max() <= pset.eps


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("box", [(0.0, 1.0), None])
@pytest.mark.parametrize("seed", range(5))
def test_recheck_accepts_a_counterexample_on_the_sphere(norm, seed, box):
    """The extreme point x - eps d* of an l2 / l1 ball is a genuine counterexample of the
    ratio-0.5 classifier; a candidate there (or slightly beyond) must be accepted."""
    net, x, pset = _linear_classifier(seed, norm, ratio=0.5, box=box)
    diff = (net.layers[0].weight[0] - net.layers[0].weight[1]).astype(np.float64)
    if norm == "l2":
        d = diff / np.linalg.norm(diff)
    else:
        d = np.zeros_like(diff)
        k = np.abs(diff).argmax()
        d[k] = np.sign(diff[k])
    ok_all = []
    for scale in (1.0, 1.001, 1.1):
        cand = x.astype(np.float64) - scale * pset.eps * d
        pt, marg, ok = recheck(net, cand, x, 0, pset)
        assert pset.contains(pt, x) or not ok
        ok_all.append(ok)
    assert all(ok_all), ok_all


# --------------------------------------------------------------------------------------------
# reproducibility: a sample's random starts are its own


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_random_starts_depend_only_on_the_sample(norm):
    from lpbench.attacks.pgd import _random_delta
    x = torch.zeros(3, 1, 4, 4)
    pset = Perturbation(EPS[norm], norm)
    seeds = [(0, 5, 1), (0, 7, 1), (0, 5, 2)]
    d = _random_delta(x, pset, seeds)
    again = _random_delta(x[:2], pset, [seeds[1], seeds[0]])  # another batch, another order
    assert torch.equal(again[0], d[1]) and torch.equal(again[1], d[0])
    assert not torch.equal(d[0], d[2])  # another restart, another start
    size = d.reshape(3, -1).norm(p={"linf": float("inf"), "l2": 2, "l1": 1}[norm], dim=1)
    assert (size <= EPS[norm] * (1 + 1e-6)).all() and (size > 0).all()


def test_pgd_attacks_each_image_alike_whatever_the_batching(nor_mlp_b_outcomes):
    # the same 100 images in one batch and, shuffled, in batches of 7: the same verdicts and points
    net, images, labels, pset, by = nor_mlp_b_outcomes
    perm = np.random.default_rng(3).permutation(100)
    outs = verify(net, images[perm], labels[perm], pset, ["pgd"], ids=perm, batch_size=7,
                  options={"pgd": {"steps": 50, "restarts": 3}})
    found = 0
    for o in outs:
        ref = by[("pgd", o.sample)]
        assert o.status is ref.status
        if o.status is Status.FALSIFIED:
            found += 1
            np.testing.assert_array_equal(o.counterexample, ref.counterexample)
    assert found >= 5

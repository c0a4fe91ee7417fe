"""Certificates outside bound propagation (Singla & Feizi 2019; Op-norm, Fast-Lip, LMT, BCP).

* Activation region: C, d and the rows of P against autograd Jacobians; sampled points of the
  region keep the pattern and the affine map.
* Soundness against exact answers on tiny random ReLU networks: every certified radius <= the
  exact minimum distortion -- MILP for l_inf (Tjeng et al.), brute force over activation patterns
  (one QP / LP per pattern, scipy, inside the [0, 1] box) for l_2 and l_1 -- and no sampled point
  inside a certified ball changes class. The simplex certificate, when marked exact, equals the
  distance of a point on the decision boundary (re-checked by a forward pass), the MILP distance
  (l_inf) and the in-region LP / QP distance; its "tighter variant" equals the closed form.
* Theory orderings: LMT <= Op-norm (l_2); BCP margins >= Op-norm margins; Op-norm <= Fast-Lip
  (l_inf); BCP's intersection >= its hull; the ball-box dual <= the thesis's primal solver.
* Zoo: radii on Table 2 images below PGD's adversarial distances; MILP never falsifies at the
  largest certified l_inf radius.
* Registry and bad input: verify() verdicts follow the radius; non-ReLU, deeper networks and
  unsupported norms are clear errors (CLI exit 2).
"""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

import lpbench  # noqa: F401  (registers every method)
from helpers import random_relu_net
from lpbench.activations import Activation, parse_activation
from lpbench.attacks.pgd import PGDConfig, attack
from lpbench.certificates import RADIUS, activation_region, certified_radius, region_distance, simplex_certificate
from lpbench.certificates.bcp import ball_box_min, ball_box_primal, bcp_margins
from lpbench.certificates.boundary import decision_boundary_certificate
from lpbench.certificates.chain import affine_chain, forward_with_error
from lpbench.certificates.fastlip import jacobian_interval, lipschitz_intervals
from lpbench.certificates.lipschitz import op_norm_constants, power_iteration
from lpbench.certificates.methods import NORMS, safe_margins
from lpbench.errors import LpbenchError
from lpbench.methods import verify
from lpbench.milp import min_distortion
from lpbench.network import Act, Conv2d, Dense, Network
from lpbench.problem import Perturbation, Status
from lpbench.solvers import get_backend

RELU = Act(parse_activation("relu"))
ORD = {"linf": np.inf, "l2": 2, "l1": 1}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(seed: int, depth: int | None = None, n_in: int | None = None) -> Network:
    rng = np.random.default_rng(seed)
    n_in = n_in or int(rng.integers(2, 5))
    depth = depth or int(rng.integers(1, 3))
    widths = [n_in] + [int(rng.integers(2, 4)) for _ in range(depth)] + [3]
    return random_relu_net(rng, widths, f"tiny{seed}")


def _sample(net: Network, seed: int) -> tuple[np.ndarray, int]:
    x = np.random.default_rng(seed + 100).uniform(0.3, 0.7, net.input_shape[0])
    return x, int(np.argmax(net.logits64(x[None])[0]))


def _patterns(net: Network):
    """(A, c, Cmap, dmap) per activation pattern: the closed region {A x >= c} and its map."""
    dense = [layer for layer in net.layers if isinstance(layer, Dense)]
    hidden = [d.weight.shape[0] for d in dense[:-1]]
    for pattern in itertools.product((0.0, 1.0), repeat=sum(hidden)):
        a_map, b_map, rows, rhs, k = np.eye(net.input_shape[0]), np.zeros(net.input_shape[0]), [], [], 0
        for d, width in zip(dense[:-1], hidden):
            za, zb = d.weight.astype(np.float64) @ a_map, d.weight.astype(np.float64) @ b_map + d.bias
            act = np.array(pattern[k:k + width])
            k += width
            s = np.where(act > 0, 1.0, -1.0)
            rows.append(s[:, None] * za)
            rhs.append(-s * zb)
            a_map, b_map = act[:, None] * za, act * zb
        w, b = dense[-1].weight.astype(np.float64), dense[-1].bias.astype(np.float64)
        yield (np.vstack(rows) if rows else np.zeros((0, a_map.shape[1])),
               np.concatenate(rhs) if rhs else np.zeros(0), w @ a_map, w @ b_map + b)


def _brute_force_distance(net: Network, x: np.ndarray, label: int, norm: str) -> float:
    """min ||x' - x|| over x' in [0,1]^n where some class beats ``label`` by 1e-7, by enumerating
    activation patterns: an LP per (pattern, class) for l1, SLSQP for l2; each optimum re-checked
    by the forward pass, so the result is the distance of a genuine adversarial point."""
    n = x.size
    best = math.inf
    for A, c, C, d in _patterns(net):
        for t in range(net.n_classes):
            if t == label:
                continue
            g = C[t] - C[label]  # g.x' + (d_t - d_label) >= 1e-7
            A_all = np.vstack([A, g[None]])
            c_all = np.concatenate([c, [d[label] - d[t] + 1e-7]])
            if norm == "l1":  # vars (x', s)
                obj = np.concatenate([np.zeros(n), np.ones(n)])
                A_ub = np.vstack([np.hstack([-A_all, np.zeros((len(c_all), n))]),
                                  np.hstack([np.eye(n), -np.eye(n)]), np.hstack([-np.eye(n), -np.eye(n)])])
                b_ub = np.concatenate([-c_all, x, -x])
                res = linprog(obj, A_ub=A_ub, b_ub=b_ub, bounds=[(0, 1)] * n + [(0, None)] * n, method="highs")
                pt = res.x[:n] if res.status == 0 else None
            else:
                res = minimize(lambda v: ((v - x) ** 2).sum(), x, jac=lambda v: 2 * (v - x), method="SLSQP",
                               bounds=[(0, 1)] * n,
                               constraints=[{"type": "ineq", "fun": lambda v: A_all @ v - c_all,
                                             "jac": lambda v: A_all}], options={"ftol": 1e-14, "maxiter": 500})
                pt = res.x if res.success and np.all(A_all @ res.x - c_all >= -1e-9) else None
            if pt is None:
                continue
            logits = net.logits64(pt[None])[0]
            if np.delete(logits, label).max() > logits[label]:
                best = min(best, float(np.linalg.norm(pt - x, ORD[norm])))
    return best


def _radii(net, x, label, norm):
    out = {}
    for name, fn in RADIUS.items():
        if norm not in NORMS[name] or (name == "decision-boundary" and len(affine_chain(net, name)) != 2):
            continue
        out[name] = fn(net, x, label, norm)
    return out


# -- activation region ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_region_matches_autograd_and_samples(seed):
    net = _net(seed, depth=2 + seed % 2, n_in=5)
    x, _ = _sample(net, seed)
    reg = activation_region(net, x)
    xt = torch.as_tensor(x)
    jac = torch.func.jacrev(lambda v: net.forward(v[None])[0])(xt).numpy()
    np.testing.assert_allclose(reg.C, jac, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(reg.C @ x + reg.d, net.logits64(x[None])[0], rtol=1e-10, atol=1e-12)
    acts = list(net.activation_indices)
    for row, (k, j) in enumerate(zip(reg.layer, reg.neuron)):
        z = lambda v, k=k, j=j: net.forward(v[None], upto=acts[k])[0, j]  # noqa: E731
        grad = torch.func.grad(z)(xt).numpy()
        s = 1.0 if float(z(xt)) > 0 else -1.0
        np.testing.assert_allclose(reg.P[row], s * grad, rtol=1e-10, atol=1e-12)
        assert reg.P[row] @ x + reg.q[row] == pytest.approx(abs(float(z(xt))), rel=1e-9, abs=1e-12)
    assert np.all(np.abs(reg.P).sum(1) > 0)
    assert reg.P.shape[0] + reg.dropped == sum(p.size for p in reg.pattern)
    rng = np.random.default_rng(seed)
    inside = 0
    for v in x + rng.uniform(-0.05, 0.05, (300, x.size)):
        if reg.contains(v, tol=-1e-12):
            inside += 1
            np.testing.assert_allclose(net.logits64(v[None])[0], reg.C @ v + reg.d, rtol=1e-9, atol=1e-10)
    assert inside > 0


def test_region_drops_dead_rows():
    w1 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    net = Network((Dense(w1, np.array([-5.0, 0.1], np.float32)), RELU,
                   Dense(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([0.0, 0.1], np.float32)), RELU,
                   Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32))), (2,))
    reg = activation_region(net, np.array([0.5, 0.5]))
    # neuron 0 of layer 1 is dead, so neuron 0 of layer 2 sees only its bias: a zero row, dropped
    assert reg.dropped == 1 and reg.P.shape == (3, 2)


@pytest.mark.parametrize("seed", range(4))
def test_forward_error_bound_covers_extended_precision(seed):
    """The running rounding-error bound behind every margin: the float64 logits are within it of
    a long-double (64-bit mantissa) evaluation of the same network."""
    rng = np.random.default_rng(seed)
    widths = [30, 50, 50, 50, 10]
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense((rng.normal(size=(b, a)) * 3).astype(np.float32), rng.normal(size=b).astype(np.float32)))
        if i < len(widths) - 2:
            layers.append(RELU)
    net = Network(tuple(layers), (30,))
    x = rng.uniform(0, 1, 30)
    logits, err = forward_with_error(affine_chain(net, "test"), x)
    a = x.astype(np.longdouble)
    for i, layer in enumerate(affine_chain(net, "test")):
        a = layer.weight.astype(np.longdouble) @ a + layer.bias.astype(np.longdouble)
        a = np.maximum(a, 0) if i < 3 else a
    assert np.all(np.abs(logits.astype(np.longdouble) - a) <= err)
    assert np.all(err < 1e-9 * (1 + np.abs(logits)))


# -- soundness against exact answers --------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_linf_radii_below_milp_distortion(seed):
    net = _net(seed)
    x, label = _sample(net, seed)
    d = min_distortion(net, x, label, get_backend("highs"), eps_max=1.0, time_limit=30)
    assert d.exact and math.isfinite(d.upper)
    radii = _radii(net, x, label, "linf")
    for name, r in radii.items():
        assert r <= d.upper, (name, r, d.upper)
    s = simplex_certificate(net, x, "linf")
    if s.exact and np.all((s.boundary_point >= 0) & (s.boundary_point <= 1)):
        assert s.radius == pytest.approx(d.upper, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("seed", range(5))
def test_l2_l1_radii_below_brute_force_distortion(seed, norm):
    net = _net(seed)
    x, label = _sample(net, seed)
    exact = _brute_force_distance(net, x, label, norm)
    assert math.isfinite(exact)
    for name, r in _radii(net, x, label, norm).items():
        assert r <= exact * (1 + 1e-6), (name, r, exact)
    s = simplex_certificate(net, x, norm)
    if s.exact and np.all((s.boundary_point >= 0) & (s.boundary_point <= 1)):
        assert s.radius == pytest.approx(exact, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
@pytest.mark.parametrize("seed", range(5))
def test_no_sampled_point_in_a_certified_ball_changes_class(seed, norm):
    net = _net(seed, n_in=3)
    x, label = _sample(net, seed)
    rng = np.random.default_rng(seed)
    for name, r in _radii(net, x, label, norm).items():
        if r == 0:
            continue
        dirs = rng.normal(size=(2000, x.size)) if norm != "linf" else rng.uniform(-1, 1, (2000, x.size))
        dirs /= np.linalg.norm(dirs, ORD[norm], axis=1, keepdims=True)
        pts = x + dirs * (r * (1 - 1e-9)) * rng.uniform(0.5, 1.0, (2000, 1)) ** 0.1
        if name in ("fast-lip", "bcp"):  # certified within the [0, 1] box
            pts = np.clip(pts, 0, 1)
        assert np.all(net.logits64(pts).argmax(1) == label), name


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
@pytest.mark.parametrize("seed", range(10))
def test_simplex_exact_means_a_boundary_point_at_that_distance(seed, norm):
    net = _net(seed, n_in=4)
    x, label = _sample(net, seed)
    s = simplex_certificate(net, x, norm)
    assert s.radius == min(s.d_min, s.p_min) and s.exact == (s.d_min <= s.p_min)
    # the "tighter" in-region variant equals the closed form
    tight = min([s.p_min] + [region_distance(s.region, x, t, norm) for t in range(3) if t != label])
    assert tight == pytest.approx(s.radius, rel=1e-6, abs=1e-9)
    if s.exact:
        bp = s.boundary_point
        logits = net.logits64(bp[None])[0]
        assert logits[label] - logits[s.target] == pytest.approx(0.0, abs=1e-9)
        assert np.linalg.norm(bp - x, ORD[norm]) == pytest.approx(s.radius, rel=1e-7)
        beyond = net.logits64((x + (bp - x) * (1 + 1e-6))[None])[0]
        assert beyond.argmax() != label  # just past it the class changes: the radius is the distance
        assert region_distance(s.region, x, s.target, norm) == pytest.approx(s.radius, rel=1e-6, abs=1e-9)


def test_hand_computed_linear_classifier():
    """No hidden layer: f = W x + b; every certificate is the exact distance to the hyperplane."""
    net = Network((Dense(np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32), np.array([0.0, 0.0], np.float32)),),
                  (2,))
    x = np.array([1.0, 1.0])  # f = (3, -0.5), margin 3.5, gradient (2, 1.5)
    expect = {"l2": 3.5 / 2.5, "linf": 3.5 / 3.5, "l1": 3.5 / 2.0}
    for norm, r in expect.items():
        assert simplex_certificate(net, x, norm).radius == pytest.approx(r, rel=1e-8)
        assert certified_radius("op-norm", net, x, 0, norm, None) == pytest.approx(r, rel=1e-8)
        assert simplex_certificate(net, x, norm).exact and simplex_certificate(net, x, norm).p_min == math.inf
    assert certified_radius("lmt", net, x, 0, "l2") <= expect["l2"]


@pytest.mark.parametrize("seed", range(6))
def test_decision_boundary_sound_on_one_hidden_layer(seed):
    net = _net(seed, depth=1, n_in=3)
    x, label = _sample(net, seed)
    for norm in ("l2", "linf", "l1"):
        r = decision_boundary_certificate(net, x, norm).radius
        exact = _brute_force_distance(net, x, label, norm) if norm != "linf" else \
            min_distortion(net, x, label, get_backend("highs"), 1.0, 30).upper
        assert r <= exact * (1 + 1e-6)


# -- theory orderings -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_lipschitz_orderings(seed):
    net = _net(seed, depth=2, n_in=4)
    x, label = _sample(net, seed)
    assert certified_radius("lmt", net, x, label, "l2") <= certified_radius("op-norm", net, x, label, "l2")
    assert certified_radius("op-norm", net, x, label, "linf") <= certified_radius("fast-lip", net, x, label, "linf")
    chain = affine_chain(net, "bcp")
    for eps in (0.01, 0.1, 0.5):
        bcp = bcp_margins(chain, x, label, eps, "l2", None)
        hull = bcp_margins(chain, x, label, eps, "l2", None, combine="hull")
        opn = safe_margins(net, x, label) - eps * op_norm_constants(net, label, "l2")
        others = np.arange(3) != label
        assert np.all(bcp[others] >= opn[others] - 1e-9)
        assert np.all(bcp[others] >= hull[others] - 1e-12)
        # sampled points of the ball: their margins are above the bound
        rng = np.random.default_rng(seed)
        d = rng.normal(size=(500, x.size))
        pts = x + eps * d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 1, (500, 1))
        lg = net.logits64(pts)
        assert np.all(lg[:, [label]] - lg >= bcp[None, :] - 1e-9, where=others[None, :])
    # Fast-Lip's local constants never exceed Op-norm's global ones (l_inf, l_1)
    for norm in ("linf", "l1"):
        loc = lipschitz_intervals(net, x[None], np.array([label]), Perturbation(0.3, norm, None))[0]
        assert np.all(loc <= op_norm_constants(net, label, norm) * (1 + 1e-9))


@pytest.mark.parametrize("seed", range(20))
def test_ball_box_dual_below_primal(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    z = rng.uniform(-1, 1, n)
    lo, hi = z - rng.uniform(0, 1, n), z + rng.uniform(0, 1, n)
    rho = float(rng.uniform(0.1, 2.0))
    c = rng.normal(size=(3, n))
    dual = ball_box_min(c, z, rho, lo, hi)
    for t in range(3):
        p = ball_box_primal(c[t], z, rho, lo, hi)
        assert np.linalg.norm(p - z) <= rho * (1 + 1e-9) and np.all((p >= lo) & (p <= hi))
        assert dual[t] <= c[t] @ p + 1e-12
        assert dual[t] == pytest.approx(c[t] @ p, rel=1e-6, abs=1e-8)
        d = rng.normal(size=(200, n))
        pts = np.clip(z + rho * d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 1, (200, 1)), lo, hi)
        assert np.all(pts @ c[t] >= dual[t] - 1e-12)


def test_power_iteration_approaches_the_spectral_norm_from_below():
    rng = np.random.default_rng(0)
    conv = Conv2d(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), np.zeros(4, np.float32), 2, 1)
    net = Network((conv, RELU, *Network.from_torch(torch.nn.Sequential(torch.nn.Flatten()), (4, 4, 4)).layers,
                   Dense(rng.normal(size=(3, 64)).astype(np.float32), np.zeros(3, np.float32))), (2, 8, 8))
    for layer in affine_chain(net, "op-norm"):
        est = power_iteration(layer, iters=2000)
        assert est <= layer.spectral and est >= 0.999 * layer.spectral


# -- zoo ------------------------------------------------------------------------------------------
def _pgd_distance(net, x, label, norm, hi):
    """The smallest radius (bisection) at which PGD finds a re-checked adversarial point."""
    cfg = PGDConfig(steps=40, restarts=2)
    lo, best = 0.0, math.inf
    for _ in range(8):
        pt, _, ok = attack(net, x[None], np.array([label]), Perturbation(hi, norm), cfg)[0]
        if ok:
            best = min(best, float(np.linalg.norm((pt - x).ravel(), ORD[norm])))
            hi = (lo + hi) / 2
        else:
            lo, hi = hi, hi * 2 if not math.isfinite(best) else (hi + best) / 2
    return best


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fast_lip_interval_holds_every_sampled_jacobian(norm, shared_mirror):
    """LPD-MLP-2-100 (where Fast-Lip's l_2 radius beats CROWN's): autograd Jacobians of the
    margins at points of the ball of the certified radius lie in the interval Jacobian."""
    from lpbench.zoo import load_model, ten_test_images
    net = load_model("LPD-MLP-2-100")
    images, labels, _ = ten_test_images()
    x, label = images[1].astype(np.float64), int(labels[1])
    r = certified_radius("fast-lip", net, x, label, norm)
    assert r > 0
    (mid, rad), = jacobian_interval(net, x[None], np.array([label]), Perturbation(r, norm))
    rng = np.random.default_rng(0)
    d = rng.normal(size=(64, x.size)) if norm == "l2" else rng.choice([-1.0, 1.0], size=(64, x.size))
    d /= np.linalg.norm(d, ORD[norm], axis=1, keepdims=True)
    pts = np.clip(x.ravel() + r * d * rng.uniform(0.5, 1, (64, 1)), 0, 1).reshape(-1, *x.shape)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: net.forward(v[None])[0]))(torch.as_tensor(pts)).numpy()
    jac = jac.reshape(len(pts), net.n_classes, -1)
    margin_jac = jac[:, label][:, None, :] - jac
    assert np.all(np.abs(margin_jac - mid[None]) <= rad[None] + 1e-12)


@pytest.mark.parametrize("model", ["NOR-MLP-2-100", pytest.param("ADV-MLP-A-0.1", marks=pytest.mark.slow)])
def test_zoo_radii_below_pgd_distances(model, shared_mirror):
    from lpbench.zoo import load_model, ten_test_images
    net = load_model(model)
    images, labels, _ = ten_test_images()
    for i in range(2):
        if net.logits64(images[i:i + 1].astype(np.float64))[0].argmax() != labels[i]:
            continue
        for norm, start in (("linf", 0.05), ("l2", 1.0)):
            adv = _pgd_distance(net, images[i], int(labels[i]), norm, start)
            assert math.isfinite(adv)
            for name, r in _radii(net, images[i], int(labels[i]), norm).items():
                assert r <= adv, (model, i, norm, name, r, adv)


def test_zoo_milp_never_falsifies_inside_certified_radius(shared_mirror):
    from lpbench.zoo import load_model, ten_test_images
    net = load_model("NOR-MLP-2-100")
    images, labels, _ = ten_test_images()
    for i in range(4):
        r = max(_radii(net, images[i], int(labels[i]), "linf").values())
        outs = verify(net, images[i:i + 1], labels[i:i + 1], Perturbation(r), ["milp"],
                      options={"milp": {"time_limit": 60}})
        assert outs[0].status is Status.VERIFIED, (i, r, outs[0].status)


# -- registry and bad input -----------------------------------------------------------------------
def test_registered_verifiers_follow_the_radius():
    net = _net(3, depth=2, n_in=4)
    rng = np.random.default_rng(0)
    xs = rng.uniform(0.3, 0.7, (6, 4))
    pred = net.logits64(xs).argmax(1)
    labels = pred.copy()
    labels[0] = (pred[0] + 1) % 3  # misclassified: falsified by every method
    for name in ("simplex", "op-norm", "lmt", "fast-lip", "bcp"):
        for i in range(1, 6):
            r = certified_radius(name, net, xs[i], int(labels[i]), "l2")
            if r == 0:
                continue
            below = verify(net, xs[i:i + 1], labels[i:i + 1], Perturbation(r * 0.99, "l2"), [name])[0]
            above = verify(net, xs[i:i + 1], labels[i:i + 1], Perturbation(r * 1.01, "l2"), [name])[0]
            assert below.status is Status.VERIFIED, (name, i)
            assert above.status is Status.UNKNOWN or name in ("fast-lip", "bcp"), (name, i)
        out = verify(net, xs[:1], labels[:1], Perturbation(0.01, "l2"), [name])[0]
        assert out.status is Status.FALSIFIED and out.counterexample is not None
    outs = verify(net, xs, labels, Perturbation(0.01, "l2"), ["op-norm", "simplex"])
    assert all(np.isnan(o.margin_lower).all() for o in outs if o.method == "simplex")
    assert all(np.isfinite(np.delete(o.margin_lower, o.label)).all() for o in outs if o.method == "op-norm")


def test_bad_input_is_a_clear_error():
    net = _net(0, depth=2)
    x, label = _sample(net, 0)
    tanh = Network((net.layers[0], Act(Activation("tanh")), *net.layers[2:]), net.input_shape, "tanhnet")
    with pytest.raises(LpbenchError, match="simplex needs relu.*tanh"):
        simplex_certificate(tanh, x)
    with pytest.raises(LpbenchError, match="simplex needs relu"):
        certified_radius("simplex", tanh, x, label, "l2")
    with pytest.raises(LpbenchError, match="one hidden layer"):
        decision_boundary_certificate(net, x)
    with pytest.raises(LpbenchError, match="lmt does not support the linf norm"):
        certified_radius("lmt", net, x, label, "linf")
    with pytest.raises(LpbenchError, match="lmt handles l2 perturbations only, not l1"):
        verify(net, x[None], [label], Perturbation(0.1, "l1"), ["lmt"])
    with pytest.raises(LpbenchError, match="simplex does not support activation tanh"):
        verify(tanh, x[None], [label], Perturbation(0.1, "l2"), ["simplex"])
    with pytest.raises(LpbenchError, match="unknown certificate"):
        certified_radius("magic", net, x, label, "l2")


@pytest.mark.parametrize("args,msg", [
    (["verify", "NOR-MLP-B", "--eps", "0.1", "--norm", "linf", "--methods", "lmt", "--samples", "2"],
     "lmt handles l2 perturbations only, not linf"),
    (["verify", "NOR-MLP-B", "--eps", "0.1", "--methods", "decision-boundary", "--samples", "2"],
     "one hidden layer"),
])
def test_cli_bad_input(monkeypatch, capsys, args, msg, shared_mirror):
    from lpbench.cli import main
    monkeypatch.setattr(sys, "argv", ["lpbench", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    assert e.value.code == 2 and msg in err and "Traceback" not in out + err

"""Soundness and exactness of the bound engine (lpbench.bounds, lpbench.methods).

* Sampled soundness: for every bound method, points of the perturbation set (uniform, vertices,
  gradient-directed extreme points and the PGD point) evaluated in float64 lie inside the
  specification bounds, and every intermediate pre-activation lies inside ``Bounds.pre``.
* Hand-computable cases: a two-neuron network worked out on paper, and purely linear networks
  whose bounds have a closed form under l_inf, l_2 and l_1.
* Orderings that theory guarantees (and only those): exact first-layer bounds, IBP versus the
  zero-slope backward pass on IBP intermediates, every backward bound below the triangle-LP
  optimum with the same intermediate bounds, LP-GREEDY = Fast-Lin, and LP-GREEDY against an
  independent float64 implementation of the Wong & Kolter 2018 dual (Algorithm 1).
* Floating-point slack: at eps = 0 the bounds are finite and bracket the exact value.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from lpbench.activations import parse_activation
from lpbench.attacks.pgd import PGDConfig, pgd_attack, recheck
from lpbench.bounds.propagate import interval_bounds, linear_bounds
from lpbench.bounds.relaxations import RELU_POLICIES, activation_lines
from lpbench.methods import margin_spec, verify
from lpbench.network import Act, Dense, Flatten, Network
from lpbench.problem import Perturbation, Status

RELU = Act(parse_activation("relu"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")
INTERMEDIATE = ("backward", "interval")

# every bound computation: IBP and the backward engine with each policy and intermediate mode
BOUND_FNS = {"ibp": interval_bounds}
for _p in RELU_POLICIES:
    for _m in INTERMEDIATE:
        BOUND_FNS[f"{_p}/{_m}"] = functools.partial(linear_bounds, policy=_p, intermediate=_m)
LINEAR_FNS = [k for k in BOUND_FNS if k != "ibp"]
REGISTRY_METHODS = ("ibp", "fast-lin", "crown", "lp-greedy")


# --------------------------------------------------------------------------------------------
# networks and problems


def _mlp(seed: int, widths: list[int], bias_scale: float = 0.5, name: str = "") -> Network:
    """Random ReLU MLP on inputs of shape (widths[0],); weights ~ N(0, 1/fan_in)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = rng.normal(size=(b, a)) / np.sqrt(a)
        layers.append(Dense(w.astype(np.float32), (bias_scale * rng.normal(size=b)).astype(np.float32)))
        if i < len(widths) - 2:
            layers.append(RELU)
    return Network(tuple(layers), (widths[0],), name or f"mlp{seed}")


def _tiny_cnn(seed: int = 0) -> Network:
    """conv k=3 s=1 p=1, conv k=4 s=2 p=1 (odd 7x7 input: the transposed conv needs output
    padding 1), flatten, dense, dense."""
    torch.manual_seed(seed)
    seq = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, stride=1, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(3, 4, 4, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(36, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return Network.from_torch(seq, (2, 7, 7), name="tiny-cnn")


def _inputs(seed: int, shape: tuple[int, ...], n: int) -> np.ndarray:
    """Points of [0, 1]^shape with about a fifth of the coordinates on each face of the box,
    so that the box constraint of the perturbation set is active."""
    rng = np.random.default_rng(1000 + seed)
    x = rng.uniform(0, 1, size=(n, *shape))
    face = rng.uniform(size=x.shape)
    x[face < 0.2] = 0.0
    x[face > 0.8] = 1.0
    return x.astype(np.float32).astype(np.float64)


class Case:
    """A network, a few inputs, their labels (the prediction at x) and per-norm radii."""

    def __init__(self, net: Network, x: np.ndarray, y: np.ndarray, eps: dict[str, float]):
        self.net, self.x, self.y, self.eps = net, x, y, eps

    def pset(self, key: str) -> Perturbation:
        norm, box = key.split("-")
        return Perturbation(self.eps[norm], norm, (0.0, 1.0) if box == "box" else None)


def _tiny_case(net: Network, seed: int, eps: dict[str, float]) -> Case:
    x = _inputs(seed, net.input_shape, 2)
    y = net.logits64(x).argmax(1)
    return Case(net, x, y, eps)


def _zoo_case(name: str, n: int, eps: dict[str, float]) -> Case:
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds = load_mnist("test")
    return Case(load_model(name), ds.images[:n].astype(np.float64), ds.labels[:n].astype(np.int64), eps)


TINY_EPS = {"linf": 0.15, "l2": 0.4, "l1": 0.6}
CASE_BUILDERS = {
    "mlp-2x12": lambda: _tiny_case(_mlp(0, [4, 12, 8, 3]), 0, TINY_EPS),
    "mlp-3x20": lambda: _tiny_case(_mlp(1, [3, 20, 15, 10, 4]), 1, TINY_EPS),
    "mlp-3x3": lambda: _tiny_case(_mlp(3, [5, 3, 3, 3, 2]), 2, TINY_EPS),
    "tiny-cnn": lambda: _tiny_case(_tiny_cnn(0), 3, {"linf": 0.1, "l2": 0.5, "l1": 1.0}),
    "NOR-MLP-B": lambda: _zoo_case("NOR-MLP-B", 3, {"linf": 0.02, "l2": 0.3, "l1": 1.0}),
    "NOR-CNN-SMALL": lambda: _zoo_case("NOR-CNN-SMALL", 1, {"linf": 0.01}),
}
TINY = ["mlp-2x12", "mlp-3x20", "mlp-3x3", "tiny-cnn"]
MLPS = ["mlp-2x12", "mlp-3x20", "mlp-3x3"]
PSET_KEYS = ["linf-box", "linf-none", "l2-box", "l2-none", "l1-box", "l1-none"]


@functools.lru_cache(maxsize=None)
def _case(name: str) -> Case:
    return CASE_BUILDERS[name]()


def _get_case(request, name: str) -> Case:
    if name == "NOR-CNN-SMALL":  # weights come from the shared mirror; skip without it
        request.getfixturevalue("shared_mirror")
    return _case(name)


@functools.lru_cache(maxsize=None)
def _bounds(name: str, pkey: str, fn: str):
    """(lower, upper, pre) as numpy for the margin specification of every sample."""
    case = _case(name)
    x = torch.as_tensor(case.x)
    spec = margin_spec(torch.as_tensor(case.y), case.net.n_classes, torch.float64, "cpu")
    with torch.no_grad():
        b = BOUND_FNS[fn](case.net, x, case.pset(pkey), spec)
    pre = {i: (lo.numpy(), hi.numpy()) for i, (lo, hi) in b.pre.items()}
    return b.lower.numpy(), b.upper.numpy(), pre


# --------------------------------------------------------------------------------------------
# sampling the perturbation set


def _grads(net: Network, x: np.ndarray, upto: int | None, rows: np.ndarray) -> np.ndarray:
    """Gradients w.r.t. the input of ``rows @ net.forward(x, upto)``, one per row (k, n_in)."""
    k = rows.shape[0]
    xt = torch.tensor(x, dtype=torch.float64).unsqueeze(0).repeat(k, *[1] * x.ndim).requires_grad_(True)
    out = net.forward(xt, upto).reshape(k, -1)
    (g,) = torch.autograd.grad((out * torch.as_tensor(rows)).sum(), xt)
    return g.reshape(k, -1).numpy()


def _extreme_points(x: np.ndarray, g: np.ndarray, pset: Perturbation, lo: np.ndarray,
                    hi: np.ndarray, eps: float) -> np.ndarray:
    """For each direction g (rows), the point of the set maximising g.x' for a linear function
    (exactly for l_inf with box, and for the balls without box) and its minimiser."""
    if pset.norm == "linf":
        return np.concatenate([np.where(g > 0, hi, lo), np.where(g > 0, lo, hi)])
    if pset.norm == "l2":
        d = eps * g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
    else:
        d = np.zeros_like(g)
        j = np.abs(g).argmax(1)
        d[np.arange(len(g)), j] = eps * np.sign(g[np.arange(len(g)), j])
    return _clip(np.concatenate([x + d, x - d]), pset)


def _clip(pts: np.ndarray, pset: Perturbation) -> np.ndarray:
    # clipping towards a box that holds x moves every coordinate towards x: stays in the ball
    return pts if pset.box is None else np.clip(pts, *pset.box)


def _linf_box(xf: np.ndarray, pset: Perturbation) -> tuple[np.ndarray, np.ndarray]:
    """Largest float64 box [lo, hi] inside the l_inf ball (rounded inwards) and the input box."""
    lo, hi = xf - pset.eps, xf + pset.eps
    lo = np.where(xf - lo > pset.eps, np.nextafter(lo, xf), lo)
    hi = np.where(hi - xf > pset.eps, np.nextafter(hi, xf), hi)
    if pset.box is not None:
        lo, hi = np.maximum(lo, pset.box[0]), np.minimum(hi, pset.box[1])
    return lo, hi


def sample_set(net: Network, x: np.ndarray, y: int, pset: Perturbation, seed: int = 0,
               n_uniform: int = 150, n_vertices: int = 48, neurons: int = 16) -> np.ndarray:
    """Points of the perturbation set around ``x`` (flattened rows, float64), all checked with
    :meth:`Perturbation.contains`: x itself, uniform samples, random vertices (l_inf) or ball
    vertices (l_1), gradient-directed extreme points for every margin and for a random subset of
    the pre-activations of every activation layer, and the PGD point."""
    rng = np.random.default_rng(seed)
    xf = x.ravel()
    n = xf.size
    eps = pset.eps * (1 - 1e-9)  # stay clear of the boundary by rounding in the l_p norm
    lo, hi = _linf_box(xf, pset)
    pts = [xf[None]]
    if pset.norm == "linf":
        pts.append(lo + (hi - lo) * rng.uniform(size=(n_uniform, n)))
        pts.append(np.where(rng.uniform(size=(n_vertices, n)) < 0.5, lo, hi))
    elif pset.norm == "l2":
        d = rng.normal(size=(n_uniform, n))
        d *= eps * rng.uniform(size=(n_uniform, 1)) ** (1 / n) / np.linalg.norm(d, axis=1, keepdims=True)
        pts.append(_clip(xf + d, pset))
    else:
        e = rng.exponential(size=(n_uniform, n + 1))
        d = eps * (e[:, :n] / e.sum(1, keepdims=True)) * rng.choice([-1.0, 1.0], size=(n_uniform, n))
        pts.append(_clip(xf + d, pset))
        j = rng.integers(0, n, size=n_vertices)
        d = np.zeros((n_vertices, n))
        d[np.arange(n_vertices), j] = eps * rng.choice([-1.0, 1.0], size=n_vertices)
        pts.append(_clip(xf + d, pset))
    # directions: every margin row, then a few neurons of every activation layer's input
    c = net.n_classes
    spec = np.eye(c)[y][None] - np.delete(np.eye(c), y, axis=0)
    pts.append(_extreme_points(xf, _grads(net, x, None, spec), pset, lo, hi, eps))
    for i in net.activation_indices:
        m = math.prod(net.shapes[i])
        idx = rng.choice(m, size=min(neurons, m), replace=False)
        pts.append(_extreme_points(xf, _grads(net, x, i, np.eye(m)[idx]), pset, lo, hi, eps))
    cand = pgd_attack(net, torch.as_tensor(x, dtype=torch.float32)[None], torch.tensor([y]), pset,
                      PGDConfig(steps=30, restarts=2))
    pt, _, _ = recheck(net, cand[0].numpy(), x, y, pset)
    pt = pt.ravel()
    if not pset.contains(pt, xf):  # recheck's l2/l1 projection can overshoot by an ulp
        pt = xf + (pt - xf) * (1 - 1e-9)
    pts.append(pt[None])
    pts = np.concatenate(pts)
    assert all(pset.contains(p, xf) for p in pts), "test bug: a sample lies outside the set"
    return pts


@functools.lru_cache(maxsize=None)
def _truth(name: str, pkey: str):
    """Per sample: (margins f_y - f_j at every sampled point, {act index: pre-activations})."""
    case, pset = _case(name), _case(name).pset(pkey)
    out = []
    for b in range(len(case.y)):
        pts = sample_set(case.net, case.x[b], int(case.y[b]), pset, seed=b)
        logits = case.net.logits64(pts)
        marg = logits[:, [case.y[b]]] - logits
        xt = torch.as_tensor(pts).reshape(-1, *case.net.input_shape)
        with torch.no_grad():
            pre = {i: case.net.forward(xt, upto=i).reshape(len(pts), -1).numpy()
                   for i in case.net.activation_indices}
        out.append((marg, pre))
    return out


def _assert_within(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    """values (N, m) must lie in [lo, hi] (m,) with no tolerance: the slack is the engine's job."""
    below, above = lo[None] - values, values - hi[None]
    worst = max(below.max(), above.max())
    assert np.isfinite(lo).all() and np.isfinite(hi).all(), f"{what}: non-finite bounds"
    assert worst <= 0, (f"{what}: a sampled value lies outside its bounds by {worst:.3e} "
                        f"(below lower at {np.argwhere(below > 0)[:3].tolist()}, "
                        f"above upper at {np.argwhere(above > 0)[:3].tolist()})")


# --------------------------------------------------------------------------------------------
# 1. sampled soundness

SOUNDNESS_PARAMS = (
    [pytest.param(n, k, f, id=f"{n}-{k}-{f}") for n in TINY + ["NOR-MLP-B"] for k in PSET_KEYS
     for f in BOUND_FNS]
    + [pytest.param("NOR-CNN-SMALL", "linf-box", f, id=f"NOR-CNN-SMALL-linf-box-{f}") for f in BOUND_FNS])


@pytest.mark.parametrize("pkey", PSET_KEYS)
@pytest.mark.parametrize("name", TINY + ["NOR-MLP-B"])
def test_cases_exercise_the_relaxation(name, pkey):
    """Non-vacuity of the soundness cases: every network has unstable neurons (l < 0 < u) under
    every perturbation set, so the relaxations, not just the exact linear pieces, are tested."""
    for i, (lo, hi) in _bounds(name, pkey, "same-slope/backward")[2].items():
        assert np.any((lo < 0) & (hi > 0)), (name, pkey, i)


@pytest.mark.parametrize("name, pkey, fn", SOUNDNESS_PARAMS)
def test_sampled_points_lie_within_bounds(request, name, pkey, fn):
    case = _get_case(request, name)
    lower, upper, pre = _bounds(name, pkey, fn)
    assert set(pre) == set(case.net.activation_indices)
    for b, (marg, pre_true) in enumerate(_truth(name, pkey)):
        assert np.all(lower[b] <= upper[b])
        _assert_within(marg, lower[b], upper[b], f"{fn} margins, sample {b}")
        for i, vals in pre_true.items():
            _assert_within(vals, pre[i][0][b].ravel(), pre[i][1][b].ravel(),
                           f"{fn} pre-activation of layer {i}, sample {b}")


@pytest.mark.parametrize("name", TINY + ["NOR-MLP-B"])
def test_registry_outcomes_bracket_sampled_margins(name):
    """The registered methods' Outcome.margin_lower/upper bracket the sampled margins, verified
    means every sampled margin is positive, and Fast-Lin and LP-GREEDY agree exactly (the
    greedy dual with alpha = u/(u-l) is Fast-Lin: Salman et al. 2019, Section 4)."""
    case = _case(name)
    pset = case.pset("linf-box")
    outs = verify(case.net, case.x.astype(np.float32), case.y, pset, REGISTRY_METHODS)
    by = {(o.method, o.sample): o for o in outs}
    truth = _truth(name, "linf-box")
    for m in REGISTRY_METHODS:
        for b, (marg, _) in enumerate(truth):
            o = by[m, b]
            keep = np.arange(case.net.n_classes) != case.y[b]
            assert np.isnan(o.margin_lower[case.y[b]]) and np.isnan(o.margin_upper[case.y[b]])
            _assert_within(marg[:, keep], o.margin_lower[keep], o.margin_upper[keep], f"{m} sample {b}")
            if o.status == Status.VERIFIED:
                assert marg[:, keep].min() > 0
    for b in range(len(truth)):
        fl, lg = by["fast-lin", b], by["lp-greedy", b]
        assert fl.status == lg.status
        np.testing.assert_array_equal(fl.margin_lower, lg.margin_lower)
        np.testing.assert_array_equal(fl.margin_upper, lg.margin_upper)


def test_fast_lin_equals_lp_greedy_on_zoo_mlp():
    from lpbench.data import load_mnist
    from lpbench.zoo import load_model

    ds = load_mnist("test")
    net = load_model("NOR-MLP-B")
    outs = verify(net, ds.images[:20], ds.labels[:20], Perturbation(0.02), ["fast-lin", "lp-greedy"])
    fl, lg = outs[:20], outs[20:]
    assert [o.status for o in fl] == [o.status for o in lg]
    assert any(o.status == Status.VERIFIED for o in fl) and any(o.status == Status.UNKNOWN for o in fl)
    np.testing.assert_array_equal(np.stack([o.margin_lower for o in fl]),
                                  np.stack([o.margin_lower for o in lg]))


@settings(max_examples=60, deadline=None)
@given(l=st.floats(-10, 10), w=st.floats(1e-6, 20), policy=st.sampled_from(RELU_POLICIES))
def test_relu_lines_sandwich_relu_on_interval(l, w, policy):
    """Every policy's two lines bound relu on [l, u], and the upper line of an unstable neuron
    is the chord (it touches relu at both ends)."""
    u = l + w
    lt, ut = torch.tensor([l], dtype=torch.float64), torch.tensor([u], dtype=torch.float64)
    ln = activation_lines(RELU.activation, lt, ut, policy)
    z = torch.linspace(l, u, 101, dtype=torch.float64)
    lower = ln.lower_slope * z + ln.lower_icpt
    upper = ln.upper_slope * z + ln.upper_icpt
    r = torch.relu(z)
    tol = 1e-12 * (1 + abs(l) + abs(u))
    assert bool((lower <= r + tol).all()) and bool((r <= upper + tol).all())
    if l < 0 < u:
        assert abs(float(ln.upper_slope * lt + ln.upper_icpt)) <= tol
        assert abs(float(ln.upper_slope * ut + ln.upper_icpt) - u) <= tol


# --------------------------------------------------------------------------------------------
# 2. hand-computable cases


def _two_neuron_net() -> Network:
    #   z1 = x1 + x2 + 1,  z2 = x1 - x2 - 0.5,  f = relu(z1) - relu(z2)
    return Network((Dense(np.array([[1, 1], [1, -1]], np.float32), np.array([1, -0.5], np.float32)),
                    RELU, Dense(np.array([[1, -1]], np.float32), np.array([0], np.float32))), (2,))


# x0 = (0, 0), eps = 1, l_inf, no box: x in [-1, 1]^2.
#   z1 in [-1, 3]    chord slope s1 = 3/4,   chord: h1 <= 0.75 z1 + 0.75
#   z2 in [-2.5, 1.5] chord slope s2 = 3/8,  chord: h2 <= 0.375 z2 + 0.9375
# True range of f: max 3 at x = (1, 1) (z2 = -0.5); min -0.5 (relu is monotone and 1-Lipschitz,
#   so f >= min(0, z1 - z2) = min(0, 2 x2 + 1.5) >= -0.5, attained at x = (1, -1)).
# IBP: h1 in [0, 3], h2 in [0, 1.5]  =>  f in [-1.5, 3].
# same-slope (Fast-Lin, alpha = u/(u-l)):
#   lower: 0.75 z1 - (0.375 z2 + 0.9375) = 0.375 x1 + 1.125 x2         -> min -1.5
#   upper: 0.75 z1 + 0.75 - 0.375 z2     = 0.375 x1 + 1.125 x2 + 1.6875 -> max 3.1875
# adaptive (CROWN): alpha1 = 1 (u = 3 >= -l = 1), alpha2 = 0 (u = 1.5 < -l = 2.5):
#   lower: z1 - (0.375 z2 + 0.9375)      = 0.625 x1 + 1.375 x2 + 0.25   -> min -1.75
#   upper: 0.75 z1 + 0.75 - 0 * z2       = 0.75 x1 + 0.75 x2 + 1.5      -> max 3.0
# zero (alpha = 0):
#   lower: 0 - (0.375 z2 + 0.9375)       = -0.375 x1 + 0.375 x2 - 0.75  -> min -1.5
#   upper: as adaptive                                                  -> max 3.0
# one (alpha = 1):
#   lower: as adaptive                                                  -> min -1.75
#   upper: 0.75 z1 + 0.75 - z2           = -0.25 x1 + 1.75 x2 + 2       -> max 4.0
HAND_EXPECTED = {"ibp": (-1.5, 3.0), "same-slope": (-1.5, 3.1875), "adaptive": (-1.75, 3.0),
                 "zero": (-1.5, 3.0), "one": (-1.75, 4.0)}


@pytest.mark.parametrize("fn", list(BOUND_FNS))
def test_two_neuron_network_by_hand(fn):
    net = _two_neuron_net()
    x = torch.zeros(1, 2, dtype=torch.float64)
    b = BOUND_FNS[fn](net, x, Perturbation(1.0, "linf", None), torch.ones(1, 1, 1, dtype=torch.float64))
    lo, hi = HAND_EXPECTED[fn.split("/")[0]]
    np.testing.assert_allclose([b.lower.item(), b.upper.item()], [lo, hi], rtol=0, atol=1e-8)
    assert b.lower.item() <= lo and b.upper.item() >= hi  # widened outwards, never inwards
    assert set(b.pre) == {1}
    np.testing.assert_allclose(b.pre[1][0].numpy(), [[-1.0, -2.5]], atol=1e-8)
    np.testing.assert_allclose(b.pre[1][1].numpy(), [[3.0, 1.5]], atol=1e-8)
    # every relaxation contains the true range [-0.5, 3]
    assert b.lower.item() <= -0.5 and b.upper.item() >= 3.0


def test_two_neuron_network_true_range_is_what_the_comment_says():
    net = _two_neuron_net()
    g = np.linspace(-1, 1, 201)
    f = net.logits64(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))[:, 0]
    assert f.min() == pytest.approx(-0.5) and f.max() == pytest.approx(3.0)


def _linear_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network((Dense(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)),
                    Dense(rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=2).astype(np.float32))),
                   (3,))


@pytest.mark.parametrize("norm, dual", [("linf", 1), ("l2", 2), ("l1", np.inf)])
@pytest.mark.parametrize("seed", [0, 1])
def test_linear_network_closed_form(norm, dual, seed):
    """Dense -> Dense without activation: backward bounds are c.f(x0) -+ eps ||c W2 W1||_dual
    for every policy; IBP (which loses the correlation through the hidden layer) is no tighter."""
    net = _linear_net(seed)
    w1, w2 = (l.weight.astype(np.float64) for l in net.layers)
    b1, b2 = (l.bias.astype(np.float64) for l in net.layers)
    x0 = np.random.default_rng(10 + seed).uniform(-1, 1, 3)
    c = np.array([1.0, -1.0])
    eps = 0.3
    centre = c @ (w2 @ (w1 @ x0 + b1) + b2)
    rad = eps * np.linalg.norm(c @ w2 @ w1, dual)
    pset = Perturbation(eps, norm, None)
    x = torch.as_tensor(x0)[None]
    spec = torch.as_tensor(c)[None, None]
    for fn in LINEAR_FNS:
        b = BOUND_FNS[fn](net, x, pset, spec)
        np.testing.assert_allclose([b.lower.item(), b.upper.item()], [centre - rad, centre + rad],
                                   rtol=1e-7, atol=1e-7, err_msg=fn)
        assert b.lower.item() <= centre - rad and b.upper.item() >= centre + rad
    ibp = interval_bounds(net, x, pset, spec)
    assert ibp.lower.item() <= centre - rad and ibp.upper.item() >= centre + rad
    if norm == "linf":  # IBP's own closed form: eps |c W2| |W1| 1
        ibp_rad = eps * np.abs(c @ w2) @ np.abs(w1) @ np.ones(3)
        np.testing.assert_allclose([ibp.lower.item(), ibp.upper.item()],
                                   [centre - ibp_rad, centre + ibp_rad], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 3.0), ("l1", 7.0)])
def test_single_linear_layer_closed_form_with_box(norm, eps):
    """One dense layer under l_inf intersected with the box: exact bound is the sum over the
    clipped coordinate intervals, and every method (IBP included) attains it. An l2 / l1 ball
    that holds the whole box [0,1]^6 (radius > sqrt(6), > 6) leaves exactly the box too."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 6)).astype(np.float32)
    net = Network((Dense(w, np.zeros(3, np.float32)),), (6,))
    x0 = np.array([0.0, 1.0, 0.5, 0.05, 0.97, 0.3])
    lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    c = np.array([[1.0, -1.0, 0.0], [0.0, 2.0, 1.0]])
    a = c @ w.astype(np.float64)
    exact_lo = np.minimum(a * lo, a * hi).sum(1)
    exact_hi = np.maximum(a * lo, a * hi).sum(1)
    for fn in BOUND_FNS:
        b = BOUND_FNS[fn](net, torch.as_tensor(x0)[None], Perturbation(eps, norm), torch.as_tensor(c)[None])
        np.testing.assert_allclose(b.lower[0].numpy(), exact_lo, atol=1e-9, err_msg=fn)
        np.testing.assert_allclose(b.upper[0].numpy(), exact_hi, atol=1e-9, err_msg=fn)


# --------------------------------------------------------------------------------------------
# 3. orderings that theory guarantees


@pytest.mark.parametrize("name", TINY + ["NOR-MLP-B"])
def test_first_layer_bounds_equal_ibp_and_are_attained(name):
    """Under l_inf (with the box) the first activation's input is one affine map of a box:
    IBP and every linear method give the same, exact bounds, attained at box vertices."""
    case = _case(name)
    first = case.net.activation_indices[0]
    ibp_lo, ibp_hi = _bounds(name, "linf-box", "ibp")[2][first]
    for fn in LINEAR_FNS:
        lo, hi = _bounds(name, "linf-box", fn)[2][first]
        np.testing.assert_allclose(lo, ibp_lo, rtol=1e-12, atol=1e-12, err_msg=fn)
        np.testing.assert_allclose(hi, ibp_hi, rtol=1e-12, atol=1e-12, err_msg=fn)
    pset = case.pset("linf-box")
    m = math.prod(case.net.shapes[first])
    for b in range(len(case.y)):
        xf = case.x[b].ravel()
        g = _grads(case.net, case.x[b], first, np.eye(m))
        lo, hi = _linf_box(xf, pset)
        best = np.where(g > 0, hi, lo)  # row j maximises neuron j
        worst = np.where(g > 0, lo, hi)
        with torch.no_grad():
            f = lambda p: case.net.forward(torch.as_tensor(p).reshape(-1, *case.net.input_shape),
                                           upto=first).reshape(m, m).diagonal().numpy()
            top, bottom = f(best), f(worst)
        scale = 1 + np.abs(ibp_hi[b]).ravel() + np.abs(ibp_lo[b]).ravel()
        assert np.all(ibp_hi[b].ravel() - top <= 1e-8 * scale)
        assert np.all(bottom - ibp_lo[b].ravel() <= 1e-8 * scale)


@pytest.mark.parametrize("name", MLPS + ["NOR-MLP-B"])
def test_first_layer_l2_bounds_are_the_dual_norm_closed_form(name):
    """Under an l2 ball without box the linear methods with backward intermediate bounds bound
    neuron j of the first layer by w_j.x + b_j -+ eps ||w_j||_2 (exact); IBP (the enclosing box)
    is looser or equal, and intermediate="interval" means exactly IBP's bounds."""
    case = _case(name)
    first = case.net.activation_indices[0]
    dense = next(l for l in case.net.layers[:first] if isinstance(l, Dense))
    w, bias = dense.weight.astype(np.float64), dense.bias.astype(np.float64)
    eps = case.eps["l2"]
    centre = case.x.reshape(len(case.y), -1) @ w.T + bias
    rad = eps * np.linalg.norm(w, axis=1)
    ibp_lo, ibp_hi = _bounds(name, "l2-none", "ibp")[2][first]
    for fn in LINEAR_FNS:
        lo, hi = _bounds(name, "l2-none", fn)[2][first]
        if fn.endswith("/interval"):
            np.testing.assert_array_equal(lo, ibp_lo)
            np.testing.assert_array_equal(hi, ibp_hi)
            continue
        np.testing.assert_allclose(lo, centre - rad, rtol=1e-7, atol=1e-7, err_msg=fn)
        np.testing.assert_allclose(hi, centre + rad, rtol=1e-7, atol=1e-7, err_msg=fn)
        assert np.all(lo <= centre - rad) and np.all(hi >= centre + rad)
    assert np.all(ibp_lo <= centre - rad) and np.all(ibp_hi >= centre + rad)


@pytest.mark.parametrize("pkey", PSET_KEYS)
@pytest.mark.parametrize("name", TINY + ["NOR-MLP-B"])
def test_zero_slope_on_ibp_intermediates_is_at_least_as_tight_as_ibp(name, pkey):
    """With IBP's intermediate bounds and lower slope 0 (CROWN-IBP's tight choice), the backward
    bound of mu.h is never looser than IBP's: by induction over layers, the zero-slope lower line
    and the chord attain their minimum over [l, u] at the same value as mu_j relu(z_j), and an
    interval bound of a sum is at most the sum of the interval bounds. (Not true for the other
    slopes, nor with backward intermediate bounds, so those are not asserted.)"""
    ibp_lo, ibp_hi, ibp_pre = _bounds(name, pkey, "ibp")
    lo, hi, pre = _bounds(name, pkey, "zero/interval")
    for i in ibp_pre:  # the same intermediate bounds, as promised
        np.testing.assert_array_equal(pre[i][0], ibp_pre[i][0])
        np.testing.assert_array_equal(pre[i][1], ibp_pre[i][1])
    tol = 1e-8 * (1 + np.abs(ibp_lo) + np.abs(ibp_hi))  # the two engines' float slacks differ
    assert np.all(lo >= ibp_lo - tol), (lo - ibp_lo).min()
    assert np.all(hi <= ibp_hi + tol), (ibp_hi - hi).min()


def _triangle_lp(net: Network, x: np.ndarray, pset: Perturbation, pre: dict, c: np.ndarray) -> float:
    """min c.f(x') over the triangle relaxation with the given pre-activation bounds and x' in
    the l_inf ball intersected with the box (an independent reference, scipy's HiGHS)."""
    dense = [l for l in net.layers if isinstance(l, Dense)]
    acts = list(net.activation_indices)
    sizes = [dense[0].weight.shape[1]] + [d.weight.shape[0] for d in dense[:-1]]
    # variables: x, then (z_k, h_k) for every hidden layer
    offs, n = [0], sizes[0]
    for s in sizes[1:]:
        offs.append(n)
        n += 2 * s
    lo_x, hi_x = _linf_box(x.ravel(), pset)
    bounds = list(zip(lo_x, hi_x)) + [None] * (n - sizes[0])
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for k, s in enumerate(sizes[1:]):
        w, b = dense[k].weight.astype(np.float64), dense[k].bias.astype(np.float64)
        prev = slice(offs[k], offs[k] + sizes[k]) if k == 0 else slice(offs[k] + sizes[k], offs[k] + 2 * sizes[k])
        z0, h0 = offs[k + 1], offs[k + 1] + s
        l, u = (t.ravel() for t in pre[acts[k]])
        for j in range(s):
            row = np.zeros(n)
            row[z0 + j], row[prev] = 1, -w[j]
            a_eq.append(row), b_eq.append(b[j])
            bounds[z0 + j] = (l[j], u[j])
            if u[j] <= 0:
                bounds[h0 + j] = (0, 0)
            elif l[j] >= 0:
                row = np.zeros(n)
                row[h0 + j], row[z0 + j] = 1, -1
                a_eq.append(row), b_eq.append(0)
                bounds[h0 + j] = (None, None)
            else:
                bounds[h0 + j] = (0, None)
                slope = u[j] / (u[j] - l[j])
                r1, r2 = np.zeros(n), np.zeros(n)
                r1[z0 + j], r1[h0 + j] = 1, -1  # z - h <= 0
                r2[h0 + j], r2[z0 + j] = 1, -slope  # h - s z <= -s l
                a_ub += [r1, r2]
                b_ub += [0, -slope * l[j]]
    last = dense[-1]
    obj = np.zeros(n)
    hl = offs[-1] + sizes[-1]
    obj[hl:hl + sizes[-1]] = c @ last.weight.astype(np.float64)
    res = linprog(obj, A_ub=np.array(a_ub) if a_ub else None, b_ub=b_ub or None, A_eq=np.array(a_eq),
                  b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return float(res.fun + c @ last.bias.astype(np.float64))


@pytest.mark.parametrize("fn", LINEAR_FNS)
@pytest.mark.parametrize("name", MLPS)
def test_backward_bound_never_exceeds_triangle_lp_with_same_intermediates(name, fn):
    """With the same intermediate bounds, any backward pass optimises over a superset of the
    triangle relaxation: its lower bound is <= the LP optimum, which is <= the sampled minimum."""
    case = _case(name)
    pset = case.pset("linf-box")
    lower, _, pre = _bounds(name, "linf-box", fn)
    truth = _truth(name, "linf-box")
    for b in range(len(case.y)):
        pre_b = {i: (lo[b], hi[b]) for i, (lo, hi) in pre.items()}
        for j in range(case.net.n_classes):
            if j == case.y[b]:
                continue
            c = np.eye(case.net.n_classes)[case.y[b]] - np.eye(case.net.n_classes)[j]
            lp = _triangle_lp(case.net, case.x[b], pset, pre_b, c)
            tol = 1e-7 * (1 + abs(lp))
            assert lower[b, j] <= lp + tol, (b, j, lower[b, j], lp)
            assert lp <= truth[b][0][:, j].min() + tol, (b, j, lp, truth[b][0][:, j].min())


# -- Wong & Kolter 2018, Algorithm 1: an independent float64 reference ------------------------


def _dense_stack(net: Network) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """The weights of an MLP (Flatten?, Dense, relu, Dense, relu, ..., Dense) in float64, and
    the layer indices of its activations."""
    layers = [l for l in net.layers if not isinstance(l, Flatten)]
    assert all(isinstance(l, Dense) for l in layers[::2]) and all(isinstance(l, Act) for l in layers[1::2])
    dense = layers[::2]
    return ([d.weight.astype(np.float64) for d in dense], [d.bias.astype(np.float64) for d in dense],
            list(net.activation_indices))


def wk_dual(ws: list[np.ndarray], bs: list[np.ndarray], x: np.ndarray, eps: float, c: np.ndarray,
            lus: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """J(nu) of Wong & Kolter 2018 (Theorem 1 / Algorithm 1) for the objective rows c (m, n_k)
    of z_k = W_{k-1} relu(... relu(W_1 x + b_1) ...) + b_{k-1}, x in the l_inf ball (no box):

        nu_k = -c,  hat nu_i = W_i^T nu_{i+1},  nu_i = D_i hat nu_i,
        J = - sum_i nu_{i+1}^T b_i - x^T hat nu_1 - eps ||hat nu_1||_1
            + sum_{i} sum_{j in I_i} l_ij [nu_ij]_+

    with D = 1 on active, 0 on dead and u/(u-l) on unstable (I_i) neurons. J <= min c.z_k.
    ``lus[i]`` are the bounds of the input of hidden layer i+1 (as many as len(ws) - 1)."""
    nu = -c.T  # (n_k, m)
    j_val = np.zeros(c.shape[0])
    for i in range(len(ws) - 1, -1, -1):
        j_val -= nu.T @ bs[i]
        nu_hat = ws[i].T @ nu
        if i == 0:
            break
        l, u = lus[i - 1]
        unstable = (l < 0) & (u > 0)
        d = np.where(l >= 0, 1.0, 0.0)
        d[unstable] = u[unstable] / (u[unstable] - l[unstable])
        nu = d[:, None] * nu_hat
        j_val += (l[unstable, None] * np.maximum(nu[unstable], 0)).sum(0)
    return j_val - x @ nu_hat - eps * np.abs(nu_hat).sum(0)


def wk_bounds(ws, bs, x, eps, c):
    """Intermediate bounds layer by layer with the same dual (rows +-e_j), then J for c."""
    lus = []
    for k in range(1, len(ws)):
        eye = np.eye(ws[k - 1].shape[0])
        lus.append((wk_dual(ws[:k], bs[:k], x, eps, eye, lus), -wk_dual(ws[:k], bs[:k], x, eps, -eye, lus)))
    return wk_dual(ws, bs, x, eps, c, lus), -wk_dual(ws, bs, x, eps, -c, lus), lus


def test_wong_kolter_reference_on_the_hand_network():
    ws, bs, _ = _dense_stack(_two_neuron_net())
    lo, hi, lus = wk_bounds(ws, bs, np.zeros(2), 1.0, np.ones((1, 1)))
    np.testing.assert_allclose(lus[0][0], [-1, -2.5])
    np.testing.assert_allclose(lus[0][1], [3, 1.5])
    np.testing.assert_allclose([lo[0], hi[0]], HAND_EXPECTED["same-slope"])


WK_CASES = ["mlp-2x12", "mlp-3x20", "mlp-3x3", "NOR-MLP-B"]


@pytest.mark.parametrize("name", WK_CASES)
def test_wong_kolter_reference_is_sound(name):
    """Check the reference itself (and its sign convention) against sampled points first."""
    case = _case(name)
    ws, bs, acts = _dense_stack(case.net)
    truth = _truth(name, "linf-none")
    c = case.net.n_classes
    for b in range(len(case.y)):
        spec = np.eye(c)[case.y[b]] - np.eye(c)
        lo, hi, lus = wk_bounds(ws, bs, case.x[b].ravel(), case.eps["linf"], spec)
        marg, pre = truth[b]
        _assert_within(marg, lo - 1e-9, hi + 1e-9, f"W&K reference, sample {b}")
        for (l, u), i in zip(lus, acts):
            _assert_within(pre[i], l - 1e-9, u + 1e-9, f"W&K reference layer {i}, sample {b}")


@pytest.mark.parametrize("name", WK_CASES)
def test_lp_greedy_matches_wong_kolter_dual(name):
    case = _case(name)
    ws, bs, acts = _dense_stack(case.net)
    lower, upper, pre = _bounds(name, "linf-none", "same-slope/backward")
    outs = verify(case.net, case.x.astype(np.float32), case.y, case.pset("linf-none"), ["lp-greedy"])
    c = case.net.n_classes
    for b in range(len(case.y)):
        spec = np.eye(c)[case.y[b]] - np.eye(c)
        lo, hi, lus = wk_bounds(ws, bs, case.x[b].ravel(), case.eps["linf"], spec)
        assert any(np.any((l < 0) & (u > 0)) for l, u in lus)  # the u/(u-l) branch is used
        keep = np.arange(c) != case.y[b]
        np.testing.assert_allclose(outs[b].margin_lower[keep], lo[keep], rtol=1e-7, atol=1e-6)
        np.testing.assert_allclose(lower[b], lo, rtol=1e-7, atol=1e-6)
        np.testing.assert_allclose(upper[b], hi, rtol=1e-7, atol=1e-6)
        for (l, u), i in zip(lus, acts):
            np.testing.assert_allclose(pre[i][0][b], l, rtol=1e-7, atol=1e-6)
            np.testing.assert_allclose(pre[i][1][b], u, rtol=1e-7, atol=1e-6)


# --------------------------------------------------------------------------------------------
# 4. floating-point slack at eps = 0


def _zero_bias_mlp() -> Network:
    """Biases 0 and input 0: every pre-activation is exactly 0 at eps = 0 (the degenerate
    unstable neuron with l = -tiny, u = +tiny)."""
    net = _mlp(7, [4, 6, 5, 3])
    return Network(tuple(Dense(l.weight, np.zeros_like(l.bias)) if isinstance(l, Dense) else l
                         for l in net.layers), net.input_shape)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("box", [(0.0, 1.0), None])
@pytest.mark.parametrize("name", ["mlp-3x20", "tiny-cnn", "NOR-MLP-B", "zero-bias"])
def test_eps_zero_bounds_are_finite_and_bracket_the_exact_value(name, box, norm):
    if name == "zero-bias":
        net, x = _zero_bias_mlp(), np.zeros((2, 4))
        y = np.array([0, 1])
    else:
        case = _case(name)
        net, x, y = case.net, case.x, case.y
    pset = Perturbation(0.0, norm, box)
    xt = torch.as_tensor(x)
    spec = margin_spec(torch.as_tensor(y), net.n_classes, torch.float64, "cpu")
    logits = net.logits64(x)
    exact = logits[np.arange(len(y)), y][:, None] - logits
    with torch.no_grad():
        pre_exact = {i: net.forward(xt, upto=i).numpy() for i in net.activation_indices}
    for fn, compute in BOUND_FNS.items():
        with torch.no_grad():
            b = compute(net, xt, pset, spec)
        lo, hi = b.lower.numpy(), b.upper.numpy()
        assert np.isfinite(lo).all() and np.isfinite(hi).all(), fn
        assert np.all(lo <= exact) and np.all(exact <= hi), fn
        assert np.all(hi - lo <= 1e-6 * (1 + np.abs(exact))), (fn, (hi - lo).max())
        for i, (plo, phi) in b.pre.items():
            plo, phi = plo.numpy(), phi.numpy()
            assert np.isfinite(plo).all() and np.isfinite(phi).all(), (fn, i)
            assert np.all(plo <= pre_exact[i]) and np.all(pre_exact[i] <= phi), (fn, i)
            assert np.all(phi - plo <= 1e-6 * (1 + np.abs(pre_exact[i]))), (fn, i)

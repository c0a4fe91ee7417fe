"""General activations, bounding-line strategies, norms and the LBP family (issue 7).

* 1-D soundness: every activation's lines under every strategy lie below / above it on a dense
  grid of many random intervals (widths 1e-9 .. 100, straddling 0, +-50); the S-shaped tangent
  lines touch the function (non-vacuity of the tangent search).
* Network soundness: sampled points of the set (uniform, vertices, gradient-directed extremes,
  PGD) lie inside the bounds of IBP, CROWN, CROWN-IBP, LBP, CROWN-LBP and relaxed CROWN-2 under
  every strategy and norm, on MLPs of every activation and a CNN mixing them.
* Theory: Theorem 2 of Lyu et al. 2021 per neuron under the tight strategy; constant lines = IBP;
  LBP = an independent forward-mode implementation (eq. 17-18); relaxed CROWN-v with v >= depth
  = CROWN.
* A tanh and a sigmoid MLP trained here, verified under l_inf, l_2, l_1 with every method.
* Bad input, neuron statuses, targeted radii.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from lpbench.activations import parse_activation
from lpbench.bounds.piecewise import PARAM_RAMP_STATUSES
from lpbench.bounds.propagate import crown_ibp_bounds, interval_bounds, linear_bounds, relaxed_bounds
from lpbench.bounds.relaxations import STRATEGIES, activation_lines
from lpbench.bounds.status import neuron_status
from lpbench.errors import LpbenchError, ModelError
from lpbench.methods import REGISTRY, Method, margin_spec, register, verify
from lpbench.network import Act, Conv2d, Dense, Flatten, Network
from lpbench.problem import Perturbation, Status
from test_bounds_soundness import _assert_within, sample_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EPS64 = 2.0 ** -52
ACTS = ["relu", "leaky_relu(0.1)", "param_ramp(0.05,0.6)", "tanh", "sigmoid", "arctan"]
PIECEWISE = ACTS[:3]


def _strategies(spec: str) -> list[str]:
    return list(STRATEGIES) + (["fixed(0.3)"] if spec.startswith(("relu", "leaky")) else [])


# --------------------------------------------------------------------------------------------
# 1. the lines of one neuron


def _intervals(seed: int, n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    c = rng.uniform(-8, 8, n)
    w = 10 ** rng.uniform(-9, 2, n)
    l = c - w * rng.uniform(0, 1, n)
    u = l + w
    k = n // 8  # narrow and wide intervals straddling 0, and the +-50 extremes
    l[:k], u[:k] = -10 ** rng.uniform(-9, 1, k), 10 ** rng.uniform(-9, 1, k)
    l[k:k + 4], u[k:k + 4] = -50.0, 50.0
    l[k + 4:k + 8], u[k + 4:k + 8] = -50.0, -49.0
    l[k + 8:k + 12], u[k + 8:k + 12] = 3.0, 3.0 + 1e-9
    return torch.tensor(l), torch.tensor(u)


@pytest.mark.parametrize("spec", ACTS)
def test_lines_bound_the_activation_on_a_dense_grid(spec):
    act = parse_activation(spec)
    if act.name == "param_ramp":  # a per-neuron threshold, some inside the intervals
        act = act.with_r(np.random.default_rng(5).uniform(0.05, 3.0, 600))
    l, u = _intervals(hash(spec) % 1000)
    t = torch.linspace(0, 1, 801, dtype=torch.float64)
    z = torch.minimum(l[:, None] + (u - l)[:, None] * t, u[:, None])
    for strategy in _strategies(spec):
        ln = activation_lines(act, l, u, strategy)
        if act.name == "param_ramp":
            f = act.forward(z.T).T  # r broadcasts over the last axis
        else:
            f = act.forward(z)
        lo = ln.lower_slope[:, None] * z + ln.lower_icpt[:, None]
        up = ln.upper_slope[:, None] * z + ln.upper_icpt[:, None]
        # only the rounding of this very evaluation is allowed
        tol_lo = 2 * EPS64 * ((ln.lower_slope[:, None] * z).abs() + ln.lower_icpt.abs()[:, None] + f.abs())
        tol_up = 2 * EPS64 * ((ln.upper_slope[:, None] * z).abs() + ln.upper_icpt.abs()[:, None] + f.abs())
        assert bool((lo <= f + tol_lo).all()), (strategy, float((lo - f).max()))
        assert bool((f <= up + tol_up).all()), (strategy, float((f - up).max()))
        assert bool((ln.lower_slope >= 0).all() and (ln.upper_slope >= 0).all()), strategy


@pytest.mark.parametrize("spec", ["tanh", "sigmoid", "arctan"])
def test_tangent_lines_touch_the_function(spec):
    """Non-vacuity: on intervals straddling 0 the upper line through (l, f(l)) touches f (gap
    ~1e-13, not the 0.01 offset of the released code) and is no steeper than f'(0)."""
    act = parse_activation(spec)
    rng = np.random.default_rng(1)
    l = torch.tensor(-rng.uniform(0.1, 6, 300))
    u = torch.tensor(rng.uniform(0.1, 6, 300))
    ln = activation_lines(act, l, u, "tight")
    z = l[:, None] + (u - l)[:, None] * torch.linspace(0, 1, 20001, dtype=torch.float64)
    f = act.forward(z)
    gap_up = (ln.upper_slope[:, None] * z + ln.upper_icpt[:, None] - f).min(1).values
    gap_lo = (f - ln.lower_slope[:, None] * z - ln.lower_icpt[:, None]).min(1).values
    assert float(gap_up.max()) < 1e-6 and float(gap_lo.max()) < 1e-6
    d0 = float(act.forward(torch.tensor([-1e-7, 1e-7], dtype=torch.float64)).diff() / 2e-7)
    assert float(ln.upper_slope.max()) <= d0 * (1 + 1e-6)


def test_constant_lines_are_the_interval():
    l, u = _intervals(3)
    for spec in ACTS:
        act = parse_activation(spec)
        ln = activation_lines(act, l, u, "constant")
        assert bool((ln.lower_slope == 0).all() and (ln.upper_slope == 0).all())
        assert torch.equal(ln.lower_icpt, act.forward(l)) and torch.equal(ln.upper_icpt, act.forward(u))


# --------------------------------------------------------------------------------------------
# 2. networks


def _mlp(seed: int, widths: list[int], spec: str, bias: float = 0.5) -> Network:
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense((rng.normal(size=(b, a)) / np.sqrt(a)).astype(np.float32),
                            (bias * rng.normal(size=b)).astype(np.float32)))
        if i < len(widths) - 2:
            act = parse_activation(spec)
            if act.name == "param_ramp":
                act = act.with_r(rng.uniform(0.1, 1.2, b))
            layers.append(Act(act))
    return Network(tuple(layers), (widths[0],), f"{spec}-mlp")


def _mixed_cnn() -> Network:
    """conv -> tanh -> conv -> ParamRamp (per-neuron r) -> flatten -> dense -> sigmoid -> dense."""
    rng = np.random.default_rng(9)
    w = lambda *s: (rng.normal(size=s) / np.sqrt(np.prod(s[1:]))).astype(np.float32)  # noqa: E731
    ramp = parse_activation("param_ramp(0.02,0.5)").with_r(rng.uniform(0.1, 1.0, (3, 3, 3)))
    layers = (Conv2d(w(2, 1, 3, 3), (0.3 * rng.normal(size=2)).astype(np.float32), 1, 1),
              Act(parse_activation("tanh")),
              Conv2d(w(3, 2, 3, 3), (0.3 * rng.normal(size=3)).astype(np.float32), 2, 1),
              Act(ramp), Flatten(), Dense(w(6, 27), (0.3 * rng.normal(size=6)).astype(np.float32)),
              Act(parse_activation("sigmoid")), Dense(w(3, 6), np.zeros(3, np.float32)))
    return Network(layers, (1, 5, 5), "mixed-cnn")


NETS = {spec: functools.partial(_mlp, 0, [4, 12, 10, 3], spec) for spec in ACTS}
NETS["mixed-cnn"] = _mixed_cnn
EPS = {"linf": 0.15, "l2": 0.4, "l1": 0.6}
PSETS = {"linf-box": ("linf", (0.0, 1.0)), "l2-none": ("l2", None), "l1-box": ("l1", (0.0, 1.0))}


@functools.lru_cache(maxsize=None)
def _case(name: str, pkey: str):
    net = NETS[name]()
    rng = np.random.default_rng(len(name))
    x = rng.uniform(0.05, 0.95, size=(2, *net.input_shape)).astype(np.float32).astype(np.float64)
    y = net.logits64(x).argmax(1)
    norm, box = PSETS[pkey]
    pset = Perturbation(EPS[norm] * (0.5 if name == "mixed-cnn" else 1.0), norm, box)
    truth = []
    for b in range(2):
        pts = sample_set(net, x[b], int(y[b]), pset, seed=b, n_uniform=100, n_vertices=24, neurons=8)
        logits = net.logits64(pts)
        xt = torch.as_tensor(pts).reshape(-1, *net.input_shape)
        with torch.no_grad():
            pre = {i: net.forward(xt, upto=i).reshape(len(pts), -1).numpy() for i in net.activation_indices}
        truth.append((logits[:, [y[b]]] - logits, pre))
    return net, x, y, pset, truth


def _computations(spec: str):
    yield "ibp", interval_bounds
    for s in _strategies(spec):
        yield f"crown/{s}", functools.partial(linear_bounds, policy=s)
        yield f"crown-ibp/{s}", functools.partial(linear_bounds, policy=s, intermediate="interval")
        yield f"crown-lbp/{s}", functools.partial(linear_bounds, policy=s, intermediate="lbp")
        yield f"lbp/{s}", functools.partial(relaxed_bounds, policy=s, v=1)
        yield f"relaxed-2/{s}", functools.partial(relaxed_bounds, policy=s, v=2)


@pytest.mark.parametrize("pkey", list(PSETS))
@pytest.mark.parametrize("name", list(NETS))
def test_sampled_points_lie_within_every_method_strategy_and_norm(name, pkey):
    net, x, y, pset, truth = _case(name, pkey)
    spec = margin_spec(torch.as_tensor(y), net.n_classes, torch.float64, "cpu")
    unstable = 0
    for what, fn in _computations(name if name != "mixed-cnn" else "tanh"):
        with torch.no_grad():
            b = fn(net, torch.as_tensor(x), pset, spec)
        for s, (marg, pre) in enumerate(truth):
            _assert_within(marg, b.lower[s].numpy(), b.upper[s].numpy(), f"{what} margins, sample {s}")
            for i, vals in pre.items():
                lo, hi = b.pre[i][0][s].flatten().numpy(), b.pre[i][1][s].flatten().numpy()
                _assert_within(vals, lo, hi, f"{what} layer {i}, sample {s}")
                unstable += int(((lo < 0) & (hi > 0)).sum())
    assert unstable > 0  # the relaxations of neurons that cross 0 are exercised


# -- theory -----------------------------------------------------------------------------------


def _le(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    tol = 1e-7 * (1 + torch.maximum(a.abs(), b.abs()))
    assert bool((a <= b + tol).all()), (what, float((a - b).max()))


@pytest.mark.parametrize("pkey", ["linf-box", "l2-none"])
@pytest.mark.parametrize("spec", PIECEWISE)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbp_ordering_theorem_per_neuron(seed, spec, pkey):
    """Lyu et al. 2021, Theorem 2 under the tight strategy: IBP <= {LBP, CROWN-IBP} <= CROWN-LBP
    <= CROWN for lower bounds (reverse for upper), every pre-activation neuron and every margin."""
    net = _mlp(seed, [5, 16, 16, 12, 4], spec)
    norm, box = PSETS[pkey]
    x = torch.as_tensor(np.random.default_rng(seed).uniform(0, 1, (3, 5)))
    pset = Perturbation(EPS[norm] * 0.7, norm, box)
    spec_m = margin_spec(torch.tensor([0, 1, 2]), 4, torch.float64, "cpu")
    with torch.no_grad():
        b = {"ibp": interval_bounds(net, x, pset, spec_m),
             "lbp": relaxed_bounds(net, x, pset, spec_m, "tight", 1),
             "cibp": linear_bounds(net, x, pset, spec_m, "tight", "interval"),
             "clbp": linear_bounds(net, x, pset, spec_m, "tight", "lbp"),
             "crown": linear_bounds(net, x, pset, spec_m, "tight")}
    chain = [("ibp", "lbp"), ("ibp", "cibp"), ("lbp", "clbp"), ("cibp", "clbp"), ("clbp", "crown")]
    for a, c in chain:
        _le(b[a].lower, b[c].lower, f"{a} <= {c} lower")
        _le(b[c].upper, b[a].upper, f"{c} <= {a} upper")
        for i in net.activation_indices:  # CROWN-IBP / CROWN-LBP use IBP / LBP intermediates
            _le(b[a].pre[i][0], b[c].pre[i][0], f"{a} <= {c} layer {i}")
            _le(b[c].pre[i][1], b[a].pre[i][1], f"{c} <= {a} layer {i}")
    assert bool((b["crown"].lower > b["ibp"].lower + 1e-6).any())  # the chain is not all ties


@pytest.mark.parametrize("box", [(0.0, 1.0), None])
@pytest.mark.parametrize("name", list(NETS))
def test_constant_strategy_reproduces_ibp(name, box):
    net, x, y, _, _ = _case(name, "linf-box")
    pset = Perturbation(0.1, "linf", box)
    spec = margin_spec(torch.as_tensor(y), net.n_classes, torch.float64, "cpu")
    xt = torch.as_tensor(x)
    with torch.no_grad():
        ibp = interval_bounds(net, xt, pset, spec)
        others = [linear_bounds(net, xt, pset, spec, "constant"), crown_ibp_bounds(net, xt, pset, spec, "constant"),
                  relaxed_bounds(net, xt, pset, spec, "constant", 1), linear_bounds(net, xt, pset, spec, "constant", "lbp")]
    for o in others:
        np.testing.assert_allclose(o.lower.numpy(), ibp.lower.numpy(), rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(o.upper.numpy(), ibp.upper.numpy(), rtol=1e-9, atol=1e-8)
        for i in net.activation_indices:
            np.testing.assert_allclose(o.pre[i][0].numpy(), ibp.pre[i][0].numpy(), rtol=1e-9, atol=1e-8)
            np.testing.assert_allclose(o.pre[i][1].numpy(), ibp.pre[i][1].numpy(), rtol=1e-9, atol=1e-8)


def _forward_mode_lbp(net: Network, x: np.ndarray, eps: float, strategy: str):
    """LBP by eq. 17-18 of Lyu et al. 2021 in numpy float64 (MLP, l_inf ball, no box): the
    linear bounds W~ x + b~ of every pre-activation carried forward; returns the output bounds."""
    dense = [l for l in net.layers if isinstance(l, Dense)]
    acts = [l.activation for l in net.layers if isinstance(l, Act)]
    wl = wu = dense[0].weight.astype(np.float64)
    bl = bu = dense[0].bias.astype(np.float64)
    conc = lambda w, b, s: w @ x + b + s * eps * np.abs(w).sum(1)  # noqa: E731
    for act, layer in zip(acts, dense[1:]):
        lo, hi = conc(wl, bl, -1), conc(wu, bu, 1)
        ln = activation_lines(act, torch.tensor(lo)[None], torch.tensor(hi)[None], strategy)
        sl, tl, su, tu = (t[0].numpy() for t in (ln.lower_slope, ln.lower_icpt, ln.upper_slope, ln.upper_icpt))
        w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
        pos, neg = np.maximum(w, 0), np.minimum(w, 0)
        wl, wu = (pos * sl) @ wl + (neg * su) @ wu, (neg * sl) @ wl + (pos * su) @ wu
        bl, bu = (b + (pos * sl) @ bl + (neg * su) @ bu + pos @ tl + neg @ tu,
                  b + (neg * sl) @ bl + (pos * su) @ bu + neg @ tl + pos @ tu)
    return conc(wl, bl, -1), conc(wu, bu, 1)


@pytest.mark.parametrize("strategy", ["tight", "adaptive", "same-slope"])
@pytest.mark.parametrize("spec", ACTS)
def test_lbp_equals_forward_mode_reference(spec, strategy):
    net = _mlp(4, [3, 10, 9, 8, 4], spec)
    x = np.random.default_rng(4).uniform(0, 1, (2, 3))
    pset = Perturbation(0.2, "linf", None)
    eye = torch.eye(4, dtype=torch.float64).expand(2, 4, 4)
    with torch.no_grad():
        b = relaxed_bounds(net, torch.as_tensor(x), pset, eye, strategy, 1)
    for s in range(2):
        lo, hi = _forward_mode_lbp(net, x[s], 0.2, strategy)
        np.testing.assert_allclose(b.lower[s].numpy(), lo, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(b.upper[s].numpy(), hi, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("spec", ["relu", "tanh", "param_ramp(0.05,0.6)"])
def test_relaxed_crown_with_full_depth_is_crown(spec):
    net = _mlp(6, [4, 9, 9, 9, 3], spec)
    x = torch.as_tensor(np.random.default_rng(6).uniform(0, 1, (2, 4)))
    pset, eye = Perturbation(0.2, "l2", None), torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    with torch.no_grad():
        c = linear_bounds(net, x, pset, eye, "adaptive")
        r = relaxed_bounds(net, x, pset, eye, "adaptive", 3)
    np.testing.assert_allclose(r.lower.numpy(), c.lower.numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(r.upper.numpy(), c.upper.numpy(), rtol=1e-8, atol=1e-8)


# --------------------------------------------------------------------------------------------
# 3. trained tanh and sigmoid MLPs, all norms, registered methods

BOUND_METHODS = ["ibp", "crown", "crown-ibp", "lbp", "crown-lbp", "relaxed-crown"]


@functools.lru_cache(maxsize=None)
def _trained(kind: str):
    from lpbench.data import load_mnist

    ds = load_mnist("test")
    torch.manual_seed(0)
    act = torch.nn.Tanh() if kind == "tanh" else torch.nn.Sigmoid()
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 24), act, torch.nn.Linear(24, 24),
                              type(act)(), torch.nn.Linear(24, 10))
    xs, ys = torch.as_tensor(ds.images[1000:3000]), torch.as_tensor(ds.labels[1000:3000])
    opt = torch.optim.Adam(seq.parameters(), lr=3e-3)
    for step in range(150):
        idx = torch.randint(0, len(ys), (128,))
        loss = torch.nn.functional.cross_entropy(seq(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net = Network.from_torch(seq, (1, 28, 28), name=f"{kind}-mlp")
    return net, ds.images[:4].astype(np.float64), ds.labels[:4].astype(np.int64)


@pytest.mark.parametrize("norm, eps", [("linf", 0.01), ("l2", 0.3), ("l1", 1.5)])
@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_trained_s_shaped_mlp_verified_soundly(kind, norm, eps):
    net, x, y = _trained(kind)
    assert (net.logits64(x).argmax(1) == y).mean() >= 0.75  # it did learn
    pset = Perturbation(eps, norm)
    outs = verify(net, x.astype(np.float32), y, pset, BOUND_METHODS + ["pgd"],
                  options={"pgd": {"steps": 30, "restarts": 2}})
    by = {(o.method, o.sample): o for o in outs}
    verified = 0
    for s in range(len(y)):
        if net.logits64(x[s][None])[0].argmax() != y[s]:
            continue
        pts = sample_set(net, x[s], int(y[s]), pset, seed=s, n_uniform=60, n_vertices=16, neurons=6)
        logits = net.logits64(pts)
        marg = logits[:, [y[s]]] - logits
        keep = np.arange(10) != y[s]
        for m in BOUND_METHODS:
            o = by[m, s]
            _assert_within(marg[:, keep], o.margin_lower[keep], o.margin_upper[keep], f"{m} sample {s}")
            if o.status is Status.VERIFIED:
                verified += 1
                assert by["pgd", s].status is not Status.FALSIFIED
                assert marg[:, keep].min() > 0
    assert verified > 0  # the bounds are not vacuous


# --------------------------------------------------------------------------------------------
# 4. bad input


def _tiny(spec: str) -> tuple[Network, np.ndarray]:
    return _mlp(1, [3, 5, 3], spec), np.full((1, 3), 0.5, np.float32)


@pytest.mark.parametrize("method, spec", [("fast-lin", "tanh"), ("lp-greedy", "leaky_relu(0.1)"),
                                          ("lp-all", "sigmoid"), ("lp-last", "param_ramp(0.1,0.5)")])
def test_unsupported_activation_names_method_and_activation(method, spec):
    net, x = _tiny(spec)
    with pytest.raises(LpbenchError, match=rf"{method}.*{parse_activation(spec).name}"):
        verify(net, x, [0], Perturbation(0.1), [method])


def test_activation_without_lines_is_refused_by_line_methods_only():
    from lpbench.activations import _KINDS, register_activation

    register_activation("test_softsign", lambda z: z / (1 + z.abs()))
    try:
        net, x = _tiny("relu")
        net = Network(tuple(Act(parse_activation("test_softsign")) if isinstance(l, Act) else l for l in net.layers),
                      net.input_shape)
        for m in ["crown", "crown-ibp", "lbp", "crown-lbp", "relaxed-crown", "fast-lin"]:
            with pytest.raises(LpbenchError, match=rf"{m} does not support activation test_softsign"):
                verify(net, x, [0], Perturbation(0.1), [m])
        (o,) = verify(net, x, [0], Perturbation(0.1), ["ibp"])  # IBP needs monotonicity only
        assert np.isfinite(np.nan_to_num(o.margin_lower, nan=0.0)).all()
    finally:
        _KINDS.pop("test_softsign")


def test_milp_refuses_tanh_and_l2():
    net, x = _tiny("tanh")
    with pytest.raises(LpbenchError, match="ReLU.*tanh"):
        verify(net, x, [0], Perturbation(0.1), ["milp"])
    net, x = _tiny("relu")
    with pytest.raises(LpbenchError, match="milp.*l2"):
        verify(net, x, [0], Perturbation(0.1, "l2"), ["milp"])


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_linf_only_method_refuses_other_norms(norm):
    name = "test-linf-only-ibp"
    register(Method(name, REGISTRY["ibp"].run, "bound", "IBP declared l_inf only", norms=("linf",)))
    try:
        net, x = _tiny("relu")
        with pytest.raises(LpbenchError, match=rf"{name}.*linf.*{norm}"):
            verify(net, x, [0], Perturbation(0.1, norm), [name])
        assert verify(net, x, [0], Perturbation(0.1), [name])[0].margin_lower is not None
    finally:
        REGISTRY.pop(name)


def test_bad_strategies_options_and_activation_parameters():
    net, x = _tiny("relu")
    with pytest.raises(ValueError, match="strategy"):
        verify(net, x, [0], Perturbation(0.1), ["crown"], options={"crown": {"strategy": "steep"}})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        verify(net, x, [0], Perturbation(0.1), ["crown"], options={"crown": {"strategy": "fixed(1.5)"}})
    with pytest.raises(ValueError, match="unknown option"):
        verify(net, x, [0], Perturbation(0.1), ["lbp"], options={"lbp": {"v": 3}})
    with pytest.raises(ValueError, match="v >= 1"):
        verify(net, x, [0], Perturbation(0.1), ["relaxed-crown"], options={"relaxed-crown": {"v": 0}})
    with pytest.raises(ValueError, match="param_ramp"):
        verify(_tiny("param_ramp(0.1,0.5)")[0], x, [0], Perturbation(0.1), ["crown"],
               options={"crown": {"strategy": "fixed(0.2)"}})
    for bad in ["leaky_relu(-0.5)", "leaky_relu(2)", "param_ramp(0.1,0)", "param_ramp(0.1)", "swish"]:
        with pytest.raises(ModelError):
            parse_activation(bad)
    with pytest.raises(ModelError, match="r"):
        parse_activation("param_ramp(0.1,0.5)").with_r(np.array([0.5, -1.0]))


def test_user_fixed_slopes_interpolate_between_tight_and_one():
    """fixed(0) = tight and fixed(1) = one-lb exactly (ReLU, leaky ReLU)."""
    for spec in ["relu", "leaky_relu(0.1)"]:
        net = _mlp(2, [4, 10, 10, 3], spec)
        x, eye = torch.rand(2, 4, dtype=torch.float64), torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
        pset = Perturbation(0.2)
        with torch.no_grad():
            for a, b in [("fixed(0)", "tight"), ("fixed(1)", "one-lb")]:
                assert torch.equal(linear_bounds(net, x, pset, eye, a).lower, linear_bounds(net, x, pset, eye, b).lower)


# --------------------------------------------------------------------------------------------
# 5. neuron statuses and radii


def test_neuron_status_counts_partition_the_layer():
    net = _mlp(3, [4, 30, 30, 3], "param_ramp(0.05,0.6)")
    x = np.random.default_rng(0).uniform(0, 1, (5, 4))
    rows = neuron_status(net, x, Perturbation(0.1), "ibp")
    pre = interval_bounds(net, torch.as_tensor(x), Perturbation(0.1), torch.eye(3, dtype=torch.float64)
                          .expand(5, 3, 3)).pre
    assert [r["layer"] for r in rows] == list(net.activation_indices)
    for r in rows:
        assert r["dead"] + r["unstable"] + r["alive"] == pytest.approx(r["neurons"])
        assert sum(r[f"ramp {s}"] for s in PARAM_RAMP_STATUSES) == pytest.approx(r["neurons"])
        lo, hi = pre[r["layer"]]
        assert r["dead"] == pytest.approx(float((hi <= 0).sum(1).double().mean()))
        rr = torch.as_tensor(net.layers[r["layer"]].activation.r)
        assert r["ramp right dead"] == pytest.approx(float((lo >= rr).sum(1).double().mean()))
        assert r["dead_pct"] == pytest.approx(100 * r["dead"] / r["neurons"])
    crown = neuron_status(net, x, Perturbation(0.1), "crown")
    assert all(c["unstable"] <= i["unstable"] for c, i in zip(crown[1:], rows[1:]))  # tighter bounds


def test_targeted_radii_bracket_the_untargeted_one_and_are_certificates():
    from lpbench.radius_targets import TARGETS, certified_radius

    net = _mlp(8, [6, 16, 16, 5], "tanh", bias=0.1)
    x = np.random.default_rng(8).uniform(0.2, 0.8, 6).astype(np.float32)
    y = int(net.logits64(x[None])[0].argmax())
    res = {t: certified_radius(net, x, y, "crown", target=t, hi=2.0, tol=1e-4) for t in TARGETS}
    unt = res["untargeted"][0].radius
    assert unt > 0
    for t in TARGETS[1:]:
        r, cls = res[t]
        assert cls != y and r.radius >= unt - 1e-4  # untargeted = the worst target
        (o,) = verify(net, x[None], [y], Perturbation(r.radius), ["crown"])
        assert o.margin_lower[cls] > 0  # the reported radius is itself certified for the target
    assert res["runner-up"][1] == int(np.argsort(net.logits64(x[None])[0])[-2])
    assert res["least-likely"][1] == int(net.logits64(x[None])[0].argmin())


# --------------------------------------------------------------------------------------------
# 6. command line


def _cli(monkeypatch, capsys, *args):
    from helpers import run_cli
    return run_cli(monkeypatch, capsys, *args)


def test_cli_neurons_and_targeted_radius(monkeypatch, capsys):
    import json

    code, out, _ = _cli(monkeypatch, capsys, "neurons", "NOR-MLP-B", "--eps", "0.02", "--samples", "0:4", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["layer"] for r in rows] == [2, 4]
    assert all(r["dead"] + r["unstable"] + r["alive"] == pytest.approx(100) for r in rows)
    code, out, _ = _cli(monkeypatch, capsys, "neurons", "NOR-MLP-B", "--eps", "0.02", "--samples", "0:4")
    assert code == 0 and "unstable" in out and "relu" in out
    code, out, _ = _cli(monkeypatch, capsys, "radius", "NOR-MLP-B", "--methods", "fast-lin,crown", "--samples", "0:1",
                        "--target", "runner-up", "--norm", "l2", "--json")
    recs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["method"] for r in recs] == ["fast-lin", "crown"]
    assert all(r["target_class"] is not None and 0 < r["radius"] <= r["hi"] for r in recs)


@pytest.mark.parametrize("args", [["neurons", "NOR-MLP-B", "--eps", "-1"],
                                  ["radius", "NOR-MLP-B", "--methods", "nosuch"],
                                  ["radius", "NOR-MLP-B", "--hi", "-2", "--samples", "0:1"]])
def test_cli_bad_input_is_one_line_error(monkeypatch, capsys, args):
    code, out, err = _cli(monkeypatch, capsys, *args)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err

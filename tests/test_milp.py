"""The exact MILP of Tjeng, Xiao & Tedrake 2019: formulation, both backends, verdicts, bad input.

* Random tiny networks (2-6 inputs, 1-2 hidden layers of 2-4 units): the MILP optimum of every
  margin equals brute-force enumeration of activation patterns (one LP per pattern, scipy), on
  HiGHS and CBC, for every bound tightening; LP-ALL margin <= MILP optimum <= margin at the PGD point.
* Zoo samples (LPD-MLP-B-0.1 at 0.1, NOR-MLP-B at 0.02): no sample LP-ALL verifies is falsified by
  the MILP; HiGHS and CBC verdicts agree; counterexamples re-check.
* Bad input: a non-ReLU activation, time limits <= 0, bounds that make the MILP infeasible.
"""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import lpbench.lp.methods  # noqa: F401  (registers lp-all)
import lpbench.milp.methods  # noqa: F401  (registers milp)
from helpers import random_relu_net
from lpbench.activations import parse_activation, register_activation
from lpbench.attacks.pgd import pgd_attack, recheck
from lpbench.errors import LpbenchError
from lpbench.lp.drivers import Sessions, cheap_bounds, lp_layers, solve_sample
from lpbench.methods import margin_spec, verify
from lpbench.milp import TIGHTENINGS, milp, tightened_bounds, verify_sample
from lpbench.milp.formulation import DEFAULT_TIGHTENING
from lpbench.network import Act, Dense, Network
from lpbench.problem import Perturbation, Status
from lpbench.solvers import get_backend

RELU = Act(parse_activation("relu"))
BACKENDS = ("highs", "pulp")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    n_in, depth = int(rng.integers(2, 7)), int(rng.integers(1, 3))
    widths = [n_in] + [int(rng.integers(2, 5)) for _ in range(depth)] + [3]
    return random_relu_net(rng, widths, f"tiny{seed}")


def _brute_force(net: Network, x: np.ndarray, label: int, j: int, pset: Perturbation) -> float:
    """min f_label - f_j over the box by enumerating activation patterns (one LP per pattern)."""
    dense = [layer for layer in net.layers if isinstance(layer, Dense)]
    hidden = [d.weight.shape[0] for d in dense[:-1]]
    lo, hi = np.maximum(x - pset.eps, 0.0), np.minimum(x + pset.eps, 1.0)
    best = np.inf
    for pattern in itertools.product((0.0, 1.0), repeat=sum(hidden)):
        a_map, b_map, rows, rhs, k = np.eye(x.size), np.zeros(x.size), [], [], 0
        for d, width in zip(dense[:-1], hidden):
            w, b = d.weight.astype(np.float64), d.bias.astype(np.float64)
            za, zb = w @ a_map, w @ b_map + b
            act = np.array(pattern[k:k + width])
            k += width
            sign = np.where(act > 0, -1.0, 1.0)  # active: -z <= 0, inactive: z <= 0
            rows.append(sign[:, None] * za)
            rhs.append(-sign * zb)
            a_map, b_map = act[:, None] * za, act * zb
        w, b = dense[-1].weight.astype(np.float64), dense[-1].bias.astype(np.float64)
        c = (w[label] - w[j]) @ a_map
        c0 = (w[label] - w[j]) @ b_map + b[label] - b[j]
        res = linprog(c, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), bounds=list(zip(lo, hi)),
                      method="highs")
        if res.status == 0:
            best = min(best, res.fun + c0)
    return best


def _sample(net: Network, seed: int) -> tuple[np.ndarray, int, Perturbation]:
    rng = np.random.default_rng(seed + 100)
    x = rng.uniform(0.2, 0.8, net.input_shape[0])
    label = int(np.argmax(net.logits64(x[None])[0]))
    return x, label, Perturbation(float(rng.uniform(0.05, 0.3)))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("backend", BACKENDS)
def test_milp_optimum_equals_brute_force(seed, backend):
    net = _net(seed)
    x, label, pset = _sample(net, seed)
    solver = get_backend(backend)
    for tightening in TIGHTENINGS:
        pre, _ = tightened_bounds(net, x, label, pset, tightening, get_backend("highs"))
        model = milp(net, x, pset, pre, tightening)
        assert pickle.loads(pickle.dumps(model)).rel.lp.integrality.sum() == model.unstable
        for j in range(net.n_classes):
            if j == label:
                continue
            res = solver.solve_milp(model.rel.lp, *model.margin(label, j), time_limit=30)
            assert res.status.value == "optimal"
            exact = _brute_force(net, x, label, j, pset)
            assert res.objective == pytest.approx(exact, abs=1e-6)
            assert res.dual_bound <= exact + 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_convex_relus_need_no_binary(backend):
    """A last-layer ReLU whose output enters the margin with a coefficient >= 0 loses its binary
    in the target's MILP (``MILP.target_lp``): the optimum still equals brute force, on networks
    where that happens to many of them; a network whose last ReLU feeds two affine layers keeps
    every binary (its outputs have rows of their own)."""
    solver, relaxed = get_backend(backend), 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        net = random_relu_net(rng, [3, 4, int(rng.integers(4, 7)), 3], f"convex{seed}")
        x, label, pset = _sample(net, seed)
        pre, _ = tightened_bounds(net, x, label, pset, "interval")
        model = milp(net, x, pset, pre, "interval")
        for j in range(net.n_classes):
            if j == label:
                continue
            c, c0 = model.margin(label, j)
            lp = model.target_lp(c)
            relaxed += int(model.rel.lp.integrality.sum() - lp.integrality.sum())
            res = solver.solve_milp(lp, c, c0, time_limit=30)
            assert res.status.value == "optimal"
            assert res.objective == pytest.approx(_brute_force(net, x, label, j, pset), abs=1e-6)
    assert relaxed >= 10
    twice = Network(net.layers + (Dense(np.eye(3, dtype=np.float32), np.zeros(3, np.float32)),), net.input_shape,
                    "affine-tail")
    model = milp(twice, x, pset, tightened_bounds(twice, x, label, pset, "interval")[0])
    c, _ = model.margin(label, (label + 1) % 3)
    assert model.rel.convex_outputs(c) is None
    assert model.target_lp(c).integrality.sum() == model.unstable


@pytest.mark.parametrize("seed", range(8))
def test_cutoff_prunes_only_above_it(seed):
    """HiGHS with a cutoff: below the optimum it proves "nothing below the cutoff" (a dual bound
    equal to the cutoff, never above the brute-force optimum); above it, it still finds the optimum."""
    net = _net(seed)
    x, label, pset = _sample(net, seed)
    solver = get_backend("highs")
    pre, _ = tightened_bounds(net, x, label, pset, "interval")
    model = milp(net, x, pset, pre, "interval")
    for j in (j for j in range(net.n_classes) if j != label):
        exact = _brute_force(net, x, label, j, pset)
        low = solver.solve_milp(model.rel.lp, *model.margin(label, j), time_limit=30, cutoff=exact - 0.05)
        assert low.dual_bound == pytest.approx(exact - 0.05) and low.dual_bound <= exact
        assert not low.objective < exact - 1e-6  # no point below the true minimum
        high = solver.solve_milp(model.rel.lp, *model.margin(label, j), time_limit=30, cutoff=exact + 0.05)
        assert high.status.value == "optimal" and high.objective == pytest.approx(exact, abs=1e-6)
        assert high.dual_bound <= exact + 1e-6


@pytest.mark.parametrize("seed", range(8))
def test_lp_all_below_milp_below_pgd(seed):
    net = _net(seed)
    x, label, pset = _sample(net, seed)
    xt = torch.as_tensor(x[None])
    y = torch.tensor([label])
    cb = cheap_bounds(net, xt, pset, margin_spec(y, net.n_classes, xt.dtype, xt.device))
    with Sessions(get_backend("highs")) as sessions:
        lp_all = solve_sample(net, x, label, pset, {i: (lo[0], hi[0]) for i, (lo, hi) in cb.pre.items()},
                              lp_layers(net, "all"), sessions).margins
    cand = pgd_attack(net, xt.float(), y, pset).numpy()[0]
    _, pgd_margins, _ = recheck(net, cand, x, label, pset)
    pre, _ = tightened_bounds(net, x, label, pset, "lp-greedy")
    model = milp(net, x, pset, pre, "lp-greedy")
    for j in range(net.n_classes):
        if j == label:
            continue
        opt = get_backend("highs").solve_milp(model.rel.lp, *model.margin(label, j), time_limit=30).objective
        assert lp_all[j] <= opt + 1e-6
        assert opt <= pgd_margins[j] + 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_conv_milp_equals_brute_force_on_the_dense_twin(seed):
    """A conv layer is encoded through its sparse matrix: the MILP of a tiny conv network equals
    brute force on the same network written with a dense layer."""
    from lpbench.network import Conv2d, Flatten
    rng = np.random.default_rng(seed)
    conv = Conv2d((1.5 * rng.normal(size=(2, 1, 2, 2))).astype(np.float32),
                  (0.3 * rng.normal(size=2)).astype(np.float32), stride=1, padding=0)
    head = Dense((1.5 * rng.normal(size=(3, 8))).astype(np.float32), (0.3 * rng.normal(size=3)).astype(np.float32))
    net = Network((conv, RELU, Flatten(), head), (1, 3, 3), "tinyconv")
    twin = Network((Dense(conv.to_sparse((1, 3, 3)).toarray().astype(np.float32), np.repeat(conv.bias, 4)),
                    RELU, head), (9,), "tinyconv-dense")
    x = rng.uniform(0.2, 0.8, (1, 3, 3))
    label = int(np.argmax(net.logits64(x[None])[0]))
    assert np.allclose(net.logits64(x[None]), twin.logits64(x.reshape(1, 9)))
    pset = Perturbation(0.2)
    pre, _ = tightened_bounds(net, x, label, pset, "lp-all", get_backend("highs"))
    model = milp(net, x, pset, pre, "lp-all")
    for j in range(3):
        if j != label:
            res = get_backend("highs").solve_milp(model.rel.lp, *model.margin(label, j), time_limit=30)
            assert res.objective == pytest.approx(_brute_force(twin, x.ravel(), label, j, pset), abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_joint_milp_equals_the_smallest_brute_force_margin(seed):
    """One MILP over all targets (binaries select the target) has the optimum min_j of the
    per-target optima, on HiGHS and CBC."""
    from dataclasses import replace as dc_replace

    from lpbench.milp.joint import joint_milp
    net = _net(seed)
    x, label, pset = _sample(net, seed)
    pset = Perturbation(pset.eps * 2)  # a larger ball: more unstable neurons, negative margins too
    pre, _ = tightened_bounds(net, x, label, pset, "lp-greedy")
    model = milp(net, x, pset, pre, "lp-greedy")
    others = [j for j in range(net.n_classes) if j != label]
    with get_backend("highs").open(dc_replace(model.rel.lp, integrality=None)) as s:
        box = [(j, s.minimize(*model.margin(label, j)).certified_bound,
                -s.minimize(*(-v for v in model.margin(label, j))).certified_bound) for j in others]
    full, obj = joint_milp(model, label, box)
    exact = min(_brute_force(net, x, label, j, pset) for j in others)
    for b in BACKENDS:
        res = get_backend(b).solve_milp(full, obj, 0.0, time_limit=30)
        # the integrality tolerance (1e-6) on a selector s_j relaxes its row by 1e-6 M_j: the
        # feasible set only grows, so the optimum may sit a little below, never above
        assert exact - 1e-5 <= res.objective <= exact + 1e-6


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("targets", ["each", "joint"])
def test_verdicts_on_tiny_networks_are_sound(seed, targets):
    net = _net(seed)
    x, label, pset = _sample(net, seed)
    verdicts = {b: verify_sample(net, x, label, pset, get_backend(b), 30, targets=targets) for b in BACKENDS}
    per_target = {j: _brute_force(net, x, label, j, pset) for j in range(net.n_classes) if j != label}
    exact = min(per_target.values())
    for v in verdicts.values():
        for t in v.targets:  # a target's safe bound (from its LP relaxation or the MILP) is sound
            assert t.safe_bound <= per_target[t.target] + 1e-9
            if t.solver_status == "lp relaxation":
                assert t.status is Status.VERIFIED and t.safe_bound > 0 and t.nodes == 0
        assert v.status is (Status.VERIFIED if exact > 1e-4 else Status.FALSIFIED) or abs(exact) <= 1e-4
        if v.status is Status.FALSIFIED:
            assert recheck(net, v.counterexample, x, label, pset)[2]
    assert verdicts["highs"].status is verdicts["pulp"].status
    plain = verify_sample(net, x, label, pset, get_backend("highs"), 30, targets=targets, cutoff=False,
                          clock="wall")
    assert plain.status is verdicts["highs"].status
    assert (verdicts["highs"].clock, plain.clock) == ("cpu", "wall")


@pytest.mark.parametrize("seed", range(4))
def test_cheap_verdicts_before_the_milp_are_sound_and_change_nothing(seed):
    """A sample IBP, CROWN or LP-GREEDY verifies is verified without a MILP, with those bounds
    (below the brute-force minimum) as its margins; every verdict equals the MILP-only run's;
    ``progress`` is called once per sample."""
    net = _net(seed)
    rng = np.random.default_rng(seed + 200)
    xs = rng.uniform(0.2, 0.8, (6, net.input_shape[0]))
    labels = net.logits64(xs).argmax(1)
    pset = Perturbation(0.02 if seed % 2 else 0.1)
    told = []  # the progress callback hears of every sample once, however it was decided
    runs = {flag: verify(net, xs, labels, pset, ["milp"], options={"milp": {"time_limit": 30, "cheap": flag}},
                         progress=told.append)
            for flag in (True, False)}
    assert told == [1] * (2 * len(labels))
    for with_cheap, plain in zip(runs[True], runs[False]):
        assert with_cheap.status is plain.status
        if with_cheap.stats["decided_by"] in ("ibp", "crown", "lp-greedy"):
            assert with_cheap.status is Status.VERIFIED
            label = int(labels[with_cheap.sample])
            for j in range(net.n_classes):
                if j != label:
                    # the brute force's LPs are exact only to their feasibility tolerance (~1e-7)
                    assert 0 < with_cheap.margin_lower[j] <= _brute_force(net, xs[with_cheap.sample], label, j,
                                                                          pset) + 1e-6
    assert any(o.stats["decided_by"] != "milp" for o in runs[True]) or seed % 2 == 0


@pytest.fixture(scope="module")
def mnist():
    from lpbench.data import load_dataset
    return load_dataset("mnist", "test")


@pytest.mark.parametrize("model,eps,n,limit,backends", [
    ("LPD-MLP-B-0.1", 0.1, 5, 20.0, BACKENDS), ("NOR-MLP-B", 0.02, 5, 5.0, ("highs",))])
def test_zoo_milp_against_lp_all(mnist, model, eps, n, limit, backends):
    from lpbench.zoo import load_model
    net, pset = load_model(model), Perturbation(eps)
    images, labels = mnist.images[:n], mnist.labels[:n]
    lp_all = verify(net, images, labels, pset, ["lp-all"])
    by = {b: verify(net, images, labels, pset, ["milp"],
                    options={"milp": {"backend": b, "time_limit": limit}}) for b in backends}
    for b, outs in by.items():
        for lp_out, out in zip(lp_all, outs):
            assert out.status is not Status.ERROR, out.stats
            if lp_out.status is Status.VERIFIED:
                assert out.status is not Status.FALSIFIED
            if out.status is Status.FALSIFIED:
                assert recheck(net, out.counterexample, images[out.sample], int(labels[out.sample]), pset)[2]
            if out.stats["decided_by"] == "milp":
                assert out.stats["tightening"] == DEFAULT_TIGHTENING and out.stats["tightening_s"] >= 0
    if len(by) == 2:
        for a, b in zip(*by.values()):
            decided = (Status.VERIFIED, Status.FALSIFIED)
            if a.status in decided and b.status in decided:
                assert a.status is b.status


def test_non_relu_activation_is_refused():
    register_activation("milp_test_tanh", torch.tanh, piecewise_linear=False)
    act = Act(parse_activation("milp_test_tanh"))
    net = Network((Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)), act,
                   Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32))), (2,), "tanh")
    with pytest.raises(LpbenchError, match="supports ReLU"):
        verify(net, np.full((1, 2), 0.5, np.float32), [0], Perturbation(0.1), ["milp"])
    with pytest.raises(LpbenchError, match="supports ReLU"):
        milp(net, np.full(2, 0.5), Perturbation(0.1), {1: (np.zeros(2), np.ones(2))})


@pytest.mark.parametrize("limit", [0, -1, 0.0, float("nan")])
def test_bad_time_limits(limit):
    net = _net(0)
    x, label, pset = _sample(net, 0)
    with pytest.raises(ValueError, match="time_limit|time limit"):
        verify(net, x[None].astype(np.float32), [label], pset, ["milp"], options={"milp": {"time_limit": limit}})
    with pytest.raises(ValueError, match="time limit"):
        verify_sample(net, x, label, pset, get_backend("highs"), limit)
    with pytest.raises(ValueError, match="unknown option"):
        verify(net, x[None].astype(np.float32), [label], pset, ["milp"], options={"milp": {"bogus": 1}})
    with pytest.raises(ValueError, match="clock"):
        verify(net, x[None].astype(np.float32), [label], pset, ["milp"], options={"milp": {"clock": "gpu"}})
    with pytest.raises(ValueError, match="clock"):
        verify_sample(net, x, label, pset, get_backend("highs"), 10, clock="gpu")


def test_the_cpu_clock_counts_solver_subprocesses():
    """CBC solves in a child process: the CPU clock of a sample's budget must see that time."""
    import subprocess
    import sys

    from lpbench.milp.verify import CLOCKS
    t0 = CLOCKS["cpu"]()
    out = subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                          "while time.process_time() - t < 0.3: pass\nprint(time.process_time() - t)"],
                         capture_output=True, text=True, check=True)
    spent = float(out.stdout)
    assert CLOCKS["cpu"]() - t0 >= spent - 0.01


def test_a_cpu_time_limit_stops_the_search_with_a_sound_bound():
    """HiGHS with a CPU-time limit far below what the search needs ends with a time-limit status
    (from the interrupt callback, not HiGHS's wall-clock backstop) and a dual bound below the
    optimum that the unlimited search proves."""
    rng = np.random.default_rng(0)
    net = random_relu_net(rng, [10, 20, 20, 3], "cpu-clock")
    x = rng.uniform(0.3, 0.7, 10)
    label = int(np.argmax(net.logits64(x[None])[0]))
    pset = Perturbation(0.3)
    pre, _ = tightened_bounds(net, x, label, pset, "interval")
    model = milp(net, x, pset, pre, "interval")
    c, c0 = model.margin(label, (label + 1) % 3)
    full = get_backend("highs").solve_milp(model.rel.lp, c, c0, time_limit=60)
    assert full.status.value == "optimal" and full.nodes > 10  # needs a real search
    cut = get_backend("highs").solve_milp(model.rel.lp, c, c0, time_limit=0.02, cpu_time=True)
    assert cut.status.value == "time_limit" and "CPU" in cut.message
    assert cut.dual_bound <= full.objective + 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_inconsistent_bounds_are_an_error_never_verified(backend):
    net = _net(1)
    x, label, pset = _sample(net, 1)
    pre, _ = tightened_bounds(net, x, label, pset, "interval")
    first = net.activation_indices[0]
    hi = pre[first][1]
    # bounds above every reachable value of the first layer: no real trajectory fits
    bad = dict(pre)
    bad[first] = (hi + 1.0, hi + 2.0)
    model = milp(net, x, pset, bad, "broken")
    v = verify_sample(net, x, label, pset, get_backend(backend), 10, model=model)
    assert v.status is Status.ERROR
    assert all(t.status is Status.ERROR for t in v.targets)
    assert "exclude x" in v.targets[0].message and "broken" in v.targets[0].message


def test_an_infeasible_milp_is_an_error_with_context():
    """Bounds that hold at x can still be wrong elsewhere; a MILP the solver calls infeasible is
    then reported, with the tightening and the solver's words, and never counted as verified."""
    from lpbench.milp.verify import _judge
    from lpbench.solvers.base import MILPResult, MILPStatus
    net = _net(1)
    x, label, pset = _sample(net, 1)
    pre, _ = tightened_bounds(net, x, label, pset, "interval")
    model = milp(net, x, pset, pre, "broken")
    res = MILPResult(MILPStatus.INFEASIBLE, message="Infeasible")
    target, point = _judge(net, x, label, pset, model, (label + 1) % 3, res, 1e-6)
    assert target.status is Status.ERROR and point is None
    assert "infeasible" in target.message and "broken" in target.message and "Infeasible" in target.message


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backend", BACKENDS)
def test_min_distortion_brackets_the_brute_force_answer(seed, backend):
    from lpbench.milp.distortion import min_distortion
    net = _net(seed)
    x, label, _ = _sample(net, seed)
    d = min_distortion(net, x, label, get_backend(backend), eps_max=0.5, time_limit=30)
    assert 0 <= d.lower <= d.upper
    others = [j for j in range(net.n_classes) if j != label]
    if d.lower > 1e-6:  # nothing adversarial strictly inside the lower bound
        inner = Perturbation(d.lower * (1 - 1e-4))
        assert min(_brute_force(net, x, label, j, inner) for j in others) >= -1e-6
    if math.isfinite(d.upper):
        assert np.abs(d.point - x).max() <= d.upper + 1e-12
        logits = net.logits64(d.point[None])[0]
        assert np.delete(logits, label).max() > logits[label]
        assert d.exact and d.upper - d.lower <= 1e-4 * max(1.0, d.upper)
    else:  # no adversarial point within eps_max
        assert min(_brute_force(net, x, label, j, Perturbation(0.5)) for j in others) >= -1e-6


def test_table1_milp_columns_bracket_the_robust_error(tmp_path):
    """The MILP's two Table 1 columns: lower = misclassified + falsified <= upper = not verified;
    with the limit reached by no sample they are equal, and they sit between PGD and LP-ALL."""
    import lpbench
    from lpbench.experiments.table1 import Row
    rows = [Row("LPD-MLP-B-0.1", 0.1)]
    opts = {"pgd": {"steps": 20, "restarts": 1}, "milp": {"time_limit": 60.0},
            "lp-all": {"cascade": False}}
    df = lpbench.table1(12, ["pgd", "lp-all", "milp"], rows, store=tmp_path / "t.sqlite", options=opts)
    r = df.iloc[0]
    assert r.conflicts == 0
    assert r.test_error_pct <= r.milp_lower_pct <= r.milp_upper_pct <= r.lp_all_upper_pct
    assert r.pgd_lower_pct <= r.milp_lower_pct
    assert r.milp_timeouts == 0 and r.milp_lower_pct == r.milp_upper_pct


@pytest.mark.parametrize("seed", range(8))
def test_conditioned_bounds_decide_soundly(seed, monkeypatch):
    """Every target that reaches a MILP gets the conditioned path at once (QUICK_S ~ 0): its
    verdicts agree with brute force and its recorded safe bound stays a lower bound."""
    import lpbench.milp.verify as mv
    monkeypatch.setattr(mv, "QUICK_S", 1e-4)
    net = _net(100 + seed)
    x, label, pset = _sample(net, 100 + seed)
    per_target = {j: _brute_force(net, x, label, j, pset) for j in range(net.n_classes) if j != label}
    v = verify_sample(net, x, label, pset, get_backend("highs"), 30, tightening="interval")
    for t in v.targets:
        assert t.safe_bound <= per_target[t.target] + 1e-9
        if t.status is Status.VERIFIED:
            assert per_target[t.target] > -1e-9
    exact = min(per_target.values())
    assert v.status is (Status.VERIFIED if exact > 1e-4 else Status.FALSIFIED) or abs(exact) <= 1e-4
    if v.status is Status.FALSIFIED:
        assert recheck(net, v.counterexample, x, label, pset)[2]


@pytest.mark.parametrize("rebuild_every", [1, 10])
def test_conditional_bounds_hold_on_the_counterexample_region(monkeypatch, rebuild_every):
    """Points of the set where target j beats the label lie inside the conditioned bounds, with
    the relaxation rebuilt after every neuron or every tenth, for as many rounds as they go on."""
    import lpbench.milp.conditional as conditional
    from lpbench.milp.conditional import conditional_bounds
    monkeypatch.setattr(conditional, "REBUILD_EVERY", rebuild_every)
    hits = 0
    for seed in range(40):
        net = _net(200 + seed)
        x, label, pset = _sample(net, 200 + seed)
        pre, _ = tightened_bounds(net, x, label, pset, "interval")
        rng = np.random.default_rng(seed)
        pts = np.clip(x + rng.uniform(-pset.eps, pset.eps, size=(4000, x.size)), 0, 1)
        logits = net.logits64(pts)
        for j in range(net.n_classes):
            if j == label:
                continue
            region = pts[logits[:, j] >= logits[:, label]]
            if not len(region):
                continue
            cond = conditional_bounds(net, x, label, j, pset, pre, get_backend("highs"), rounds=20)
            for i, (lo, hi) in cond.pre.items():
                z = net.forward(torch.as_tensor(region), upto=i).numpy().reshape(len(region), -1)
                assert (z >= lo.ravel() - 1e-9).all() and (z <= hi.ravel() + 1e-9).all()
            hits += 1
    assert hits >= 5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("integrality", [None, [False, False]])
def test_a_milp_without_integer_columns_reports_its_optimum_as_the_bound(backend, integrality):
    """min x + 2 y + 3 over x in [1, 2], y in [0.5, 1], x + y >= 2 (optimum 5.5 at x = 1.5, y = 0.5):
    with no integer column HiGHS solves an LP and leaves its MIP bound at 0, which must not pass
    for the dual bound (it made an exact distortion bracket [0, d])."""
    from lpbench.solvers.base import LinearProgram, MILPStatus
    import scipy.sparse as sp
    prog = LinearProgram(sp.csr_matrix([[1.0, 1.0]]), np.array([2.0]), np.array([np.inf]),
                         np.array([1.0, 0.5]), np.array([2.0, 1.0]),
                         None if integrality is None else np.array(integrality))
    res = get_backend(backend).solve_milp(prog, np.array([1.0, 2.0]), 3.0, time_limit=30)
    assert res.status is MILPStatus.OPTIMAL
    assert res.objective == pytest.approx(5.5) and res.dual_bound == pytest.approx(5.5)

class _CallsEpsMILPsInfeasible:
    """A HiGHS backend that wrongly reports every closest-adversarial-example MILP (objective:
    the eps column alone) infeasible, and solves everything else for real."""

    def __init__(self):
        self.real = get_backend("highs")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def solve_milp(self, lp, c, c0=0.0, time_limit=None, **kw):
        from lpbench.solvers.base import MILPResult, MILPStatus
        if c[-1] == 1.0 and np.count_nonzero(c) == 1:
            return MILPResult(MILPStatus.INFEASIBLE, message="injected")
        return self.real.solve_milp(lp, c, c0, time_limit, **kw)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps_max", [0.02, 0.5])
def test_min_distortion_takes_no_infeasible_claim_on_the_solver_s_word(seed, eps_max):
    """A target whose distortion MILP comes back infeasible bounds the distortion by eps_max only
    once its margin MILP over the eps_max ball proves the margin positive: with the solver
    wrongly calling every target infeasible, the lower end never passes the real distortion, and
    eps_max is claimed exactly when brute force finds every target safe within it."""
    from lpbench.milp.distortion import min_distortion
    net = _net(seed)
    x, label, _ = _sample(net, seed)
    real = min_distortion(net, x, label, get_backend("highs"), eps_max=eps_max, time_limit=30)
    faulty = min_distortion(net, x, label, _CallsEpsMILPsInfeasible(), eps_max=eps_max, time_limit=30)
    assert faulty.lower <= real.lower + 1e-9 and faulty.upper == math.inf
    safe = all(_brute_force(net, x, label, j, Perturbation(eps_max)) > 1e-6
               for j in range(net.n_classes) if j != label)
    assert faulty.exact is safe and (faulty.lower == eps_max) is safe


@pytest.mark.parametrize("rounds", [0, 20])
def test_split_search_decides_every_target_as_brute_force_does(monkeypatch, rounds):
    """The split search from interval bounds on tiny networks, with its conditioned bounds (20
    rounds) or without them (0: it then has to split down to exact LPs): every target it
    verifies has a positive brute-force minimum, every one it falsifies a re-checked point and a
    negative minimum; nothing is left open unless the minimum is a tie at 0."""
    import time
    import lpbench.milp.split as split_mod
    from lpbench.milp.split import split_search
    monkeypatch.setattr(split_mod, "NODE_ROUNDS", rounds)
    nodes = []
    for seed in range(16):
        net = _net(300 + seed)
        x, label, pset = _sample(net, 300 + seed)
        pre, _ = tightened_bounds(net, x, label, pset, "interval")
        for j in (j for j in range(net.n_classes) if j != label):
            exact = _brute_force(net, x, label, j, pset)
            found = split_search(net, x, label, j, pset, pre, get_backend("highs"), time.perf_counter() + 60,
                                 time.perf_counter)
            nodes.append(found.nodes)
            if found.status is Status.VERIFIED:
                assert exact > -1e-9
            elif found.status is Status.FALSIFIED:
                assert exact < 0 and recheck(net, found.point, x, label, pset)[2]
            else:
                assert found.status is Status.UNKNOWN and abs(exact) <= 1e-6
            assert (found.status is Status.VERIFIED) == (exact > 1e-6) or abs(exact) <= 1e-6
    assert max(nodes) >= 3 or rounds  # without conditioned bounds some searches split


class _MILPsTimeOut:
    """A HiGHS backend whose every MILP ends at its time limit with nothing found."""

    def __init__(self):
        self.real = get_backend("highs")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def solve_milp(self, lp, c, c0=0.0, time_limit=None, **kw):
        from lpbench.solvers.base import MILPResult, MILPStatus
        return MILPResult(MILPStatus.TIME_LIMIT, message="injected")


@pytest.mark.parametrize("bab, decider", [(False, "split search"), (True, "branch and bound")])
def test_the_searches_decide_what_the_milps_leave_open_inside_verify(bab, decider):
    """With every MILP timing out, verify_sample hands the targets its LPs leave open to the
    branch and bound with bound propagation (``bab``, first on dense networks, see test_bab.py)
    or, without it, to the split search; its verdicts equal brute force's, and some of them came
    from that search."""
    found = 0
    for seed in range(12):
        net = _net(400 + seed)
        x, label, pset = _sample(net, 400 + seed)
        v = verify_sample(net, x, label, pset, _MILPsTimeOut(), 60, tightening="interval",
                          lp_backend=get_backend("highs"), bab=bab)
        exact = min(_brute_force(net, x, label, j, pset) for j in range(net.n_classes) if j != label)
        found += sum(t.solver_status == decider for t in v.targets)
        if abs(exact) > 1e-6:
            assert v.status is (Status.VERIFIED if exact > 0 else Status.FALSIFIED)
        if v.status is Status.FALSIFIED:
            assert recheck(net, v.counterexample, x, label, pset)[2]
    assert found >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_infeasibility_is_proved_only_when_it_holds(backend):
    """x in [0, 1] with the row x + y >= 3, y in [0, 1]: infeasible (proved by phase one); with
    x + y >= 2 feasible (no proof); crossing variable bounds prove it without a solve."""
    from lpbench.solvers.base import LinearProgram
    import scipy.sparse as sp
    solver = get_backend(backend)

    def lp(rhs, hi=1.0):
        return LinearProgram(sp.csr_matrix([[1.0, 1.0]]), np.array([rhs]), np.array([np.inf]),
                             np.zeros(2), np.array([hi, 1.0]))
    assert solver.proves_infeasible(lp(3.0))
    assert not solver.proves_infeasible(lp(2.0))
    assert not solver.proves_infeasible(lp(2.0 - 1e-12))
    assert solver.proves_infeasible(lp(0.0, hi=-1.0))

"""Radius searches (lpbench.radius) and Table 2 (lpbench reproduce table2).

Soundness: on tiny random networks every certified radius lies below the exact minimum distortion
of the MILP, and every attacked radius above it; the method re-verifies at its reported radius
and PGD re-attacks at its own. Bracket replay: a search resumed from its own probes runs none.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from helpers import random_relu_net
from lpbench.errors import LpbenchError
from lpbench.experiments import table2 as t2
from lpbench.experiments.projection import lp_all_projections
from lpbench.methods import verify
from lpbench.milp.distortion import min_distortion
from lpbench.network import Network
from lpbench.problem import Outcome, Perturbation, Status
from lpbench.radius import MAX_OPEN, OPEN, Bracket, bracket, carried, proved_targets, search, success
from lpbench.solvers import get_backend

CERTIFIERS = ("ibp", "crown", "lp-greedy", "lp-last", "lp-all", "milp")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return random_relu_net(rng, [4, 5, 4, 3], f"tiny{seed}")


def _correct_point(net: Network, seed: int) -> tuple[np.ndarray, int]:
    x = np.random.default_rng(100 + seed).uniform(0.2, 0.8, size=4).astype(np.float32)
    return x, int(net.logits64(x[None])[0].argmax())


def test_bracket_by_hand() -> None:
    b = bracket({0.1: True, 0.3: False, 0.2: False, 0.15: True}, 0.0, 0.5, "certify")
    assert (b.lo, b.hi, b.radius) == (0.15, 0.2, 0.15)
    b = bracket({0.5: True, 0.25: False, 0.4: True, 0.3: False}, 0.0, math.inf, "attack")
    assert (b.lo, b.hi, b.radius) == (0.3, 0.4, 0.4)
    assert bracket({}, 0.0, 0.5, "certify").next_probe(1e-3) == 0.25
    assert Bracket(0.1, 0.1005, "certify").next_probe(1e-3) is None
    # a non-monotone observation (verified above a failure) keeps the verified epsilon
    b = bracket({0.1: False, 0.2: True}, 0.0, 0.5, "certify")
    assert b.radius == 0.2 and b.hi == 0.5
    with pytest.raises(ValueError):
        bracket({}, 0.0, 1.0, "sideways")


def test_exact_bracket_goes_on_around_open_probes() -> None:
    """A timed-out (open) probe bounds neither end: the exact search bisects below the lowest
    open probe, then above the highest, where a falsified probe lowers ``hi``."""
    b = bracket({0.02: True, 0.03: OPEN, 0.05: False}, 0.01, 0.06, "exact")
    assert (b.lo, b.hi, b.open, b.radius) == (0.02, 0.05, (0.03,), 0.02)
    assert b.next_probe(1e-3) == pytest.approx(0.025) and b.next_probe(1e-3, 1.1) == pytest.approx(0.022)
    b = bracket({0.02: True, 0.0205: OPEN, 0.03: OPEN, 0.05: False}, 0.01, 0.06, "exact")
    assert b.next_probe(1e-3) == pytest.approx(0.04) and not b.done(1e-3)
    # a falsified probe above the open ones lowers hi; one below lo is not an open probe of the bracket
    b = bracket({0.02: True, 0.015: OPEN, 0.0205: OPEN, 0.03: OPEN, 0.0305: False}, 0.01, 0.06, "exact")
    assert (b.hi, b.open) == (0.0305, (0.0205, 0.03)) and b.done(1e-3) and b.next_probe(1e-3) is None
    # certify reads the same timeout as a failure: its upper end stays on it
    assert bracket({0.02: True, 0.03: False, 0.05: False}, 0.01, 0.06, "certify").hi == 0.03
    # MAX_OPEN open probes inside the bracket end the search; the radius is still a verified epsilon
    many = {0.02 + 0.001 * k: OPEN for k in range(1, MAX_OPEN + 1)}
    b = bracket({0.02: True, **many, 0.5: False}, 0.0, 0.5, "exact")
    assert b.done(1e-4) and b.radius == 0.02
    assert success("exact", Status.TIMEOUT) == OPEN and success("exact", "unknown") == OPEN
    assert success("exact", Status.FALSIFIED) is False and success("exact", Status.VERIFIED) is True
    assert success("exact", Status.ERROR) is None


def test_exact_search_probes_under_the_attacked_end_first() -> None:
    """With ``top`` the exact search's first probe is ``hi - tol``: verified there it is done in
    one probe; falsified, ``hi`` drops to it and it bisects (no walk down by ``tol``); open, it
    bisects below it."""
    tol = 1e-3
    b = bracket({}, 0.01, 0.05, "exact")
    assert b.next_probe(tol, top=True) == pytest.approx(0.049) and b.next_probe(tol) == pytest.approx(0.03)
    assert bracket({0.049: True}, 0.01, 0.05, "exact").done(tol)
    b = bracket({0.049: False}, 0.01, 0.05, "exact")
    assert b.hi_probed and b.next_probe(tol, top=True) == pytest.approx(0.0295)
    b = bracket({0.049: OPEN}, 0.01, 0.05, "exact")
    assert b.open == (0.049,) and b.next_probe(tol, top=True) == pytest.approx(0.0295)
    # an initial hi the search has not falsified, with a verified lo and an open probe below hi - tol
    b = bracket({0.02: True, 0.03: OPEN}, 0.01, 0.05, "exact")
    assert not b.hi_probed and b.next_probe(tol, top=True) == pytest.approx(0.049)
    # certify and attack searches ignore it
    assert bracket({}, 0.01, 0.05, "certify").next_probe(tol, top=True) == pytest.approx(0.03)


def _oracle(threshold: float, window: float):
    """A complete method by hand: verified below ``threshold - window``, falsified from
    ``threshold + window`` on, timeout between (where a real MILP runs out of time)."""
    def run(net, batch, pset, ctx):
        e = pset.eps
        status = Status.VERIFIED if e < threshold - window else Status.FALSIFIED if e >= threshold + window \
            else Status.TIMEOUT
        return [Outcome("", int(i), int(y), status) for i, y in zip(batch.ids, batch.labels)]
    return run


@pytest.mark.parametrize("threshold, window", [(0.0333, 0.004), (0.0333, 0.0), (0.2, 0.15)])
def test_exact_search_brackets_past_its_timeouts(threshold: float, window: float) -> None:
    """With probes that time out near the threshold, the exact search still ends with ``lo`` a
    verified and ``hi`` a falsified epsilon, each within tol of the timeout window (unless
    MAX_OPEN probes timed out first); the certify search stops below the window with its upper
    end on a timeout."""
    from lpbench.methods import REGISTRY, Method, register
    name = "test-oracle"
    register(Method(name, _oracle(threshold, window), "user", "hand-made complete method"))
    try:
        net = _net(0)
        x, y = _correct_point(net, 0)
        tol = 1e-3
        ex = search(net, x, y, name, kind="exact", lo=0.0, hi=0.5, tol=tol, grow=1.25)
        states = {e: o.status for e, o in ex.probes}
        assert states[ex.lo] is Status.VERIFIED or ex.lo == 0.0
        assert states.get(ex.hi, Status.FALSIFIED) is Status.FALSIFIED
        assert ex.lo < threshold - window <= ex.lo + tol or len([e for e, s in states.items()
                                                                   if s is Status.TIMEOUT]) >= MAX_OPEN
        opens = sorted(e for e, s in states.items() if s is Status.TIMEOUT and ex.lo < e < ex.hi)
        if len(opens) < MAX_OPEN:
            assert ex.hi >= threshold + window and ex.hi - (opens[-1] if opens else ex.lo) <= tol
        # probing under the upper end first ends in the same bracket, one probe dearer at most
        # (here the upper end is far from the threshold); with the threshold just under it, one probe
        top = search(net, x, y, name, kind="exact", lo=0.0, hi=0.5, tol=tol, grow=1.25, top=True)
        assert (top.lo, top.hi) == pytest.approx((ex.lo, ex.hi), abs=tol)
        assert top.probes[0][0] == pytest.approx(0.5 - tol) and len(top.probes) <= len(ex.probes) + 1
        if window == 0:
            near = search(net, x, y, name, kind="exact", lo=0.0, hi=threshold + 0.5 * tol, tol=tol, top=True)
            assert [o.status for _, o in near.probes] == [Status.VERIFIED] and near.hi - near.lo <= tol * (1 + 1e-9)
        ce = search(net, x, y, name, kind="certify", lo=0.0, hi=0.5, tol=tol, grow=1.25)
        assert ce.radius == pytest.approx(ex.radius, abs=tol)
        if window > 0:
            assert ce.hi < threshold + window  # a timeout, not a counterexample
    finally:
        REGISTRY.pop(name)


@pytest.mark.parametrize("seed", range(4))
def test_radii_bracket_the_exact_distortion(seed: int) -> None:
    net = _net(seed)
    x, y = _correct_point(net, seed)
    exact = min_distortion(net, x.astype(np.float64), y, get_backend("highs"), eps_max=0.5, time_limit=30)
    assert exact.exact
    tol = 1e-4
    pgd = search(net, x, y, "pgd", hi=0.5, tol=tol)
    assert pgd.kind == "attack"
    if math.isfinite(pgd.radius):
        assert pgd.radius >= exact.lower - 1e-9
        (o,) = verify(net, x[None], [y], Perturbation(pgd.radius), ["pgd"])
        assert o.status is Status.FALSIFIED
    # (PGD may also find nothing within eps_max: attacks are incomplete)
    radii = {}
    for m in CERTIFIERS:
        r = search(net, x, y, m, hi=min(0.5, pgd.radius), tol=tol,
                   options={"milp": {"time_limit": 30.0}})
        radii[m] = r.radius
        assert r.radius <= exact.upper + 1e-9, (m, r.radius, exact)  # never beyond a real adversarial point
        if r.radius > 0:
            (o,) = verify(net, x[None], [y], Perturbation(r.radius), [m], options={"milp": {"time_limit": 30.0}})
            assert o.status is Status.VERIFIED, m
    # the MILP's bisection meets the exact distortion to the tolerance
    assert radii["milp"] >= exact.lower - tol - 1e-9
    assert radii["ibp"] <= radii["lp-all"] + tol and radii["lp-greedy"] <= radii["lp-all"] + tol


def test_proved_targets_by_hand() -> None:
    assert proved_targets([None, 0.5, -0.1, float("nan"), 1e-9], 0) == {1: 0.5, 4: 1e-9}
    assert proved_targets(None, 0) == {} and proved_targets([0.3, 0.2], 0) == {1: 0.2}
    proved = {0.05: {1: 0.1, 2: 0.3}, 0.03: {1: 0.4}, 0.01: {3: 1.0}}
    assert carried(proved, 0.03) == {1: 0.4, 2: 0.3} and carried(proved, 0.05) == {1: 0.1, 2: 0.3}
    assert carried(proved, 0.06) == {}


@pytest.mark.parametrize("seed", range(3))
def test_exact_search_carries_proved_targets_down(seed: int) -> None:
    """Targets the MILP proved at 0.9 d (d the exact distortion) go to every probe at or below
    0.9 d with their bounds and are not solved again, as do those of the search's own probes to
    the probes below them, and no other target is skipped; the radius is the one found without
    them. The carried bounds hold at sampled points of the
    larger ball, hence of every smaller one."""
    net = _net(seed)
    x, y = _correct_point(net, seed)
    d = min_distortion(net, x.astype(np.float64), y, get_backend("highs"), eps_max=0.5, time_limit=30).lower
    opts = {"milp": {"time_limit": 30.0, "cheap": False}}
    (big,) = verify(net, x[None], [y], Perturbation(0.9 * d), ["milp"], options=opts)
    assert big.status is Status.VERIFIED
    proved = proved_targets(big.margin_lower, y)
    assert sorted(proved) == [j for j in range(net.n_classes) if j != y]
    pts = np.clip(x + np.random.default_rng(seed).uniform(-0.9 * d, 0.9 * d, size=(4000, 4)), 0, 1)
    logits = net.logits64(pts.astype(np.float64))
    for j, b in proved.items():
        assert (logits[:, y] - logits[:, j] >= b - 1e-9).all()
    tol = 1e-3 * d
    plain = search(net, x, y, "milp", kind="exact", lo=0.0, hi=0.5, tol=tol, options=opts)
    carry = search(net, x, y, "milp", kind="exact", lo=0.0, hi=0.5, tol=tol, options=opts,
                   proved={0.9 * d: proved})
    assert carry.radius == pytest.approx(plain.radius, abs=tol) and d - tol <= carry.radius <= d
    assert any(e <= 0.9 * d for e, _ in carry.probes), "no probe at or below 0.9 d"
    so_far = {0.9 * d: proved}
    for e, o in carry.probes:
        expect = carried(so_far, e)
        if e <= 0.9 * d:
            assert o.status is Status.VERIFIED and set(expect) == set(proved)
        if "targets" in o.stats:  # (not a probe PGD decided)
            solvers = {t["target"]: t["solver"] for t in o.stats["targets"]}
            assert {j for j, s in solvers.items() if s == "proved at a larger epsilon"} == set(expect), (e, solvers)
            assert all(o.margin_lower[j] >= b for j, b in expect.items())
        so_far[e] = proved_targets(o.margin_lower, y)  # the search's own probes carry down too


def test_milp_refuses_a_bad_proved_option() -> None:
    net = _net(0)
    x, y = _correct_point(net, 0)
    for bad in ({0: {1: -0.1}}, {0: {1: float("nan")}}, {0: [1]}, {"a": {1: 0.1}}, {0: {"x": 0.1}}, [0]):
        with pytest.raises(ValueError, match="milp proved"):
            verify(net, x[None], [y], Perturbation(0.01), ["milp"], options={"milp": {"proved": bad}})


@pytest.mark.parametrize("seed", range(3))
def test_galloping_search_meets_bisection(seed: int) -> None:
    """LP-ALL from the LP-GREEDY radius with ``grow``: every probe is at most grow times the
    largest verified epsilon before it (or the midpoint), and the radius is bisection's to tol."""
    net = _net(seed)
    x, y = _correct_point(net, seed)
    tol = 1e-4
    hi = min(0.5, search(net, x, y, "pgd", hi=0.5, tol=tol).radius)
    lo = search(net, x, y, "lp-greedy", hi=hi, tol=tol).radius
    plain = search(net, x, y, "lp-all", lo=lo, hi=hi, tol=tol)
    fast = search(net, x, y, "lp-all", lo=lo, hi=hi, tol=tol, grow=1.25)
    assert abs(fast.radius - plain.radius) <= tol
    best = lo
    for eps, o in fast.probes:
        assert eps <= 1.25 * best + 1e-12 or best == 0
        if o.status is Status.VERIFIED:
            best = max(best, eps)


def test_search_resumes_from_its_probes() -> None:
    net = _net(1)
    x, y = _correct_point(net, 1)
    first = search(net, x, y, "crown", hi=0.5, tol=1e-3)
    known = {eps: o.status is Status.VERIFIED for eps, o in first.probes}
    again = search(net, x, y, "crown", hi=0.5, tol=1e-3, known=known)
    assert again.probes == () and again.radius == first.radius
    half = dict(list(known.items())[:3])
    resumed = search(net, x, y, "crown", hi=0.5, tol=1e-3, known=half)
    assert resumed.radius == first.radius and len(resumed.probes) == len(first.probes) - 3


def test_misclassified_sample_has_radius_zero() -> None:
    net = _net(2)
    x, y = _correct_point(net, 2)
    wrong = (y + 1) % 3
    for m in ("pgd", "crown"):
        r = search(net, x, wrong, m)
        assert r.radius == 0.0 and [e for e, _ in r.probes] == [0.0]
        assert r.probes[0][1].status is Status.FALSIFIED


def test_bad_search_arguments() -> None:
    net = _net(3)
    x, y = _correct_point(net, 3)
    from lpbench.errors import LpbenchError
    with pytest.raises(LpbenchError):
        search(net, x, y, "crown", lo=0.3, hi=0.1)
    with pytest.raises(LpbenchError):
        search(net, x, y, "crown", tol=0.0)
    with pytest.raises(LpbenchError):
        search(net, x, y, "no-such-method")


def test_median_interval() -> None:
    x = np.arange(10.0)
    assert t2.median_ci(x) == (1.0, 8.0)  # (x_(2), x_(9)): coverage 97.9% >= 95%
    assert all(math.isnan(v) for v in t2.median_ci(np.arange(5.0)))  # too few for 95%


@pytest.fixture
def table2_run(tmp_path, shared_mirror):
    store = tmp_path / "store.sqlite"
    spec = t2.Table2Spec(("NOR-MLP-2-100",), ("pgd", "ibp", "lp-greedy", "lp-all"), ("NOR-MLP-2-100",), (),
                         (6139,), 0.5, 1e-3, "linf", {"pgd": {"steps": 50, "restarts": 2}}, "test")
    table, per_sample, report = t2.run_table2(spec, store, workers=1)
    return spec, store, table, per_sample, report


def test_table2_orders_and_resumes(table2_run) -> None:
    spec, store, table, per_sample, report = table2_run
    r = per_sample.set_index("method").radius
    assert per_sample.finished.all() and report.searches == 4 and report.open == 0
    assert report.tasks == report.written  # one task per probe
    assert 0 < r["ibp"] <= r["lp-greedy"] <= r["lp-all"] <= r["pgd"]
    assert int(table.violations.iloc[0]) == 0 and int(table.n_correct.iloc[0]) == 1
    assert table["lp-all_gap_median_pct"].iloc[0] == pytest.approx(100 * (r["pgd"] - r["lp-all"]) / r["pgd"])
    again, per_again, rep2 = t2.run_table2(spec, store, workers=1)
    assert rep2.tasks == 0 and per_again.radius.tolist() == per_sample.radius.tolist()


def test_spare_probe_by_hand() -> None:
    """An exact search's spare probe halves the widest piece of its gap that the probes in flight
    leave; the gap is the one bisection takes (below the lowest open probe first), else the one
    above the open probes."""
    b = Bracket(0.0, 1.0, "exact")
    assert b.spare(0.01, []) == 0.5 and b.spare(0.01, [0.5]) == 0.25
    assert b.spare(0.01, [0.5, 0.25]) == 0.75 and b.spare(0.01, [0.5, 0.25, 0.75, 2.0, -1.0]) == 0.125
    assert Bracket(0.0, 1.0, "exact", (0.4,)).spare(0.01, [0.2]) == 0.1
    assert Bracket(0.0, 1.0, "exact", (0.0, 0.0025)).spare(0.01, []) == pytest.approx(0.50125)
    assert Bracket(0.0, 0.015, "exact").spare(0.01, [0.0075]) is None  # both pieces within tol
    assert Bracket(0.0, 0.005, "exact").spare(0.01, []) is None and Bracket(0.0, 1.0, "certify").spare(0.01, []) is None
    # the gap below the open probes has no piece wider than tol left: the spare goes above them
    # (NOR-MLP-2-100 image 8491: one probe in (0.051096, 0.051204], the other worker idle)
    b = Bracket(0.051096, 0.056419, "exact", (0.051204, 0.05468))
    assert b.next_probe(1e-4) == pytest.approx(0.05115) and b.spare(1e-4, [0.05115]) == pytest.approx(0.0555495)
    assert b.spare(1e-4, [0.05115, 0.0555495]) == pytest.approx(0.05511475)
    assert Bracket(0.0, 0.03, "exact", (0.02, 0.025)).spare(0.01, [0.01]) is None  # above: within tol


def test_search_probes_at_a_named_epsilon() -> None:
    net = _net(3)
    x, y = _correct_point(net, 3)
    r = search(net, x, y, "milp", kind="exact", lo=0.0, hi=0.5, at=0.123)
    assert [e for e, _ in r.probes] == [0.123] and r.probes[0][1].status in (Status.VERIFIED, Status.FALSIFIED)


def test_table2_two_workers_share_one_exact_search(shared_mirror, tmp_path) -> None:
    """With two workers and one MILP search, the idle worker probes the search's gap beside the
    first probe (Bracket.spare), and a probe the bracket has passed is cancelled: the search ends
    exact, its bracket overlaps the one-worker run's, and every probe that returned is stored
    once."""
    spec = t2.Table2Spec(("NOR-MLP-2-100",), ("pgd", "lp-greedy", "milp"), ("NOR-MLP-2-100",),
                         ("NOR-MLP-2-100",), (6139,), 0.5, 1e-3, "linf",
                         {"pgd": {"steps": 50, "restarts": 2}, "milp": {"time_limit": 60.0}}, "spare")
    runs = {w: t2.run_table2(spec, tmp_path / f"w{w}.sqlite", workers=w) for w in (1, 2)}
    from lpbench.store import Store
    rows = {}
    for w, (_, per, rep) in runs.items():
        assert rep.tasks == rep.written + rep.cancelled and rep.open == 0 and per.finished.all()
        assert rep.cancelled == 0 or w == 2
        rows[w] = per.set_index("method").loc["milp"]
        assert bool(rows[w].exact) and rows[w].upper - rows[w].radius <= spec.tol * (1 + 1e-9)
        with Store(tmp_path / f"w{w}.sqlite") as st:
            f = st.frame(spec.key("milp"))
        assert len(f) == len(set(f.epsilon)) == rows[w].probes
    assert rows[1].radius < rows[2].upper and rows[2].radius < rows[1].upper
    lo, hi = (runs[2][1].set_index("method").radius[m] for m in ("lp-greedy", "pgd"))
    with Store(tmp_path / "w2.sqlite") as st:
        eps = set(st.frame(spec.key("milp")).epsilon)
    # the first probe, and its spare beside it: stored, or cancelled once a probe above it verified
    assert hi - spec.tol in eps and (0.5 * (lo + hi - spec.tol) in eps or runs[2][2].cancelled > 0)


def test_table2_cancels_the_probes_its_bracket_has_passed() -> None:
    """A probe in flight at or outside its search's bracket is cancelled (and its worker
    restarted), one inside it runs on, another search's is left alone; once the search is done,
    every probe of it with a named epsilon goes."""
    from lpbench.sweep.runner import _client
    key, other = ("M", "milp", 1), ("M", "milp", 2)
    with _client(None, 1, 10.0) as client:
        running = {}
        for k, eps in ((key, 0.1), (key, 0.2), (key, 0.3), (other, 0.1), (key, None)):
            f = client.submit(time.sleep, 3600, pure=False)
            running[f.key] = k, eps, f
        futs = {(k, e): f for k, e, f in running.values()}
        assert t2._drop_passed(client, running, key, Bracket(0.2, 0.5, "exact"), 0.01) == 2
        assert futs[key, 0.1].cancelled() and futs[key, 0.2].cancelled()
        assert sorted((k[2], e) for k, e, _ in running.values() if e) == [(1, 0.3), (2, 0.1)]
        assert t2._drop_passed(client, running, key, Bracket(0.3, 0.305, "exact"), 0.01) == 1
        assert [(k[2], e) for k, e, _ in running.values()] == [(2, 0.1), (1, None)]  # the search's own
        client.cancel([f for *_, f in running.values()])


def test_table2_runs_its_timed_out_probes_again(table2_run) -> None:
    """``rerun="timeouts"`` removes the stored probes that timed out (here one LP-ALL probe marked
    so by hand), and the search runs again from the others to the same radius."""
    from lpbench.store import Store
    spec, store, _, per_sample, _ = table2_run
    with Store(store) as st:
        f = st.frame(spec.key("lp-all"))
        r = float(per_sample.set_index("method").radius["lp-all"])
        eps = float(f[(f.method == "lp-all") & (f.epsilon > r)].epsilon.min())
        st.add(spec.key("lp-all"), "NOR-MLP-2-100", eps, "linf", [Outcome("lp-all", 6139, 0, Status.TIMEOUT)])
    _, per_mid, rep = t2.run_table2(spec, store, workers=1)
    assert rep.tasks == 0 and rep.dropped == 0  # a timeout is a failed probe: the bracket stands
    with Store(store) as st:  # another sample's rerun leaves this one's timeout alone
        assert st.delete(spec.key("lp-all"), "NOR-MLP-2-100", None, "linf", "lp-all", ["timeout"], [5845]) == 0
    _, per_again, rep = t2.run_table2(spec, store, workers=1, rerun="timeouts")
    assert rep.dropped == 1 and rep.tasks >= 1
    assert per_again.radius.tolist() == per_sample.radius.tolist()
    with Store(store) as st:
        assert not (st.frame(spec.key("lp-all")).status == "timeout").any()
    with pytest.raises(LpbenchError, match="rerun"):
        t2.run_table2(spec, store, workers=1, rerun="failed")


def test_table2_interrupted_keeps_its_probes(table2_run, tmp_path) -> None:
    """Each probe is stored when it returns: a run stopped after its third probe keeps those three,
    and the resumed run ends with the same radii as the uninterrupted one."""
    spec, _, _, per_sample, _ = table2_run
    store = tmp_path / "cut.sqlite"

    def stop(report, left) -> None:
        if report.written >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        t2.run_table2(spec, store, workers=1, progress=stop)
    from lpbench.store import Store
    with Store(store) as st:
        assert sum(len(st.frame(k)) for k in {spec.key(m) for m in spec.methods}) == 3
    _, per_again, rep = t2.run_table2(spec, store, workers=1)
    assert rep.written == rep.tasks and per_again.finished.all()
    assert per_again.radius.tolist() == per_sample.radius.tolist()


def test_table2_export_imported_into_a_fresh_store_replays_the_searches(table2_run, tmp_path) -> None:
    """Table 2's probes travel like a sweep's: ``sweep export`` of its stored spec, ``sweep import``
    into a fresh store, and the same spec then runs no probe and gives the same radii; ``sweep
    status`` refuses it with a pointer to the command that reports it."""
    from lpbench.store import Store
    from lpbench.sweep.results import export, import_export, status
    spec, store, _, per_sample, report = table2_run
    with Store(store) as st:
        files = [export(st, spec.name, tmp_path / "t2.parquet"), export(st, spec.name, tmp_path / "t2.csv")]
        with pytest.raises(LpbenchError, match="reproduce table2"):
            status(st, spec.name)
    for i, path in enumerate(files):
        with Store(tmp_path / f"fresh{i}.sqlite") as st:
            got, written, kept = import_export(st, path)
            assert got == spec and (written, kept) == (report.written, 0)
        _, per_again, rep = t2.run_table2(spec, tmp_path / f"fresh{i}.sqlite", workers=1)
        assert rep.tasks == 0 and per_again.radius.tolist() == per_sample.radius.tolist()
    with pytest.raises(LpbenchError, match="unknown key"):
        t2.Table2Spec.from_dict({**json.loads(spec.to_json()), "depth": 3})


@pytest.mark.parametrize("milp_probes, other, upper, exact", [
    ({0.025: "verified", 0.03: "timeout"}, {}, 0.04, False),  # a timeout bounds nothing: upper is PGD's
    ({0.025: "verified", 0.032: "timeout", 0.03: "falsified"}, {}, 0.03, True),
    # another run's (another time limit's) decided probes count, its timeouts do not
    ({0.025: "verified", 0.03: "timeout"}, {0.031: "falsified", 0.0305: "timeout"}, 0.031, True),
    ({0.02: "verified", 0.03: "timeout"}, {0.025: "verified", 0.031: "timeout"}, 0.04, False),
])
def test_milp_upper_end_is_a_counterexample_never_a_timeout(tmp_path, milp_probes, other, upper, exact) -> None:
    """Hand-made probes (tol 0.01): PGD attacks 0.04 and not 0.035; LP-GREEDY verifies 0.02,
    LP-ALL 0.022; the MILP verifies 0.025 (in this run or, ``other``, in a run with another time
    limit). The MILP's upper end is its smallest falsified probe or else PGD's radius, and
    ``exact`` means that end is within the tolerance of its radius."""
    from lpbench.problem import Outcome
    from lpbench.store import Store
    spec = t2.Table2Spec(("NOR-MLP-2-100",), ("pgd", "lp-greedy", "lp-all", "milp"), ("NOR-MLP-2-100",),
                         ("NOR-MLP-2-100",), (6139,), 0.5, 0.01, "linf", {}, "hand")
    probes = {"pgd": {0.5: "falsified", 0.04: "falsified", 0.035: "unknown"},
              "lp-greedy": {0.02: "verified", 0.025: "unknown"}, "lp-all": {0.022: "verified", 0.03: "unknown"},
              "milp": milp_probes}
    longer = t2.Table2Spec(**{**asdict(spec), "options": {"milp": {"time_limit": 3600.0}}})
    with Store(tmp_path / "s.sqlite") as st:
        for m, ps in probes.items():
            for eps, status in ps.items():
                st.add(spec.key(m), "NOR-MLP-2-100", eps, "linf", [Outcome(m, 6139, 0, Status(status))])
        for eps, status in other.items():
            st.add(longer.key("milp"), "NOR-MLP-2-100", eps, "linf", [Outcome("milp", 6139, 0, Status(status))])
        searches = t2._Searches(spec, st, np.array([6139]))
        per = t2.radii(spec, searches)
    # the MILP's search (upper end PGD's radius) probes under it first; the certifiers' do not
    assert searches.top(("NOR-MLP-2-100", "milp", 6139)) and not searches.top(("NOR-MLP-2-100", "lp-all", 6139))
    mi = per[per.method == "milp"].iloc[0]
    assert per.finished.all() and mi.radius == 0.025
    assert mi.upper == upper and bool(mi.exact) is exact
    assert (mi.probes, mi.timeouts) == (len(milp_probes) + len(other),  # every run's probes are counted
                                        [*milp_probes.values(), *other.values()].count("timeout"))
    table = t2.summarize(spec, per)
    assert table.milp_upper_mean_e3.iloc[0] == pytest.approx(1e3 * upper) and table.violations.iloc[0] == 0


def test_an_open_milp_search_reports_its_verified_lower_end(tmp_path) -> None:
    """A MILP search still open reports the largest epsilon it verified so far (a sound lower end),
    not finished and not exact; an open certifier search reports no radius."""
    from lpbench.store import Store
    spec = t2.Table2Spec(("NOR-MLP-2-100",), ("pgd", "ibp", "lp-greedy", "lp-all", "milp"), ("NOR-MLP-2-100",),
                         ("NOR-MLP-2-100",), (6139,), 0.5, 0.001, "linf", {}, "hand")
    probes = {"pgd": {0.5: "falsified", 0.04: "falsified", 0.0395: "unknown"}, "ibp": {0.01: "verified"},
              "lp-greedy": {0.02: "verified", 0.0205: "unknown"}, "lp-all": {0.022: "verified", 0.0225: "unknown"},
              "milp": {0.025: "verified", 0.0395: "falsified", 0.03: "timeout"}}
    with Store(tmp_path / "s.sqlite") as st:
        for m, ps in probes.items():
            for eps, status in ps.items():
                st.add(spec.key(m), "NOR-MLP-2-100", eps, "linf", [Outcome(m, 6139, 0, Status(status))])
        per = t2.radii(spec, t2._Searches(spec, st, np.array([6139]))).set_index("method")
    assert per.finished.tolist() == [True, False, True, True, False]
    assert per.radius["milp"] == 0.025 and per.upper["milp"] == 0.0395 and not per.exact["milp"]
    assert math.isnan(per.radius["ibp"]) and per.lo["ibp"] == 0.01


def test_table2_reads_the_proved_targets_back(tmp_path) -> None:
    """The MILP's stored margin lower bounds above 0 are read back per probe as proved targets
    (passed down the search), from every table-2 run in the store (another time limit's too);
    a certifier's are not, nor another norm's, nor those of experiments that are not table 2."""
    from lpbench.store import Store
    spec = t2.Table2Spec(("NOR-MLP-2-100",), ("pgd", "lp-greedy", "lp-all", "milp"), ("NOR-MLP-2-100",),
                         ("NOR-MLP-2-100",), (6139,), 0.5, 0.01, "linf", {}, "hand")
    timed_out = np.full(10, -np.inf)
    timed_out[[3, 7]], timed_out[0] = (0.2, 1e-6), np.nan
    with Store(tmp_path / "s.sqlite") as st:
        st.add(spec.key("milp"), "NOR-MLP-2-100", 0.03, "linf", [Outcome("milp", 6139, 0, Status.TIMEOUT, timed_out)])
        st.add(spec.key("milp"), "NOR-MLP-2-100", 0.04, "linf", [Outcome("milp", 6139, 0, Status.TIMEOUT)])
        st.add(spec.key("lp-all"), "NOR-MLP-2-100", 0.02, "linf",
               [Outcome("lp-all", 6139, 0, Status.VERIFIED, np.full(10, 0.5))])
        longer = t2.Table2Spec(**{**asdict(spec), "options": {"milp": {"time_limit": 3600.0}}})
        assert longer.key("milp") != spec.key("milp")
        other = np.full(10, -1.0)
        other[[3, 5]], other[0] = (0.5, 0.1), np.nan
        st.add(longer.key("milp"), "NOR-MLP-2-100", 0.03, "linf", [Outcome("milp", 6139, 0, Status.TIMEOUT, other)])
        st.add(longer.key("milp"), "NOR-MLP-2-100", 0.03, "l1", [Outcome("milp", 6139, 0, Status.VERIFIED,
                                                                           np.full(10, 9.0))])
        st.add("sweep:other", "NOR-MLP-2-100", 0.035, "linf", [Outcome("milp", 6139, 0, Status.VERIFIED,
                                                                       np.full(10, 9.0))])
        s = t2._Searches(spec, st, np.array([6139]))
    assert s.proved == {("NOR-MLP-2-100", "milp", 6139): {0.03: {3: 0.5, 5: 0.1, 7: 1e-6}}}


def test_lp_all_projection_of_a_model_without_it(table2_run) -> None:
    """A model left without LP-ALL gets a projected cost measured at its LP-GREEDY radius r and at
    1.25 r (capped by PGD's): the unstable neurons counted are those of the cheap bounds LP-ALL
    would start from, and the measurement is kept in the store and reused."""
    from dataclasses import replace as dc_replace

    from lpbench.experiments.projection import K
    from lpbench.lp.drivers import lp_layers
    from lpbench.store import Store
    from lpbench.sweep.tasks import lp_start, network
    spec, store, _, _, _ = table2_run
    spec = dc_replace(spec, lp_models=())
    _, per_sample, rep = t2.run_table2(spec, store, workers=1)
    assert rep.tasks == 0
    proj = lp_all_projections(spec, per_sample, store)
    assert proj.model.tolist() == ["NOR-MLP-2-100"]
    r = per_sample.set_index("method").radius
    p = proj.iloc[0]
    assert p.eps_low == r["lp-greedy"] and p.eps_high == min(t2.GROW * r["lp-greedy"], r["pgd"])
    net = network("NOR-MLP-2-100")
    for end in ("low", "high"):
        pre = lp_start("NOR-MLP-2-100", "mnist", p[f"eps_{end}"], "linf", 6139).pre
        assert p[f"unstable_{end}"] == sum(int(((lo < 0) & (hi > 0)).sum()) for lo, hi in
                                           (pre[i] for i in lp_layers(net, "all")))
        assert p[f"probe_s_{end}"] > 0 and p[f"cpu_h_{end}"] > 0
    with Store(store) as st:
        assert st.measurement(f"table2-projection:NOR-MLP-2-100:6139:{p.eps_low:.8g}:k{K}") is not None
    assert lp_all_projections(spec, per_sample, store).equals(proj)  # read back, not measured again


def _lpbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lpbench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_reproduce_table2_command(tmp_path, shared_mirror) -> None:
    out = tmp_path / "out"
    res = _lpbench("reproduce", "table2", "--models", "NOR-MLP-2-100", "--samples", "6139:6140",
                   "--methods", "pgd,ibp,lp-greedy", "--lp-all", "none", "--milp-models", "none",
                   "--tol", "1e-3", "--workers", "1", "--store", str(tmp_path / "s.sqlite"), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(out / "table2_subset.csv", comment="#")
    assert df.model.tolist() == ["NOR-MLP-2-100"] and df.violations.tolist() == [0]
    assert (out / "figure3_subset.png").stat().st_size > 10000 and (out / "figure3_subset.pdf").exists()
    assert "lpbench reproduce table2" in (out / "table2_subset.md").read_text()
    bad = _lpbench("reproduce", "table2", "--models", "CNN-HUGE", "--store", str(tmp_path / "s.sqlite"))
    assert bad.returncode == 2 and "unknown model or family 'CNN-HUGE'" in bad.stderr
    assert "Traceback" not in bad.stderr
    # --replay runs no probe: the CROWN searches (none stored) stay open in the tables it writes
    replay = tmp_path / "replay"
    res = _lpbench("reproduce", "table2", "--models", "NOR-MLP-2-100", "--samples", "6139:6140",
                   "--methods", "pgd,ibp,crown,lp-greedy", "--lp-all", "none", "--milp-models", "none",
                   "--tol", "1e-3", "--replay", "--store", str(tmp_path / "s.sqlite"), "--out", str(replay))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 search(es) still open" in res.stdout
    per = pd.read_csv(replay / "table2_subset_samples.csv").set_index("method")
    assert not per.finished["crown"] and per.finished[["pgd", "ibp", "lp-greedy"]].all()
    assert per.radius["ibp"] == pd.read_csv(out / "table2_subset_samples.csv").set_index("method").radius["ibp"]
    assert "still open" in (replay / "table2_subset.md").read_text()
    both = _lpbench("reproduce", "table2", "--models", "NOR-MLP-2-100", "--replay", "--rerun", "timeouts",
                    "--store", str(tmp_path / "s.sqlite"))
    assert both.returncode != 0 and "cannot --rerun" in both.stderr and "Traceback" not in both.stderr


def test_an_error_decides_no_probe() -> None:
    from lpbench.problem import Status as S
    from lpbench.radius import success
    assert success("certify", S.VERIFIED) and success("attack", "falsified")
    assert success("certify", S.FALSIFIED) is False and success("attack", S.UNKNOWN) is False
    assert success("certify", "error") is None and success("attack", S.ERROR) is None

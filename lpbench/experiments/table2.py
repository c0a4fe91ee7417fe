"""``lpbench reproduce table2``: bounds on the minimum l_inf adversarial distortion (Salman et
al. 2019, Section 6.2, Figure 3 and Table 2 of its appendix L.2).

For each experiment-2 MNIST model and each of the ten test samples of the manifest, every method's
radius is found by bisection (:mod:`lpbench.radius`): PGD gives the upper end (the smallest
epsilon with a re-checked adversarial example), IBP, CROWN, LP-GREEDY, LP-LAST and LP-ALL the
largest certified epsilon, and the MILP brackets the minimum distortion (exact to the bisection
tolerance where its probes are decided, see :func:`radii`).
The searches run as a resumable sweep on dask (embedded cluster or any scheduler), one task per
probe: the driver keeps each (model, method, sample) bracket, submits its next probe, and stores
the probe's outcome as soon as it returns, so a search is replayed from the store and resumed where
it stopped, and an interrupted run loses at most the probes in flight (one per worker). Workers
that no ready search needs probe the exact searches in flight further (:meth:`Bracket.spare`), so
a run's last slow MILP searches use the whole cluster.

Brackets: PGD on [0, eps_max]; IBP, CROWN, LP-GREEDY and registered user methods on
[0, eps_max]; LP-LAST and LP-ALL on [r(LP-GREEDY), r(PGD)] (both dominate LP-GREEDY, Section 4
of the paper, and no sound bound exceeds an attacked radius); the MILP on [r(LP-ALL) (or
r(LP-GREEDY)), r(PGD)]; these three gallop up from the lower end (each probe at most ``GROW``
times the largest certified epsilon so far) until a probe fails, then bisect. The MILP's search is
exact (:mod:`lpbench.radius`): its first probe is ``r(PGD) - tol`` (verified there, the
distortion is PGD's radius, to the tolerance), a probe that timed out is open, not failed, and
the search goes on below the lowest open probe and then above the highest, so a probe falsified
there still lowers its upper end (at most ``MAX_OPEN`` open probes). Its verified and falsified
probes, and the targets its probes proved, are facts whatever the time limit: those of every
table-2 run in the store count (:class:`_Searches`), so a longer limit starts from a shorter one's
bracket. Tolerance ``tol`` (absolute). Per model: the
mean radius of each method (x 1e-3, as in the paper), and per certifier the median over the samples of the percentage gap
100 (r_PGD - r) / r_PGD with a distribution-free 95% interval for the median (order statistics
of the binomial(n, 1/2)).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lpbench.errors import LpbenchError
from lpbench.experiments.reproduce import median_ci
from lpbench.radius import OPEN, TOL, Bracket, bracket, proved_targets, success
from lpbench.store import Store

FAMILIES = ("MLP-2-100", "MLP-9-100", "CNN-SMALL", "CNN-WIDE-1", "CNN-WIDE-2", "CNN-WIDE-4",
            "CNN-DEEP-1", "CNN-DEEP-2")
TRAININGS = ("NOR", "ADV", "LPD")
#: The families whose LP-ALL column the issue requires (the others: measured cost allowing).
LP_ALL_REQUIRED = ("MLP-2-100", "MLP-9-100", "CNN-WIDE-1", "CNN-DEEP-1")
#: The families whose exact MILP distortion is computed by default.
MILP_FAMILIES = ("MLP-2-100",)
METHODS = ("pgd", "ibp", "crown", "lp-greedy", "lp-last", "lp-all", "milp")
#: Searches that start from other methods' radii: method -> (lower end, upper end).
STARTS = {"lp-last": ("lp-greedy", "pgd"), "lp-all": ("lp-greedy", "pgd"), "milp": ("lp-all", "pgd")}
#: The searches of STARTS probe at most GROW times their certified lower end (galloping up, then
#: bisecting): their cost rises steeply with epsilon. On ADV-MLP-9-100, sample 6341, LP-ALL from
#: [0.0381, 0.1813]: 9 probes summing 112 s to the same radius as 11 bisection probes summing
#: 500 s, two of which (at 0.110 and 0.074) took 388 s.
GROW = 1.25


def table2_models(families: Sequence[str] = FAMILIES) -> list[str]:
    """The zoo's experiment-2 MNIST models of ``families``, in every training mode present."""
    from lpbench.zoo import list_models
    have = {m.name for m in list_models()}
    return [f"{t}-{f}" for f in families for t in TRAININGS if f"{t}-{f}" in have]


def family(model: str) -> str:
    return model.split("-", 1)[1]


@dataclass(frozen=True)
class Table2Spec:
    """What to search: ``methods`` on every model, except LP-ALL/LP-LAST only on ``lp_models``
    and the MILP only on ``milp_models``; the ten manifest samples unless ``samples`` is given."""

    models: tuple[str, ...]
    methods: tuple[str, ...] = METHODS
    lp_models: tuple[str, ...] = ()
    milp_models: tuple[str, ...] = ()
    samples: tuple[int, ...] = ()
    eps_max: float = 0.5
    tol: float = TOL
    norm: str = "linf"
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str = "reproduce-table2"

    def __post_init__(self) -> None:
        from lpbench.methods import get_method
        for m in self.methods:
            get_method(m)
        if not (self.tol > 0 and 0 < self.eps_max <= 1 and math.isfinite(self.eps_max)):
            raise LpbenchError(f"need tol > 0 and 0 < eps_max <= 1, got tol={self.tol}, eps_max={self.eps_max}")
        if "pgd" not in self.methods:
            raise LpbenchError("table 2 needs pgd: it gives the upper end of every search")
        if set(STARTS) & set(self.methods) and "lp-greedy" not in self.methods:
            raise LpbenchError("lp-last, lp-all and milp searches start from the lp-greedy radius: "
                               "add lp-greedy to the methods")

    def methods_of(self, model: str) -> list[str]:
        return [m for m in self.methods
                if (m not in ("lp-all", "lp-last") or model in self.lp_models)
                and (m != "milp" or model in self.milp_models)]

    def key(self, method: str) -> str:
        """The store key of one method's probes (its options, PGD's, the tolerance and limit)."""
        opts = {k: self.options.get(k, {}) for k in (method, "pgd") if k in self.options}
        blob = json.dumps([opts, self.tol, self.eps_max, self.norm], sort_keys=True).encode()
        return f"table2:{self.name}:{hashlib.sha256(blob).hexdigest()[:10]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=list)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "the spec") -> "Table2Spec":
        """The spec :meth:`to_json` wrote (from a store or an export)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise LpbenchError(f"{where}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        try:
            args = {k: tuple(int(v) for v in raw[k]) if k == "samples" else
                    tuple(raw[k]) if isinstance(raw[k], list) else raw[k] for k in raw}
            return cls(**args)
        except (TypeError, ValueError) as e:
            raise LpbenchError(f"{where}: {e}") from None

    def outcomes(self, st: Store) -> pd.DataFrame:
        """Every stored probe of this spec: each method's rows under its own :meth:`key` (every
        model, sample and epsilon probed); methods that share a key read it once."""
        frames = {k: st.frame(k) for k in {self.key(m) for m in self.methods}}
        return pd.concat([frames[self.key(m)].query("method == @m") for m in dict.fromkeys(self.methods)],
                         ignore_index=True)


@dataclass
class Report:
    """``written`` probes stored, ``dropped`` timed-out probes removed to run again, ``tasks``
    probe tasks run, ``searches`` searches finished, ``open`` searches left open by an error (run
    again next time), ``cancelled`` probes stopped in flight, their search's bracket past them."""

    written: int = 0
    dropped: int = 0
    tasks: int = 0
    searches: int = 0
    cancelled: int = 0
    open: int = 0
    counts: dict = field(default_factory=dict)
    wall_s: float = 0.0
    dashboard: str = ""


class _Searches:
    """Every (model, method, sample) search and its bracket, replayed from the store."""

    def __init__(self, spec: Table2Spec, st: Store, ids: np.ndarray) -> None:
        self.spec, self.st, self.ids = spec, st, ids
        self.probes: dict[tuple[str, str, int], dict[float, bool]] = {}
        #: exact searches: epsilon -> {target: margin bound > 0} of each probe that proved targets
        self.proved: dict[tuple[str, str, int], dict[float, dict[int, float]]] = {}
        probes = spec.outcomes(st)
        for m in dict.fromkeys(spec.methods):
            self.record_all(m, [((r.model, m, int(r.sample)), float(r.epsilon), r.status)
                                for r in probes[probes.method == m].itertuples()])
        for m in (m for m in dict.fromkeys(spec.methods) if self.kind(m) == "exact"):
            # a proof or a counterexample holds whatever the probe's options (time limit): the
            # decided probes and proved targets of every table-2 run in the store count
            for r in st.method_rows("table2:", m, spec.norm).itertuples():
                key, eps = (r.model, m, int(r.sample)), float(r.epsilon)
                if r.status in ("verified", "falsified") and self.probes.get(key, {}).get(eps) in (None, OPEN):
                    self.probes.setdefault(key, {})[eps] = r.status == "verified"
                if isinstance(r.margin_lower, str):
                    self.prove(key, eps, json.loads(r.margin_lower), int(r.label))

    def all(self) -> list[tuple[str, str, int]]:
        return [(model, m, int(i)) for model in self.spec.models for m in self.spec.methods_of(model)
                for i in self.ids]

    def start(self, model: str, method: str, sample: int) -> tuple[float, float] | None:
        """The initial bracket, or None while the searches it starts from are unfinished."""
        if method == "pgd" or method not in STARTS:
            return 0.0, self.spec.eps_max
        low, up = STARTS[method]
        if low not in self.spec.methods_of(model):
            low = "lp-greedy"  # validated to be in every table-2 spec that has lp-* or milp
        ends = [self.bracket(model, m, sample) for m in (low, up)]
        if any(b is None or not b.done(self.spec.tol) for b in ends):
            return None
        lo, hi = ends[0].radius, ends[1].radius
        return min(lo, hi), (hi if math.isfinite(hi) else self.spec.eps_max)

    def top(self, key: tuple[str, str, int]) -> bool:
        """Whether the exact search of ``key`` probes just under its upper end first: the MILP,
        whose upper end is PGD's radius (not ``eps_max`` for want of one)."""
        model, method, sample = key
        if self.kind(method) != "exact":
            return False
        pgd = self.bracket(model, "pgd", sample)
        return pgd is not None and pgd.done(self.spec.tol) and math.isfinite(pgd.radius)

    def kind(self, method: str) -> str:
        return "attack" if method == "pgd" else "exact" if method == "milp" else "certify"

    def bracket(self, model: str, method: str, sample: int) -> Bracket | None:
        """The current bracket (not done while the search has not run), or None while the
        searches it starts from are unfinished."""
        s = self.start(model, method, sample)
        if s is None:
            return None
        probes = self.probes.get((model, method, sample), {})
        if self.kind(method) == "attack":
            if s[1] not in probes and not probes.get(0.0):  # the upper end not yet attacked
                return Bracket(s[0], s[1], "attack")
            return bracket(probes, s[0], math.inf, "attack")
        if 0.0 in probes and not probes[0.0]:  # misclassified at x (or failing at epsilon 0)
            return Bracket(0.0, 0.0, self.kind(method))
        return bracket(probes, *s, self.kind(method))

    def done(self, key: tuple[str, str, int]) -> bool:
        b = self.bracket(*key)
        return b is not None and b.done(self.spec.tol)

    def record(self, key: tuple[str, str, int], probes: list) -> None:
        self.record_all(key[1], [(key, eps, o.status) for eps, o in probes])
        if self.kind(key[1]) == "exact":
            for eps, o in probes:
                self.prove(key, eps, o.margin_lower, o.label)

    def record_all(self, method: str, rows) -> None:
        """Probes as (key, epsilon, status); an error decides nothing, so its search stays open
        (and is run again) instead of reading as a failed probe."""
        for key, eps, status in rows:
            ok = success(self.kind(method), status)
            if ok is not None:
                self.probes.setdefault(key, {})[float(eps)] = ok

    def prove(self, key: tuple[str, str, int], eps: float, lower, label: int) -> None:
        """Keep the targets that margin lower bounds ``lower`` at ``eps`` prove (the largest bound
        of each, where several probes at ``eps`` proved it). A proof is a fact about the network,
        the sample (every table-2 run indexes the MNIST test set) and the perturbation set."""
        found = proved_targets(lower, label)
        if found:
            got = self.proved.setdefault(key, {}).setdefault(float(eps), {})
            for j, b in found.items():
                got[j] = max(got.get(j, b), b)


def run_table2(spec: Table2Spec, store, *, scheduler: str | None = None, workers: int | None = None,
               progress: Callable[[Report, int], None] | None = None,
               on_start: Callable[[str, int], None] | None = None,
               rerun: str | None = None, replay: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, Report]:
    """Run (or resume) every search of ``spec``; returns (per-model table, per-sample radii, report).
    ``rerun="timeouts"`` first removes the stored timed-out probes of ``spec``'s models and
    samples, so the searches run them again (after a change to the MILP); ``replay`` runs none."""
    if rerun not in (None, "timeouts"):
        raise LpbenchError(f"rerun must be 'timeouts' or None, got {rerun!r}")
    from distributed import as_completed

    from lpbench.plugins import shipped
    from lpbench.sweep import tasks
    from lpbench.sweep.runner import _client, _dashboard, _errors, _Job

    t0 = time.perf_counter()
    report = Report()
    ids = _ids(spec)
    with Store(store) as st:
        st.save_sweep(spec.name, spec.to_json())
        if rerun == "timeouts":
            report.dropped = sum(st.delete(spec.key(m), model, None, spec.norm, m, ["timeout"], ids)
                                 for model in spec.models for m in spec.methods_of(model))
        s = _Searches(spec, st, ids)
        todo = [] if replay else [k for k in s.all() if not s.done(k)]
        if todo:
            labels = tasks.dataset("mnist").labels
            with _client(scheduler, workers, 10.0) as client:
                report.dashboard = _dashboard(client)
                if on_start is not None:
                    on_start(report.dashboard, len(todo))
                running, done = {}, as_completed()  # future key -> (search, epsilon or None, future)

                def submit(k, at: float | None) -> None:
                    model, method, sample = k
                    lo, hi = s.start(*k)
                    opts = {m: v for m, v in spec.options.items() if m in (method, "pgd")}
                    fut = client.submit(tasks.radius, model, "mnist", sample, int(labels[sample]), method,
                                        s.kind(method), lo, hi, spec.tol, spec.norm,
                                        dict(s.probes.get(k, {})), opts, shipped(method),
                                        GROW if method in STARTS else None, 1, s.top(k),
                                        s.proved.get(k), at, pure=False,
                                        priority=_priority(spec, model, method))
                    running[fut.key] = k, at, fut
                    done.add(fut)
                    report.tasks += 1

                def submit_ready() -> None:
                    busy = {k for k, *_ in running.values()}
                    for k in todo:
                        if k not in busy and s.start(*k) is not None:
                            exact = s.kind(k[1]) == "exact"  # its epsilon named: more may join it
                            grow = GROW if k[1] in STARTS else None
                            submit(k, s.bracket(*k).next_probe(spec.tol, grow, s.top(k)) if exact else None)
                    # workers left idle: more probes of the exact searches in flight, each in the
                    # widest piece of the gap that their probes in flight leave (Bracket.spare)
                    slots = sum(client.nthreads().values())
                    while len(running) < slots:
                        spare = next(((k, e) for k in todo if (pend := _pending(running, k))
                                      for e in [s.bracket(*k).spare(spec.tol, pend)] if e is not None), None)
                        if spare is None:
                            break
                        submit(*spare)

                submit_ready()
                for fut in done:
                    if fut.key not in running:  # cancelled: the bracket had passed it
                        continue
                    k, *_ = running.pop(fut.key)
                    model, method, sample = k
                    if fut.status == "finished":
                        probes, where = fut.result()
                    else:
                        job = _Job(model, "mnist", 0.0, method, (sample,), (int(labels[sample]),))
                        probes, where = [(0.0, _errors(job, fut.exception())[0])], {}
                    for eps, o in probes:
                        report.written += st.add(spec.key(method), model, eps, spec.norm, [o], where)
                        report.counts[o.status.value] = report.counts.get(o.status.value, 0) + 1
                    s.record(k, probes)
                    report.cancelled += _drop_passed(client, running, k, s.bracket(*k), spec.tol)
                    if k in todo and s.done(k):  # (not in todo: closed while this probe ran)
                        todo.remove(k)
                        report.searches += 1
                    elif k in todo and (not probes or any(success(s.kind(method), o.status) is None
                                                          for _, o in probes)):
                        todo.remove(k)  # an error decides nothing: the search stays open for the next run
                        report.open += 1
                    if progress is not None:
                        progress(report, len(todo))
                    submit_ready()
        per_sample = radii(spec, s)
    report.wall_s = time.perf_counter() - t0
    return summarize(spec, per_sample), per_sample, report


def _pending(running: Mapping[str, tuple], key: tuple[str, str, int]) -> list[float]:
    return [eps for k, eps, _ in running.values() if k == key and eps is not None]


def _drop_passed(client, running: dict, key: tuple[str, str, int], b: Bracket, tol: float) -> int:
    """Cancel the probes in flight of ``key`` that its bracket ``b`` has passed (at or outside
    its ends, or all once it is done); returns how many."""
    passed = [f for f, (k, eps, _) in running.items()
              if k == key and eps is not None and (b.done(tol) or not b.lo < eps < b.hi)]
    from lpbench.sweep.runner import cancel
    cancel(client, [running.pop(f)[2] for f in passed])
    return len(passed)


def _priority(spec: Table2Spec, model: str, method: str) -> int:
    """Dask priority: the models in order (a table fills model by model), and within a model
    the searches that wait on others (LP-LAST, LP-ALL, then the MILP) first once they are ready."""
    stage = 2 if method == "milp" else 1 if method in STARTS else 0
    return 10 * (len(spec.models) - spec.models.index(model)) + stage


def _ids(spec: Table2Spec) -> np.ndarray:
    if spec.samples:
        return np.asarray(spec.samples, np.int64)
    from lpbench.zoo import ten_test_images
    return np.asarray(ten_test_images()[2], np.int64)


def radii(spec: Table2Spec, s: _Searches) -> pd.DataFrame:
    """One row per (model, method, sample): the radius, its bracket, probes, seconds and whether
    the search finished. For the MILP also ``upper``: the smallest epsilon with a re-checked
    counterexample (a MILP-falsified probe, or the attacked radius), so the minimum distortion lies
    in (radius, upper]; ``exact`` when that interval is within the tolerance. A probe that timed
    out bounds nothing: ``upper`` never sits on one (nor, for the MILP's exact search, ``hi``).
    An exact search's probes, timeouts and seconds are those of every table-2 run in the store,
    whose decided probes it rests on (:class:`_Searches`); the others', ``spec``'s own."""
    times = {}
    for m in dict.fromkeys(spec.methods):
        exact = s.kind(m) == "exact"
        f = s.st.method_rows("table2:", m, spec.norm).assign(method=m) if exact else s.st.frame(spec.key(m))
        for (model, meth, sample), g in f.groupby(["model", "method", "sample"]):
            times[(model, meth, int(sample))] = (float(g.time_s.sum()), len(g), int((g.status == "error").sum()),
                                                 int((g.status == "timeout").sum()))
    falsified = {k: min([math.inf, *(e for e, ok in p.items() if ok is False)]) for k, p in s.probes.items()
                 if s.kind(k[1]) == "exact"}
    rows = []
    for k in s.all():
        b = s.bracket(*k)
        t, n, errors, timeouts = times.get(k, (0.0, 0, 0, 0))
        finished = b is not None and b.done(spec.tol)
        rows.append({"model": k[0], "method": k[1], "sample": k[2],
                     # an open exact search's lower end is a verified epsilon too (module doc)
                     "radius": b.radius if finished or (b and b.kind == "exact") else math.nan,
                     "lo": b.lo if b else math.nan, "hi": b.hi if b else math.nan,
                     "finished": finished, "probes": n, "errors": errors, "timeouts": timeouts, "time_s": t})
    df = pd.DataFrame.from_records(rows)
    if len(df):
        pgd = df[df.method == "pgd"].set_index(["model", "sample"]).radius
        up = [min(falsified.get((r.model, r.method, r.sample), math.inf), pgd.get((r.model, r.sample), math.nan))
              if r.method == "milp" else math.nan for r in df.itertuples()]
        df["upper"] = up
        df["exact"] = (df.method == "milp") & df.finished & (df.upper - df.radius <= spec.tol * (1 + 1e-9))
    return df


def summarize(spec: Table2Spec, per_sample: pd.DataFrame) -> pd.DataFrame:
    """Per model, over the samples it classifies correctly (``n_correct``; a misclassified sample
    has distortion 0 and no gap): mean radius x 1e-3 per method, median % gap to PGD with its 95%
    interval, seconds per method, the MILP's exact count, and ``violations`` (a certified radius
    above the attacked one, or above the MILP's upper end: must be 0, counted on every sample)."""
    rows = []
    for model in spec.models:
        d = per_sample[per_sample.model == model]
        pgd = d[d.method == "pgd"].set_index("sample").radius
        keep = pgd.index[pgd > 0]
        row: dict[str, Any] = {"model": model, "family": family(model), "training": model.split("-")[0],
                               "n_samples": int(len(pgd)), "n_correct": int(len(keep))}
        violations = 0
        for m in spec.methods_of(model):
            r = d[d.method == m].set_index("sample").radius
            violations += int((r > pgd).sum()) if m != "pgd" else 0
            r = r.reindex(keep)
            row[f"{m}_mean_e3"] = 1e3 * float(r.mean()) if r.notna().all() and len(r) else math.nan
            row[f"{m}_time_s"] = float(d[d.method == m].time_s.sum())
            if m in ("pgd", "milp"):
                continue
            gap = (100 * (pgd.reindex(keep) - r) / pgd.reindex(keep)).to_numpy(float)
            row[f"{m}_gap_median_pct"] = float(np.median(gap)) if len(gap) and np.isfinite(gap).all() else math.nan
            lo, hi = median_ci(gap)
            row[f"{m}_gap_ci95"] = "" if math.isnan(lo) else f"[{lo:.1f}, {hi:.1f}]"
        if "milp" in spec.methods_of(model):
            mi = d[d.method == "milp"].set_index("sample")
            row["milp_exact"] = f"{int(mi.exact.sum())}/{len(mi)}"
            upper = mi.upper.reindex(keep)
            row["milp_upper_mean_e3"] = 1e3 * float(upper.mean()) if upper.notna().all() and len(upper) else math.nan
            for m in spec.methods_of(model):
                if m not in ("pgd", "milp"):
                    violations += int((d[d.method == m].set_index("sample").radius > mi.upper).sum())
        row["violations"] = violations
        row["finished"] = bool(d.finished.all())
        rows.append(row)
    return pd.DataFrame.from_records(rows)

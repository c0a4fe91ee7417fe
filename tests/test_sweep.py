"""Sweeps on a real dask cluster: separate scheduler and worker processes, faults, resume, bad input.

* `dask scheduler` and two `dask worker` processes on 127.0.0.1 run an LP-ALL + MILP + PGD sweep;
  every expected outcome is in the store exactly once, LP-ALL equals the in-process method.
* A worker SIGKILLed mid-sweep: the sweep completes, nothing lost or written twice.
* The client SIGKILLed mid-sweep: a re-run computes only the missing outcomes.
* A task that raises (a tampered model file): error outcomes with the message, the rest goes on.
* The store survives a writer killed mid-write (transactions are whole).
* Bad sweep files and an unreachable scheduler: clear errors before any work.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import lpbench
from lpbench.errors import LpbenchError
from lpbench.problem import Perturbation
from lpbench.store import Store
from lpbench.sweep import experiment, load_spec, parse_spec, run_sweep

DASK = str(Path(sys.executable).parent / "dask")
BASE = {"name": "t", "models": ["LPD-MLP-B-0.1"], "epsilons": [0.1], "samples": "0:4", "block": 2,
        "lp_chunk": 40, "options": {"pgd": {"steps": 10, "restarts": 1}, "milp": {"time_limit": 60}}}


def _spec(**kw):
    return parse_spec({**BASE, "methods": ["pgd", "lp-all", "milp"], **kw})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def cluster():
    """A scheduler and two single-threaded workers (no nanny: a killed worker stays dead), each
    its own process; yields (address, [worker processes])."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                 "--name", f"w{k}"], env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for k in range(2)]
    procs += workers
    try:
        from distributed import Client
        with Client(address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def _expected(spec) -> set:
    return {(m, e, meth, s) for m, e, meth in spec.jobs() for s in range(4)}


def _stored(store, spec) -> list:
    with Store(store) as st:
        f = st.frame()
    keys = {experiment(spec, m) for m in spec.methods}
    f = f[f.experiment.isin(keys)]
    return [(r.model, r.epsilon, r.method, r.sample) for r in f.itertuples()]


def test_real_cluster_sweep_and_a_killed_worker(cluster, tmp_path):
    address, workers = cluster
    spec = _spec()
    store = tmp_path / "s.sqlite"
    report = run_sweep(spec, store, scheduler=address)
    rows = _stored(store, spec)
    assert sorted(rows) == sorted(_expected(spec)) and report.written == len(rows) == 12
    with Store(store) as st:
        f = st.frame()
    assert f.worker.str.startswith("tcp://127.0.0.1:").all() and f.worker.nunique() == 2
    assert f.versions.str.contains("lpbench=").all()
    # LP-ALL as slice tasks equals the in-process method
    from lpbench.data import load_dataset
    d = load_dataset("mnist", "test")
    ref = lpbench.verify(lpbench.load_model("LPD-MLP-B-0.1"), d.images[:4], d.labels[:4], Perturbation(0.1), ["lp-all"])
    lp = f[f.method == "lp-all"].sort_values("sample")
    for o, r in zip(ref, lp.itertuples()):
        got = np.array([np.nan if v is None else v for v in json.loads(r.margin_lower)])
        assert r.status == o.status.value and np.allclose(got, o.margin_lower, atol=1e-7, equal_nan=True)
    # a second sweep on the same cluster; one worker SIGKILLed once the first outcome is in
    spec2 = _spec(name="t2", samples="0:4")
    killed = []

    def kill(rep, total):
        if not killed:
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(rep.written)
    report = run_sweep(spec2, store, scheduler=address, progress=kill)
    rows = _stored(store, spec2)
    assert killed and workers[0].wait(timeout=30) == -signal.SIGKILL
    assert sorted(rows) == sorted(_expected(spec2)) and report.written == 12


def _sweep_once_stored(spec_file: Path, store: Path, workers: int, **popen) -> subprocess.Popen:
    """``lpbench sweep run`` in its own process group, returned once 2 outcomes are stored."""
    proc = subprocess.Popen([sys.executable, "-m", "lpbench.cli", "sweep", "run", str(spec_file), "--workers",
                             str(workers), "--store", str(store)], env=_env(), start_new_session=True, **popen)
    spec = load_spec(spec_file)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            if store.exists() and len(_stored(store, spec)) >= 2:
                break
        except (sqlite3.OperationalError, Exception):  # table not created yet
            continue
    return proc


def test_killed_client_resumes_with_only_the_missing_outcomes(tmp_path):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(textwrap.dedent("""
        name = "resume"
        models = ["LPD-MLP-B-0.1"]
        epsilons = [0.1]
        methods = ["lp-all"]
        samples = "0:12"
        lp_chunk = 25
    """))
    store = tmp_path / "s.sqlite"
    proc = _sweep_once_stored(spec_file, store, 1, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Store(store) as st:
        kept = st.frame().set_index(["method", "sample"]).created.to_dict()
    assert 2 <= len(kept) < 12, "the client should have been killed mid-sweep"
    report = run_sweep(load_spec(spec_file), store, workers=1)
    assert report.written == 12 - len(kept) and report.skipped == len(kept)
    with Store(store) as st:
        after = st.frame().set_index(["method", "sample"]).created.to_dict()
    assert len(after) == 12 and all(after[k] == v for k, v in kept.items())


def test_ctrl_c_stops_the_sweep_with_one_message_and_keeps_its_outcomes(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: exit status 130, one
    line saying the results are kept, no traceback from the client or its worker processes."""
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(textwrap.dedent("""
        name = "ctrlc"
        models = ["LPD-MLP-B-0.1"]
        epsilons = [0.1]
        methods = ["lp-all"]
        samples = "0:200"
        lp_chunk = 25
    """))
    store = tmp_path / "s.sqlite"
    proc = _sweep_once_stored(spec_file, store, 2, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    spec = load_spec(spec_file)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; finished results are kept in the store" in err
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out, err[-2000:]
    assert 2 <= len(_stored(store, spec)) < 200


def test_a_raising_task_is_an_error_outcome_and_the_sweep_goes_on(tmp_path, tampered_cnn_small):
    spec = parse_spec({**BASE, "models": ["LPD-MLP-B-0.1", "NOR-CNN-SMALL"], "epsilons": [0.1],
                       "methods": ["pgd", "lp-all"], "samples": "0:2"})
    store = tmp_path / "s.sqlite"
    report = run_sweep(spec, store, workers=1)
    with Store(store) as st:
        f = st.frame()
    assert len(f) == report.written == 8
    bad, good = f[f.model == "NOR-CNN-SMALL"], f[f.model == "LPD-MLP-B-0.1"]
    assert (bad.status == "error").all() and bad.stats.str.contains("sha256").all()
    assert not (good.status == "error").any()


def test_store_survives_a_writer_killed_mid_write(tmp_path):
    store = tmp_path / "s.sqlite"
    writer = textwrap.dedent(f"""
        import numpy as np
        from lpbench.problem import Outcome, Status
        from lpbench.store import Store
        st = Store({str(store)!r})
        for k in range(100000):
            outs = [Outcome("m", 1000 * k + i, 0, Status.VERIFIED, np.zeros(10), None, None, 0.0, {{}})
                    for i in range(1000)]
            st.add("e", "M", 0.1, "linf", outs)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        if store.exists():
            try:
                with sqlite3.connect(store) as db:
                    if db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] >= 3000:
                        break
            except sqlite3.OperationalError:
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store(store) as st:
        n = len(st.frame())
    assert n >= 3000 and n % 1000 == 0  # whole transactions only


def test_bound_method_options_in_sweeps():
    spec = parse_spec({**BASE, "methods": ["crown", "crown-ibp"],
                       "options": {"crown": {"strategy": "fixed(0.5)"}, "crown-ibp": {"beta": 0.5}}})
    assert spec.options["crown"] == {"strategy": "fixed(0.5)"}
    with pytest.raises(LpbenchError, match="options.crown-ibp"):
        parse_spec({**BASE, "methods": ["crown-ibp"], "options": {"crown-ibp": {"beta": 2}}})


@pytest.mark.parametrize("change,msg", [
    ('models = ["NO-SUCH-NET"]', "Known models"),
    ('methods = ["pgd", "magic"]', "unknown method"),
    ('bogus = 1', "unknown key"),
    ('epsilons = [-0.1]', "epsilon"),
    ('block = 0', "block"),
    ('[options.milp]\ntime_limit = 0', "time_limit"),
    ('[options.pgd]\nstepz = 3', "options.pgd"),
    ('[options.crown]\nstrategy = "sideways"', "options.crown"),
    ('name = ', "not valid TOML"),
])
def test_bad_sweep_files_fail_before_any_work(tmp_path, change, msg):
    lines = {"name": 'name = "bad"', "models": 'models = ["LPD-MLP-B-0.1"]', "epsilons": "epsilons = [0.1]",
             "methods": 'methods = ["pgd"]'}
    key = change.split("=")[0].strip()
    body = [v for k, v in lines.items() if k != key]
    text = "\n".join(body + [change]) + "\n"
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(text)
    store = tmp_path / "s.sqlite"
    res = subprocess.run([sys.executable, "-m", "lpbench.cli", "sweep", "run", str(spec_file), "--store", str(store)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr
    assert not store.exists()


def test_unreachable_scheduler_is_a_clear_error_within_seconds(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(LpbenchError, match="cannot reach the dask scheduler"):
        run_sweep(_spec(), tmp_path / "s.sqlite", scheduler=f"tcp://127.0.0.1:{_free_port()}", connect_timeout=3)
    assert time.perf_counter() - t0 < 30


def test_the_shipped_sweep_files_are_valid():
    files = sorted((Path(__file__).resolve().parents[1] / "cluster" / "sweeps").glob("*.toml"))
    assert files
    for f in files:
        assert load_spec(f).jobs()


def test_rerun_policies_status_and_export(tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from lpbench.sweep.results import export, status
    spec = parse_spec({**BASE, "name": "small", "methods": ["pgd", "lp-greedy"], "samples": "0:3"})
    store = tmp_path / "s.sqlite"
    assert run_sweep(spec, store, workers=1).written == 6
    with sqlite3.connect(store) as db:  # pretend two outcomes had failed and timed out
        db.execute("UPDATE outcomes SET status='error' WHERE method='pgd' AND sample=0")
        db.execute("UPDATE outcomes SET status='timeout' WHERE method='lp-greedy' AND sample=1")
    report = run_sweep(spec, store, workers=1, rerun="failed")
    assert (report.written, report.skipped) == (1, 5)
    report = run_sweep(spec, store, workers=1, rerun="timeouts")
    assert (report.written, report.skipped) == (1, 5)
    with Store(store) as st:
        assert set(st.frame().status) <= {"verified", "falsified", "unknown"}
        df = status(st, "small")
        assert list(df.done) == [3, 3] and list(df.samples) == [3, 3]
        csv = export(st, "small", tmp_path / "out.csv")
        pq_path = export(st, "small", tmp_path / "out.parquet")
        with pytest.raises(LpbenchError, match="no sweep named"):
            status(st, "nope")
    assert csv.read_text().startswith("# lpbench sweep small: {")
    assert len(pd.read_csv(csv, comment="#")) == 6
    table = pq.read_table(pq_path)
    assert table.num_rows == 6 and json.loads(table.schema.metadata[b"lpbench.sweep"])["name"] == "small"
    assert run_sweep(spec, store, workers=1, rerun="all").written == 6


def test_an_export_imported_into_a_fresh_store_resumes_the_sweep(tmp_path):
    """A fresh checkout has no store; importing a committed export must bring every outcome back
    unchanged (so the sweep computes nothing again), keep the newer of two outcomes of one key,
    and refuse files that are not exports."""
    from lpbench.sweep.results import export, import_export
    spec = parse_spec({**BASE, "name": "small", "methods": ["pgd", "lp-greedy"], "samples": "0:3", "epsilons": [0.03]})
    store = tmp_path / "s.sqlite"
    assert run_sweep(spec, store, workers=1).written == 6
    with Store(store) as st:
        original = st.frame().sort_values(["method", "sample"], ignore_index=True)
        files = [export(st, "small", tmp_path / "out.csv"), export(st, "small", tmp_path / "out.parquet")]
    for i, path in enumerate(files):
        fresh = tmp_path / f"fresh{i}.sqlite"
        with Store(fresh) as st:
            got_spec, written, kept = import_export(st, path)
            assert (got_spec.name, written, kept) == ("small", 6, 0)
            back = st.frame().sort_values(["method", "sample"], ignore_index=True)
            assert back.equals(original)
            assert import_export(st, path)[1:] == (0, 6)  # nothing newer the second time
        report = run_sweep(spec, fresh, workers=1)
        assert (report.written, report.skipped) == (0, 6)
    with sqlite3.connect(fresh) as db:  # a newer local outcome survives, an older one is replaced
        db.execute("UPDATE outcomes SET status='timeout', created='2999-01-01T00:00:00.000Z' WHERE sample=0")
        db.execute("UPDATE outcomes SET status='timeout', created='2000-01-01T00:00:00.000Z' WHERE sample=1")
    with Store(fresh) as st:
        assert import_export(st, files[0])[1:] == (2, 4)
        merged = st.frame().set_index(["method", "sample"]).status
        assert (merged.xs(0, level="sample") == "timeout").all()
        assert merged.xs(1, level="sample").equals(original.set_index(["method", "sample"]).status.xs(1, level="sample"))
    res = subprocess.run([sys.executable, "-m", "lpbench.cli", "sweep", "status", "small", "--store", str(fresh)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and " 0.03 " in res.stdout  # the epsilon as given, not rounded to 0.0
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with Store(fresh) as st, pytest.raises(LpbenchError, match="not an lpbench sweep export"):
        import_export(st, bad)
    res = subprocess.run([sys.executable, "-m", "lpbench.cli", "sweep", "import", str(tmp_path / "nope.csv"),
                          "--store", str(fresh)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "no such export" in res.stderr and "Traceback" not in res.stderr


def test_a_sweep_run_a_part_at_a_time_exports_every_part(tmp_path):
    """Table 1's rows are often run one ``--rows`` at a time under one sweep name; the export
    must hold the outcomes of every spec the sweep ran with (not only its last), carry that
    history through an import into a fresh store, and still read exports that have none."""
    import pyarrow.parquet as pq

    from lpbench.sweep.results import export, import_export, read_export, status
    first = parse_spec({**BASE, "name": "parts", "methods": ["pgd"], "samples": "0:3"})
    second = parse_spec({**BASE, "name": "parts", "methods": ["pgd"], "samples": "3:5", "epsilons": [0.05]})
    store = tmp_path / "s.sqlite"
    assert run_sweep(first, store, workers=1).written == 3
    assert run_sweep(second, store, workers=1).written == 2
    assert run_sweep(first, store, workers=1).written == 0  # run again: it becomes the current spec
    assert run_sweep(second, store, workers=1).written == 0
    with Store(store) as st:
        assert [json.loads(s)["samples"] for s in st.sweep_history("parts")] == ["0:3", "3:5"]
        assert list(status(st, "parts").done) == [2]  # status: the current spec's jobs only
        files = [export(st, "parts", tmp_path / "parts.parquet"), export(st, "parts", tmp_path / "parts.csv")]
        everything = st.frame()
    for i, path in enumerate(files):
        spec, frame, history = read_export(path)
        assert spec == second and history == [first, second]
        assert len(frame) == 5 and sorted(zip(frame.epsilon, frame["sample"])) == \
            [(0.05, 3), (0.05, 4), (0.1, 0), (0.1, 1), (0.1, 2)]
        fresh = tmp_path / f"fresh{i}.sqlite"
        with Store(fresh) as st:
            assert import_export(st, path)[1:] == (5, 0)
            assert [json.loads(s) for s in st.sweep_history("parts")] == \
                [json.loads(first.to_json()), json.loads(second.to_json())]
            assert st.frame().sort_values(["epsilon", "sample"], ignore_index=True).drop(columns="created").equals(
                everything.sort_values(["epsilon", "sample"], ignore_index=True).drop(columns="created"))
        assert run_sweep(first, fresh, workers=1).written == 0
    table = pq.read_table(files[0])  # an export written before exports carried their history
    old = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata({b"lpbench.sweep": table.schema.metadata[b"lpbench.sweep"]}), old)
    spec, frame, history = read_export(old)
    assert history == [second] and len(frame) == 5
    with sqlite3.connect(store) as db:  # a store from before the history: its current spec starts one
        db.execute("DROP TABLE sweep_history")
    with Store(store) as st:
        assert [json.loads(s)["samples"] for s in st.sweep_history("parts")] == ["3:5"]


def test_paired_full_set_estimate_by_hand():
    """The anchored estimate on a hand-made store frame: anchor open on 30% of all 10,000 images;
    on a 4-image subset the certifier closes one of the two images the anchor leaves open: per-image
    differences (0, -1, 0, 0), mean -0.25, sd 0.5, so the estimate is 30 - 25 = 5 (%) with
    half-width 100 * 1.96 * 0.5 / 2."""
    import pandas as pd
    from lpbench.experiments.reproduce import N_TEST, anchored
    full = pd.DataFrame({"model": "M", "epsilon": 0.1, "method": "lp-greedy", "experiment": "full",
                         "sample": np.arange(N_TEST),
                         "status": np.where(np.arange(N_TEST) < 3000, "unknown", "verified")})
    ids = [10, 20, 5000, 6000]
    sub = pd.DataFrame({"model": "M", "epsilon": 0.1, "sample": ids * 2,
                        "method": ["lp-greedy"] * 4 + ["lp-all"] * 4, "experiment": ["g"] * 4 + ["a"] * 4,
                        "status": ["unknown", "unknown", "verified", "verified",
                                   "unknown", "verified", "verified", "verified"]})
    df = pd.DataFrame({"network": ["M"], "epsilon": [0.1]})
    out = anchored(df, pd.concat([full, sub]), ids, {"lp-greedy": "g", "lp-all": "a"}, "full")
    assert out.lp_greedy_upper_full.iloc[0] == pytest.approx(30.0)
    assert out.lp_all_upper_full_est.iloc[0] == pytest.approx(5.0)
    half = 100 * 1.959963984540054 * 0.5 / 2
    assert out.lp_all_upper_full_est_interval.iloc[0] == f"[0.00, {5 + half:.2f}]"  # clipped at 0
    with pytest.raises(RuntimeError, match="anchor"):
        anchored(df, pd.concat([full.iloc[:-1], sub]), ids, {"lp-greedy": "g", "lp-all": "a"}, "full")


def test_reproduce_table1_writes_the_table_with_intervals(tmp_path):
    """`lpbench reproduce table1` runs the 11 rows as a sweep and writes Table 1 with Wilson
    intervals and projected full-set cost over a subset; a re-run computes nothing."""
    args = [sys.executable, "-m", "lpbench.cli", "reproduce", "table1", "--samples", "random:3", "--methods",
            "pgd,lp-greedy,ibp", "--workers", "1", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, env=_env())
    assert res.returncode == 0, res.stderr
    import pandas as pd
    df = pd.read_csv(tmp_path / "table1_random3.csv", comment="#")
    assert len(df) == 11 and (df.conflicts == 0).all()
    assert (df.pgd_lower_pct <= df.lp_greedy_upper_pct).all() and (df.lp_greedy_upper_pct <= df.ibp_upper_pct).all()
    assert df.lp_greedy_upper_ci95.str.match(r"\[\d+\.\d\d, \d+\.\d\d\]").all()
    assert (df.lp_greedy_projected_full_s > 0).all()
    text = (tmp_path / "table1_random3.md").read_text()
    assert "random:3 (a fixed random subset of 3)" in text and "reproduce-table1" in text
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, env=_env())
    assert res.returncode == 0 and "dask dashboard" not in res.stderr  # all stored: no cluster started
    again = pd.read_csv(tmp_path / "table1_random3.csv", comment="#")
    assert again.filter(like="_pct").equals(df.filter(like="_pct"))
    # --rows: a subset of the rows, from the same stored outcomes, under its own name
    res = subprocess.run([*args, "--rows", "8,5", "--rerun", "timeouts"], capture_output=True, text=True, timeout=600, env=_env())
    assert res.returncode == 0 and "dask dashboard" not in res.stderr, res.stderr
    part = pd.read_csv(tmp_path / "table1_random3_rows5-8.csv", comment="#")
    assert list(part.network) == ["NOR-MLP-B", "LPD-MLP-B-0.1"]
    assert part.filter(like="_pct").equals(df.iloc[[4, 7]].reset_index(drop=True).filter(like="_pct"))


def test_anchor_needs_a_random_subset_with_lp_greedy(tmp_path, monkeypatch, capsys):
    """--anchor on the first N images (not a random subset) or without LP-GREEDY: a one-line error
    before anything runs."""
    from helpers import run_cli
    for samples, methods in (("3", "lp-greedy"), ("random:3", "ibp")):
        code, _, err = run_cli(monkeypatch, capsys, "reproduce", "table1", "--samples", samples, "--methods", methods,
                               "--anchor", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path))
        assert code != 0 and "random subset" in err and "Traceback" not in err
        assert not (tmp_path / "s.sqlite").exists() or not list(tmp_path.glob("table1*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_workers_keep_their_heap_under_dasks_malloc_setting():
    """dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap
    threshold at 128 KiB: a 4 MiB buffer is then mapped afresh (and faulted in page by page)
    each time. After the tasks' :func:`keep_heap` it comes from the heap (glibc's ``mallinfo2``
    counts the mapped blocks)."""
    probe = textwrap.dedent("""
        import ctypes, sys
        if sys.argv[1] == "keep":
            from lpbench.sweep.tasks import keep_heap
            assert keep_heap()
        class Info(ctypes.Structure):
            _fields_ = [(f, ctypes.c_size_t) for f in ("arena ordblks smblks hblks hblkhd usmblks "
                                                       "fsmblks uordblks fordblks keepcost").split()]
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes, libc.mallinfo2.restype = [ctypes.c_void_p], Info
        before = libc.mallinfo2().hblks
        buf = libc.malloc(4 << 20)
        print(libc.mallinfo2().hblks - before)
        libc.free(buf)
    """)
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    mapped = {how: int(subprocess.run([sys.executable, "-c", probe, how], env=env, capture_output=True,
                                      text=True, check=True).stdout) for how in ("dask", "keep")}
    assert mapped == {"dask": 1, "keep": 0}


def _sleep_in(pidfile: str) -> None:
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(3600)


def test_cancel_stops_a_running_task_with_its_worker_process(tmp_path):
    """``runner.cancel`` restarts the worker of a task that would otherwise run on (a MILP inside
    the solver ignores a cancelled future): its process is gone, and the next task runs in a new
    one."""
    from lpbench.sweep.runner import _client, cancel
    pidfile = tmp_path / "pid"
    with _client(None, 1, 10.0) as client:
        fut = client.submit(_sleep_in, str(pidfile), pure=False)
        while not (pidfile.exists() and pidfile.read_text()):
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        cancel(client, [fut])
        assert fut.cancelled()
        new = client.submit(os.getpid, pure=False).result(timeout=120)
    assert new != pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

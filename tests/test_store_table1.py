"""The results store and the Table 1 experiment on a few samples."""

import numpy as np
import pytest

import lpbench
from lpbench.data import load_dataset
from lpbench.experiments.table1 import Row, reference, table1_rows
from lpbench.problem import Outcome, Status
from lpbench.store import Store


def test_store_round_trip_and_resume_keys(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        outs = [Outcome("crown", i, 3, Status.VERIFIED if i % 2 else Status.UNKNOWN,
                        np.array([0.5, np.nan, 1.0]), None, None, 0.01, {"device": "cpu"}) for i in range(5)]
        st.add("exp", "M", 0.1, "linf", outs)
        st.add("exp", "M", 0.1, "linf", outs[:2])  # re-adding replaces, never duplicates
        assert st.done("exp", "M", 0.1, "linf", "crown") == set(range(5))
        assert st.done("exp", "M", 0.2, "linf", "crown") == set()
        df = st.frame("exp")
    assert len(df) == 5 and set(df.status) == {"verified", "unknown"}
    assert df.min_margin_lower.iloc[0] == pytest.approx(0.5)


def test_stored_stats_are_strict_json_that_sqlite_can_query(tmp_path):
    """A MILP target with no incumbent and an unbounded dual bound: the stats column keeps null
    for them, so SQLite's json_extract (which refuses NaN and Infinity) reads every row."""
    stats = {"decided_by": "milp", "nodes": np.int64(7),
             "targets": [{"target": 4, "incumbent": float("nan"), "bound": float("-inf")}]}
    with Store(tmp_path / "s.sqlite") as st:
        st.add("exp", "M", 0.1, "linf", [Outcome("milp", 0, 3, Status.TIMEOUT, None, None, None, 1.0, stats)])
        row = st._db.execute("SELECT json_extract(stats, '$.decided_by'), json_extract(stats, '$.nodes'),"
                             " json_type(stats, '$.targets[0].incumbent'), json_type(stats, '$.targets[0].bound')"
                             " FROM outcomes").fetchone()
    assert row == ("milp", 7, "null", "null")


def test_table1_rows_are_the_papers():
    rows = table1_rows()
    assert len(rows) == 11 and rows[0] == Row("ADV-MLP-B-0.03", 0.03) and rows[-1] == Row("LPD-MLP-B-0.4", 0.4)


def test_quick_table1_is_consistent_and_resumes(tmp_path):
    rows = [Row("NOR-MLP-B", 0.02), Row("LPD-MLP-B-0.1", 0.1)]
    store = tmp_path / "t.sqlite"
    opts = {"pgd": {"steps": 20, "restarts": 2}}
    df = lpbench.table1(40, ["pgd", "lp-greedy", "crown", "ibp"], rows, store=store, options=opts)
    assert list(df.network) == ["NOR-MLP-B", "LPD-MLP-B-0.1"]
    assert (df.conflicts == 0).all()
    for c in ["lp_greedy_upper_pct", "crown_upper_pct", "ibp_upper_pct"]:
        assert (df.pgd_lower_pct <= df[c]).all() and (df.test_error_pct <= df.pgd_lower_pct).all()
    # the test error column is the float64 misclassification rate of those 40 images
    data = load_dataset("mnist", "test")
    net = lpbench.load_model("NOR-MLP-B")
    err = 100 * np.mean(net.logits64(data.images[:40]).argmax(1) != data.labels[:40])
    assert df.test_error_pct.iloc[0] == pytest.approx(err)
    # a second run over more samples reuses the first 40 and computes only the rest
    with Store(store) as st:
        before = len(st.frame())
    lpbench.table1(50, ["pgd", "lp-greedy", "crown", "ibp"], rows, store=store, options=opts)
    with Store(store) as st:
        after = len(st.frame())
    assert after - before == 10 * 5 * 2  # 10 new samples x (clean + 4 methods) x 2 rows
    # other PGD options are a different experiment: PGD recomputed, bound methods reused
    lpbench.table1(40, ["pgd", "lp-greedy"], rows[:1], store=store, options={"pgd": {"steps": 10, "restarts": 1}})
    with Store(store) as st:
        assert len(st.frame()) == after + 40


def test_reference_has_the_papers_lp_greedy_column():
    ref = reference()
    assert ref.lp_greedy_upper_pct.tolist()[:3] == [13.40, 33.09, 71.34]


def test_lp_greedy_reproduces_the_paper_on_a_full_row():
    """NOR-MLP-B at eps=0.02 over all 10,000 test images: the paper's LP-GREEDY column is 35.11%."""
    data = load_dataset("mnist", "test")
    net = lpbench.load_model("NOR-MLP-B")
    outs = lpbench.verify(net, data.images, data.labels, lpbench.Perturbation(0.02), ["lp-greedy"], batch_size=1000)
    upper = 100 * sum(o.status is not Status.VERIFIED for o in outs) / len(outs)
    assert abs(upper - 35.11) <= 0.1


def test_sample_specs():
    """N is the first N, A:B a range, I,J,... those ids (a single id needs A:A+1), random:N a
    fixed sorted subset; anything else is refused with a message."""
    from lpbench.errors import LpbenchError
    from lpbench.experiments.api import sample_ids
    assert sample_ids("3", 10).tolist() == [0, 1, 2] and sample_ids("4:6", 10).tolist() == [4, 5]
    assert sample_ids("8491,1759", 10000).tolist() == [8491, 1759]
    r = sample_ids("random:5", 100)
    assert len(r) == 5 and r.tolist() == sorted(r.tolist()) == sample_ids("random:5:0", 100).tolist()
    for bad in ("1,x", "9,10", "a:b", "many", "0"):
        with pytest.raises(LpbenchError):
            sample_ids(bad, 10)

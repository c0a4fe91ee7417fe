"""``lpbench reproduce assemble``: one Table 1 from the tables of several runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli

from lpbench.errors import LpbenchError
from lpbench.experiments.assemble import assemble
from lpbench.report.writers import write_table

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _source(path: Path, samples: str, n: int, rows: list[dict]) -> Path:
    df = pd.DataFrame([{"network": "NOR-MLP-B", "epsilon": 0.02, "n_samples": n, **r} for r in rows])
    write_table(df, path.with_suffix(""), {"command": f"lpbench test {path.stem}", "commit": "abc",
                                           "samples": samples}, "t", csv_only=True)
    return path


@pytest.fixture
def runs(tmp_path):
    full = _source(tmp_path / "full.csv", "0:10000 (all)", 10000,
                   [{"test_error_pct": 2.05, "pgd_lower_pct": 10.19, "lp_all_upper_pct": 26.41,
                     "lp_all_time_s": 100.0, "crown_upper_pct": 28.69}])
    milp = _source(tmp_path / "milp.csv", "0:10000 (all)", 10000,
                   [{"test_error_pct": 2.05, "pgd_lower_pct": 10.20, "milp_lower_pct": 10.26,
                     "milp_upper_pct": 10.40, "milp_timeouts": 14}])
    sub = _source(tmp_path / "sub.csv", "random:1000", 1000,
                  [{"test_error_pct": 2.2, "pgd_lower_pct": 10.7, "milp_lower_pct": 10.7, "milp_upper_pct": 10.8,
                    "lp_last_upper_pct": 29.8, "lp_last_upper_ci95": "[27.05, 32.71]",
                    "lp_last_upper_full_est": 29.61, "lp_last_time_s": 95.5,
                    "lp_last_projected_full_s": 955.0, "lp_all_upper_pct": 27.5}])
    return full, milp, sub


def test_each_column_comes_from_the_largest_run_and_differences_are_listed(runs):
    full, milp, sub = runs
    df, _, diffs, checks = assemble([full, milp, sub])
    row = df.iloc[0]
    assert (row.pgd_lower_pct, row.pgd_source) == (10.19, "full.csv")  # a tie: the source named first
    assert (row.milp_upper_pct, row.milp_samples, row.milp_timeouts) == (10.40, 10000, 14)
    assert (row.lp_all_upper_pct, row.lp_all_samples) == (26.41, 10000)
    assert (row.lp_last_upper_pct, row.lp_last_samples, row.lp_last_source) == (29.8, 1000, "sub.csv")
    assert row.lp_last_upper_ci95 == "[27.05, 32.71]" and row.lp_last_upper_full_est == "29.61"
    assert row.paper_milp_upper_pct == 13.48
    # the PGD of the two full-set runs differ; the subset is never compared with the full set
    assert diffs[["column", "value", "other_value"]].values.tolist() == [["pgd_lower_pct", 10.19, 10.20]]
    assert checks.holds.all()
    # each check stays inside one sample set: LP-LAST (subset only) never meets a full-set column
    assert set(checks.samples) == {"0:10000 (all)", "random:1000"}
    assert set(checks[checks.check.str.contains("lp_last")].samples) == {"random:1000"}
    assert "ordering: milp_upper_pct <= lp_all_upper_pct" in set(checks.check)
    assert "ordering: lp_all_upper_pct <= crown_upper_pct" in set(checks.check)


def test_the_command_writes_the_table_and_fails_on_a_violated_bound(runs, tmp_path, monkeypatch, capsys):
    full, milp, sub = runs
    out = tmp_path / "out" / "table1"
    code, out_, err = run_cli(monkeypatch, capsys, "reproduce", "assemble", str(full), str(milp), str(sub), "--out", str(out))
    assert code == 0, err
    md = out.with_suffix(".md").read_text()
    assert "full.csv" in md and "lpbench test sub" in md and "1 found." in md
    assert "CPU-hours to run the subset columns on all 10,000 images" in md
    # an assembled table is not a source
    code, out_, err = run_cli(monkeypatch, capsys, "reproduce", "assemble", str(out.with_suffix(".csv")))
    assert code == 2 and "itself an assembled table" in err
    # a MILP that verified what another full-set run's PGD falsified: lower > upper
    bad = _source(tmp_path / "bad.csv", "0:10000 (all)", 10000,
                  [{"pgd_lower_pct": 11.0, "lp_all_upper_pct": 26.41}])
    code, out_, err = run_cli(monkeypatch, capsys, "reproduce", "assemble", str(milp), str(bad), "--out", str(tmp_path / "b"))
    assert code == 2 and "pgd_lower_pct <= milp_upper_pct" in err
    assert "Traceback" not in err


def test_bad_sources_are_clear_errors(runs, tmp_path, monkeypatch, capsys):
    full, _, _ = runs
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    for args, msg in [([str(full), str(full)], "named twice"), ([str(other)], "not a Table 1 CSV"),
                      ([str(tmp_path / "missing.csv")], "cannot read")]:
        with pytest.raises(LpbenchError, match=msg):
            assemble(args)
    code, out_, err = run_cli(monkeypatch, capsys, "reproduce", "assemble", str(full), "--out", str(full.with_suffix("")))
    assert code == 2 and "overwrite a source" in err


def test_the_committed_table_1_runs_agree():
    """The committed runs bound the same robust errors: every lower bound <= every upper bound and
    the theory's orderings hold wherever two runs share a sample set."""
    names = sorted(p for p in RESULTS.rglob("table1*.csv") if "assembled" not in p.name)
    df, _, _, checks = assemble(names)
    assert len(df) == 11 and checks.holds.all() and len(checks) > 100
    assert (df.test_error_pct == df.paper_test_error_pct).all()


# --------------------------------------------------------------------------------------------
# Table 2


def _copy_run(src: Path, dst: Path) -> Path:
    """A Table 2 run's CSV and its per-sample radii, copied to ``dst`` (a .csv path)."""
    dst.write_text(src.read_text())
    dst.with_name(dst.stem + "_samples.csv").write_text(src.with_name(src.stem + "_samples.csv").read_text())
    return dst


def test_table2_takes_each_model_and_method_from_the_first_finished_run(tmp_path, monkeypatch, capsys):
    from lpbench.experiments.assemble import assemble_table2
    newer = RESULTS / "table2_mlp-2-100" / "table2_subset.csv"
    older = RESULTS / "table2.csv"
    table, radii, _, _, diffs, checks = assemble_table2([newer, older])
    by = table.set_index("model")
    new = pd.read_csv(newer, comment="#").set_index("model")
    old = pd.read_csv(older, comment="#").set_index("model")
    assert by.loc["NOR-MLP-2-100", "milp_mean_e3"] == pytest.approx(new.loc["NOR-MLP-2-100", "milp_mean_e3"], abs=1e-3)
    assert by.loc["NOR-CNN-WIDE-1", "lp-all_mean_e3"] == pytest.approx(old.loc["NOR-CNN-WIDE-1", "lp-all_mean_e3"],
                                                                       abs=1e-3)
    assert len(table) == len(old) and checks.holds.all() and len(checks) == 10 * len(old)
    assert set(diffs[diffs.method == "milp"].model) == {"NOR-MLP-2-100", "ADV-MLP-2-100", "LPD-MLP-2-100"}
    assert (table.violations == 0).all()
    # the other order: the older run's columns, but the MILP's from the run with more samples exact
    by2 = assemble_table2([older, newer])[0].set_index("model")
    assert (old.loc["NOR-MLP-2-100", "milp_exact"], new.loc["NOR-MLP-2-100", "milp_exact"]) == ("1/10", "5/10")
    assert by2.loc["NOR-MLP-2-100", "milp_exact"] == "5/10"
    assert by2.loc["NOR-MLP-2-100", "milp_mean_e3"] == pytest.approx(new.loc["NOR-MLP-2-100", "milp_mean_e3"], abs=1e-3)
    assert by2.loc["NOR-MLP-2-100", "pgd_mean_e3"] == pytest.approx(old.loc["NOR-MLP-2-100", "pgd_mean_e3"], abs=1e-3)
    assert by2.loc["NOR-MLP-2-100", "pgd_mean_e3"] != pytest.approx(new.loc["NOR-MLP-2-100", "pgd_mean_e3"], abs=1e-3)
    out = tmp_path / "t2"
    code, _, err = run_cli(monkeypatch, capsys, "reproduce", "assemble-table2", str(newer), str(older), "--out", str(out))
    assert code == 0, err
    assert all((tmp_path / f).exists() for f in ("t2.md", "t2_samples.csv", "t2_figure3.png", "t2_figure3.pdf"))


def test_table2_bad_sources_and_an_unsound_radius_are_errors(tmp_path, monkeypatch, capsys):
    from lpbench.experiments.assemble import assemble_table2
    run = _copy_run(RESULTS / "table2_mlp-2-100" / "table2_subset.csv", tmp_path / "run.csv")
    radii = pd.read_csv(tmp_path / "run_samples.csv")
    bad = radii.copy()
    pgd = bad[(bad.method == "pgd")].set_index(["model", "sample"]).radius
    row = bad.index[(bad.method == "crown")][0]
    bad.loc[row, "radius"] = pgd[(bad.loc[row, "model"], bad.loc[row, "sample"])] * 1.5  # above the attack
    unsound = _copy_run(run, tmp_path / "unsound.csv")
    bad.to_csv(tmp_path / "unsound_samples.csv", index=False)
    code, _, err = run_cli(monkeypatch, capsys, "reproduce", "assemble-table2", str(run), str(unsound),
                           "--out", str(tmp_path / "x"))
    assert code == 2 and "soundness violation" in err and "Traceback" not in err
    (tmp_path / "lonely.csv").write_text(run.read_text())
    for args, msg in [([run, run], "named twice"), ([tmp_path / "lonely.csv"], "per-sample radii"),
                      ([RESULTS / "table1.csv"], "not a Table 2 CSV"),
                      ([run, RESULTS / "table2_1.csv"], "cannot read")]:
        with pytest.raises(LpbenchError, match=msg):
            assemble_table2(args)
    other = tmp_path / "other.csv"
    other.write_text(run.read_text().replace("# samples: MNIST test ids 5845,", "# samples: MNIST test ids 5846,"))
    (tmp_path / "other_samples.csv").write_text((tmp_path / "run_samples.csv").read_text())
    with pytest.raises(LpbenchError, match="different samples"):
        assemble_table2([run, other])

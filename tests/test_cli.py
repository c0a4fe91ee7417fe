"""The command line: summaries, JSON, and a clean error with exit status 2 for bad input."""

import json

import pytest
import torch

from helpers import run_cli as run


def test_json_stdout_of_a_fresh_process_running_highs_is_only_json(shared_mirror):
    """HiGHS prints a banner to file descriptor 1 when a process builds its first instance; in a
    separate process (where pytest's capture does not sit in between) every stdout line of
    ``verify --json`` with LP and MILP methods must still parse."""
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "lpbench.cli", "verify", "NOR-MLP-B", "--eps", "0.02", "--samples",
                           "0:2", "--methods", "lp-all,milp", "--time-limit", "30", "--json"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(recs) == 4 and {r["method"] for r in recs} == {"lp-all", "milp"}
    assert "Running HiGHS" not in proc.stderr


def test_models_lists_the_zoo(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "models", "--json")
    models = json.loads(out)
    assert code == 0 and len(models) == 41
    nor = next(m for m in models if m["name"] == "NOR-MLP-B")
    assert nor["table1_eps"] == [0.02, 0.03, 0.05] and nor["training"] == "NOR"


def test_verify_summary_and_json(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "verify", "NOR-MLP-B", "--eps", "0.02", "--samples", "0:20",
                         "--methods", "pgd,crown", "--json")
    assert code == 0
    def no_nan(name):  # strict JSON: NaN and Infinity are not JSON, jq rejects them
        raise AssertionError(f"{name} in the JSON output")
    recs = [json.loads(line, parse_constant=no_nan) for line in out.splitlines()]
    assert len(recs) == 40 and {r["method"] for r in recs} == {"pgd", "crown"}
    assert any(r["min_margin_lower"] is None for r in recs)  # PGD bounds no margin from below
    assert "robust error <=" in err and "robust error >=" in err


@pytest.mark.parametrize("args,msg", [
    (["verify", "NO-SUCH-NET", "--eps", "0.1"], "Known models"),
    (["verify", "NOR-MLP-B", "--eps", "-0.1"], "epsilon"),
    (["verify", "NOR-MLP-B", "--eps", "nan"], "epsilon"),
    (["verify", "NOR-MLP-B", "--eps", "inf"], "epsilon"),
    (["verify", "NOR-MLP-B", "--eps", "0.1", "--samples", "9990:10010"], "out of bounds"),
    (["verify", "NOR-MLP-B", "--eps", "0.1", "--samples", "abc"], "samples"),
    (["verify", "NOR-MLP-B", "--eps", "0.1", "--methods", "pgd,magic"], "unknown method"),
    (["table1", "--rows", "12"], "--rows"),
    (["reproduce", "table1", "--rows", "0,3"], "--rows"),
    (["reproduce", "table1", "--rows", "a"], "--rows"),
    (["table1", "--samples", "0"], "sample count"),
    (["table1", "--samples", "5", "--methods", "milp", "--time-limit", "0"], "--time-limit"),
    (["verify", "NOR-MLP-B", "--eps", "0.1", "--methods", "milp", "--time-limit", "-1"], "--time-limit"),
])
def test_bad_input_is_a_clean_error(monkeypatch, capsys, args, msg):
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 2
    assert msg in err and "Traceback" not in err + out


def test_data_that_does_not_fit_the_network_is_a_clean_error(monkeypatch, capsys, shared_mirror):
    code, out, err = run(monkeypatch, capsys, "verify", "ADV-CIFAR-CNN-SMALL", "--eps", "0.1", "--dataset", "mnist")
    assert code == 2 and "expects inputs of shape" in err and "Traceback" not in err + out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_without_gpu_is_a_clean_error(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "verify", "NOR-MLP-B", "--eps", "0.1", "--device", "cuda")
    assert code == 2 and "CUDA" in err


def test_tampered_weight_file_is_refused(monkeypatch, capsys, tampered_cnn_small):
    code, out, err = run(monkeypatch, capsys, "verify", "NOR-CNN-SMALL", "--eps", "0.01", "--samples", "0:2")
    assert code == 2 and "sha256" in err.lower() and "Traceback" not in err


def test_table1_writes_csv_md_tex_with_provenance(monkeypatch, capsys, tmp_path):
    code, out, err = run(monkeypatch, capsys, "table1", "--samples", "20", "--rows", "5",
                         "--methods", "pgd,lp-greedy", "--pgd-steps", "10", "--pgd-restarts", "1",
                         "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path))
    assert code == 0, err
    csv = (tmp_path / "table1_20_rows5.csv").read_text()
    for key in ("# command:", "# commit:", "# samples: MNIST test images 0:20", "# date:", "# machine:"):
        assert key in csv
    md = (tmp_path / "table1_20_rows5.md").read_text()
    assert "NOR-MLP-B" in md and "Provenance" in md
    assert (tmp_path / "table1_20_rows5.tex").exists()


def test_distortion_brackets_and_agrees_with_verify(monkeypatch, capsys):
    """`lpbench distortion`: lower <= upper; verify at eps below the lower bound cannot falsify,
    and the returned bracket is exact (solved to optimality) on this small MLP."""
    code, out, err = run(monkeypatch, capsys, "distortion", "LPD-MLP-B-0.1", "--samples", "1:2",
                         "--eps-max", "0.07", "--time-limit", "60", "--json")
    assert code == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["sample"] for r in recs] == [1]
    for r in recs:
        assert r["upper"] < 0.07  # image 1 has an adversarial point within the radius
        assert 0 <= r["lower"] <= r["upper"] and r["exact"]
        assert r["upper"] - r["lower"] <= 1e-4 * max(1.0, r["upper"])
        eps = f"{0.99 * r['lower']:.6f}"
        code, out, err = run(monkeypatch, capsys, "verify", "LPD-MLP-B-0.1", "--eps", eps, "--samples",
                             f"{r['sample']}:{r['sample'] + 1}", "--methods", "pgd", "--json")
        assert code == 0 and json.loads(out.splitlines()[0])["status"] != "falsified"


def test_distortion_time_limit_claims_nothing(monkeypatch, capsys):
    """A time limit far too short leaves the bracket open: not exact, and the note must not claim
    that no adversarial point exists within the radius (image 1 has one within 0.07)."""
    code, out, err = run(monkeypatch, capsys, "distortion", "LPD-MLP-B-0.1", "--samples", "1:2", "--eps-max",
                         "0.07", "--time-limit", "0.001", "--tightening", "interval", "--json")
    assert code == 0, err
    r = json.loads(out.splitlines()[0])
    assert not r["exact"] and r["lower"] <= 0.07
    assert "no adversarial point within" not in r["note"]


def test_distortion_bad_radius_is_a_clean_error(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "distortion", "NOR-MLP-B", "--samples", "0:1", "--eps-max", "0")
    assert code == 2 and "--eps-max" in err and "Traceback" not in err + out


def test_bench_milp_writes_every_image_beside_the_counts(monkeypatch, capsys, tmp_path):
    """The per-image file holds one row per image whose statuses add up to the summary's counts,
    and names the targets an undecided image leaves open."""
    import pandas as pd
    out = tmp_path / "bm"
    code, _, _ = run(monkeypatch, capsys, "bench", "milp", "--cases", "NOR-MLP-B:0.02", "--samples", "12",
                     "--time-limit", "20", "--out", str(out))
    assert code == 0
    summary = pd.read_csv(tmp_path / "bm.csv", comment="#")
    images = pd.read_csv(tmp_path / "bm_images.csv", comment="#", keep_default_na=False)
    assert sorted(images["sample"]) == list(range(12))
    counts = images.status.value_counts()
    for status in ("verified", "falsified", "timeout", "unknown", "error"):
        assert int(summary[status].iloc[0]) == int(counts.get(status, 0))
    assert (images.decided_by == "milp").sum() == int(summary.by_milp.iloc[0])
    assert ((images.status == "verified") <= (images.open_targets == "")).all()
    assert not (tmp_path / "bm_images.md").exists()

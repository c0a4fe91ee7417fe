"""CUDA paths agree with the CPU ones (run only where a GPU is present)."""

import numpy as np
import pytest
import torch

import lpbench
from lpbench.data import load_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("method", ["ibp", "fast-lin", "crown", "lp-greedy"])
def test_cuda_bounds_equal_cpu_bounds(method):
    data = load_dataset("mnist", "test")
    net = lpbench.load_model("NOR-MLP-B")
    args = (net, data.images[:64], data.labels[:64], lpbench.Perturbation(0.02), [method])
    cpu = lpbench.verify(*args, device="cpu")
    gpu = lpbench.verify(*args, device="cuda")
    for a, b in zip(cpu, gpu):
        assert a.status == b.status
        np.testing.assert_allclose(a.margin_lower, b.margin_lower, rtol=1e-9, atol=1e-9)


def test_cuda_pgd_counterexamples_are_rechecked():
    data = load_dataset("mnist", "test")
    net = lpbench.load_model("NOR-MLP-B")
    pset = lpbench.Perturbation(0.05)
    outs = lpbench.verify(net, data.images[:64], data.labels[:64], pset, ["pgd"], device="cuda")
    broken = [o for o in outs if o.status is lpbench.Status.FALSIFIED]
    assert len(broken) > 10
    for o in broken:
        assert pset.contains(o.counterexample, data.images[o.sample])
        assert net.logits64(o.counterexample)[0].argmax() != o.label

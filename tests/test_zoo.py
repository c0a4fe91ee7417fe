"""The model zoo (lpbench.zoo): manifest parsing, checksums, and loading all 41 models."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from lpbench import zoo
from lpbench.data import load_mnist
from lpbench.errors import ChecksumError, ModelError

MODELS = zoo.list_models()
NAMES = [m.name for m in MODELS]


def _packaged(info: zoo.ModelInfo) -> bool:
    return all((zoo.ZOO_DIR / f.path).is_file() for f in info.files)


def _expected_param_shapes(info: zoo.ModelInfo) -> dict[str, tuple[int, ...]]:
    """Parameter shapes worked out from the layer strings alone (torch conventions)."""
    shape, out = info.input_shape, {}
    for i, layer in enumerate(info.layers):
        args = re.findall(r"[\w=]+", layer)
        if layer.startswith("conv("):
            c_out = int(args[1])
            kw = dict(a.split("=") for a in args[2:])
            k, s, p = int(kw["k"]), int(kw.get("s", 1)), int(kw.get("p", 0))
            out[f"{i}.weight"], out[f"{i}.bias"] = (c_out, shape[0], k, k), (c_out,)
            shape = (c_out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif layer.startswith("linear("):
            n = int(args[1])
            out[f"{i}.weight"], out[f"{i}.bias"] = (n, int(np.prod(shape))), (n,)
            shape = (n,)
        elif layer == "flatten":
            shape = (int(np.prod(shape)),)
    assert shape == (10,)
    return out


# --- manifest --------------------------------------------------------------------------------

def test_manifest_has_41_models_and_table1():
    assert len(MODELS) == 41 and len(set(NAMES)) == 41
    table1 = [m for m in MODELS if m.in_table1]
    assert len(table1) == 9 and all(m.paper_test_error_pct is not None for m in table1)
    assert all(_packaged(m) for m in table1)
    assert {m.dataset for m in MODELS} == {"mnist", "cifar10"}
    nor = zoo.model_info("NOR-MLP-B")
    assert nor.train_eps is None and nor.table1_eps == (0.02, 0.03, 0.05)
    assert nor.layers == ("flatten", "linear(100)", "relu", "linear(100)", "relu", "linear(10)")


def test_width_factor_is_expanded():
    wide2 = zoo.model_info("ADV-CNN-WIDE-2")
    assert wide2.layers[0] == "conv(8,k=4,s=2,p=1)"
    assert wide2.layers[2] == "conv(16,k=4,s=2,p=1)"
    assert wide2.layers[5] == "linear(256)"
    assert zoo.model_info("NOR-CIFAR-CNN-WIDE-1").layers[5] == "linear(128)"
    for m in MODELS:
        assert not any(re.search(r"[(,]\d*k[,)]", layer) for layer in m.layers), m.name


def test_expand_width_cases():
    assert zoo.expand_width("conv(4k,k=4,s=2,p=1)", 2) == "conv(8,k=4,s=2,p=1)"
    assert zoo.expand_width("conv(k,k=3)", 4) == "conv(4,k=3)"
    assert zoo.expand_width("linear(128k)", 2) == "linear(256)"
    assert zoo.expand_width("conv(16,k=4,s=2,p=1)", None) == "conv(16,k=4,s=2,p=1)"
    assert zoo.expand_width("relu", 3) == "relu"
    with pytest.raises(ModelError, match="width factor"):
        zoo.expand_width("linear(128k)", None)


def test_unknown_model_lists_known_names():
    with pytest.raises(ModelError) as err:
        zoo.load_model("NOR-MLP-C")
    message = str(err.value)
    assert "NOR-MLP-C" in message and "Did you mean" in message
    assert all(name in message for name in NAMES)


# --- loading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_model_loads_with_the_right_shapes(name, request):
    info = zoo.model_info(name)
    if not _packaged(info):
        request.getfixturevalue("shared_mirror")
    net = zoo.load_model(name)
    assert net.name == name and tuple(net.input_shape) == info.input_shape
    expected = _expected_param_shapes(info)
    got = {}
    for i, layer in enumerate(net.layers):
        if hasattr(layer, "weight"):
            assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
            got[f"{i}.weight"], got[f"{i}.bias"] = layer.weight.shape, layer.bias.shape
    assert got == expected
    x = torch.rand(2, *info.input_shape)
    assert net.forward(x).shape == (2, 10)


def test_table1_models_reproduce_the_paper_test_error():
    """The test-error column of Table 1, to the hundredth of a percent (10,000 images)."""
    mnist = load_mnist("test")
    x = torch.from_numpy(mnist.images)
    for info in MODELS:
        if not info.in_table1:
            continue
        with torch.no_grad():
            pred = zoo.load_model(info.name).forward(x).argmax(1).numpy()
        error = 100.0 * float(np.mean(pred != mnist.labels))
        assert error == pytest.approx(info.paper_test_error_pct, abs=0.005), info.name


def test_mlp_a_follows_the_mipverify_convention():
    info = zoo.model_info("ADV-MLP-A-0.1")
    w = {f.key: np.load(zoo.ZOO_DIR / f.path) for f in info.files}
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    flat = x.reshape(5, -1).astype(np.float64)
    expected = np.maximum(flat @ w["W1"] + w["B1"], 0) @ w["W2"] + w["B2"]
    with torch.no_grad():
        got = zoo.load_model(info.name).forward(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_ten_test_images(shared_mirror):
    images, labels, indices = zoo.ten_test_images()
    assert images.shape == (10, 1, 28, 28) and images.dtype == np.float32
    assert labels.tolist() == [7, 3, 7, 0, 4, 3, 1, 5, 8, 0] and labels.dtype == np.int64
    mnist = load_mnist("test")
    np.testing.assert_array_equal(images, mnist.images[indices])
    np.testing.assert_array_equal(labels, mnist.labels[indices])


# --- checksums and broken files --------------------------------------------------------------

def test_tampered_fetched_model_is_refused(shared_mirror, tmp_path):
    name = "NOR-CNN-SMALL"
    zoo.load_model(name, data_dir=tmp_path)  # fetched from the mirror into tmp_path
    cached = tmp_path / "salman2019" / zoo.model_info(name).files[0].path
    cached.write_bytes(cached.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(ChecksumError, match="sha256"):
        zoo.load_model(name, data_dir=tmp_path)


def test_tampered_packaged_model_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "salman2019"
    shutil.copytree(zoo.ZOO_DIR, copy)
    path = copy / zoo.model_info("NOR-MLP-B").files[0].path
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\x00")
    monkeypatch.setattr(zoo, "ZOO_DIR", copy)
    with pytest.raises(ChecksumError, match="NOR_MLP_B.pth"):
        zoo.load_model("NOR-MLP-B")


def test_unreadable_weights_raise_model_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"definitely not a torch file")
    with pytest.raises(ModelError, match="bad.pth"):
        zoo._load_state_dict(bad)
    torch.save({"1.weight": [1, 2, 3]}, bad)
    with pytest.raises(ModelError):
        zoo._load_state_dict(bad)

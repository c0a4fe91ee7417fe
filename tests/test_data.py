"""Data sets and the checksummed fetcher (lpbench.data)."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from lpbench import data
from lpbench.errors import ChecksumError, DataError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(data._IDX_DTYPES[code]).tobytes()


# --- MNIST -----------------------------------------------------------------------------------

def test_mnist_test_split_is_packaged():
    ds = data.load_mnist("test")
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == np.float32
    assert ds.labels.shape == (10000,) and ds.labels.dtype == np.int64
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert np.bincount(ds.labels).tolist() == MNIST_TEST_COUNTS
    assert all(Path(p).parent == data.ASSETS_DIR / "mnist" for p in ds.source)
    assert len(ds) == 10000 and ds.name == "mnist-test"
    # pixels are exactly byte / 255
    assert np.allclose(ds.images * 255, np.round(ds.images * 255), atol=1e-4)


def test_mnist_train_split_through_fetcher(shared_mirror):
    ds = data.load_mnist("train")
    assert ds.images.shape == (60000, 1, 28, 28) and ds.labels.shape == (60000,)
    assert np.bincount(ds.labels).tolist() == MNIST_TRAIN_COUNTS
    assert all(Path(p).is_relative_to(data.data_dir()) for p in ds.source)


def test_unknown_split_and_dataset():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation")
    with pytest.raises(DataError, match="cifar10"):
        data.load_dataset("imagenet")


def test_load_dataset_dispatch():
    ds = data.load_dataset("mnist", "test")
    assert ds.name == "mnist-test" and ds.images.shape[0] == 10000
    assert set(data.DATASETS) == {"mnist", "cifar10"}


def test_tampered_packaged_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(data.ASSETS_DIR / "mnist", tmp_path / "mnist")
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1] + b"\x03"))
    monkeypatch.setattr(data, "ASSETS_DIR", tmp_path)
    with pytest.raises(ChecksumError, match="t10k-labels"):
        data.load_mnist("test")


# --- IDX -------------------------------------------------------------------------------------

def test_raw_and_gzip_idx_read_the_same(tmp_path):
    packed = data.ASSETS_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress(packed.read_bytes()))
    assert np.array_equal(data.read_idx(raw), data.read_idx(packed))


def test_idx_other_dtypes_round_trip(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 7
    path = tmp_path / "a.idx"
    path.write_bytes(_idx(a, 0x0C))
    out = data.read_idx(path)
    assert np.array_equal(out, a) and out.dtype.isnative


@pytest.mark.parametrize("payload, message", [
    (b"", "not an IDX"),
    (b"hello, this is not an IDX file", "not an IDX"),
    (bytes([0, 0, 0x08, 2, 0, 0]), "truncated"),
    (_idx(np.zeros((3, 4), np.uint8))[:-1], "size mismatch"),
    (_idx(np.zeros((3, 4), np.uint8)) + b"\x00", "size mismatch"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
])
def test_wrong_format_raises_data_error(tmp_path, payload, message):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message):
        data.read_idx(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        data.read_idx(tmp_path / "nope")


# --- data directory and fetcher --------------------------------------------------------------

def test_data_dir_resolution(tmp_path, monkeypatch):
    assert data.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("LPBENCH_DATA_DIR", str(tmp_path / "env"))
    assert data.data_dir() == tmp_path / "env"
    monkeypatch.delenv("LPBENCH_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.data_dir() == tmp_path / "xdg" / "lpbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.data_dir() == Path.home() / ".cache" / "lpbench"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror directory holding sub/file.bin, and an empty data directory."""
    payload = b"lpbench test payload\n" * 100
    (tmp_path / "mirror" / "sub").mkdir(parents=True)
    (tmp_path / "mirror" / "sub" / "file.bin").write_bytes(payload)
    monkeypatch.setenv("LPBENCH_MIRROR", str(tmp_path / "mirror"))
    return tmp_path / "mirror", tmp_path / "data", payload


def test_fetch_from_mirror_caches(mirror, monkeypatch):
    mirror_dir, root, payload = mirror
    got = data.fetch("zoo/sub/file.bin", _sha(payload), data_dir=root)
    assert got == root / "zoo" / "sub" / "file.bin" and got.read_bytes() == payload
    monkeypatch.delenv("LPBENCH_MIRROR")
    shutil.rmtree(mirror_dir)
    assert data.fetch("zoo/sub/file.bin", _sha(payload), data_dir=root) == got
    assert [p.name for p in got.parent.iterdir()] == ["file.bin"]  # no temporary files left


def test_fetch_finds_mirror_file_by_trailing_path_and_basename(mirror):
    mirror_dir, root, payload = mirror
    got = data.fetch("zoo/deep/sub/file.bin", _sha(payload), data_dir=root)
    assert got == root / "zoo" / "deep" / "sub" / "file.bin" and got.read_bytes() == payload
    (mirror_dir / "flat.bin").write_bytes(b"flat")
    assert data.fetch("a/b/flat.bin", _sha(b"flat"), data_dir=root).read_bytes() == b"flat"


def test_fetch_refuses_tampered_cached_file(mirror):
    _, root, payload = mirror
    got = data.fetch("sub/file.bin", _sha(payload), data_dir=root)
    got.write_bytes(payload + b"evil")
    for _ in range(2):  # refused every time, never silently replaced or re-used
        with pytest.raises(ChecksumError) as err:
            data.fetch("sub/file.bin", _sha(payload), data_dir=root)
        assert str(got) in str(err.value) and _sha(payload) in str(err.value)
        assert _sha(payload + b"evil") in str(err.value)
    assert got.read_bytes() == payload + b"evil"


def test_fetch_skips_bad_mirror_and_never_installs_it(tmp_path, mirror, monkeypatch):
    good, root, payload = mirror
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "file.bin").write_bytes(b"tampered")
    monkeypatch.setenv("LPBENCH_MIRROR", str(bad))
    with pytest.raises(ChecksumError, match="file.bin"):
        data.fetch("sub/file.bin", _sha(payload), data_dir=root)
    assert not (root / "sub" / "file.bin").exists()
    monkeypatch.setenv("LPBENCH_MIRROR", os.pathsep.join([str(bad), str(good)]))
    assert data.fetch("sub/file.bin", _sha(payload), data_dir=root).read_bytes() == payload


def test_fetch_missing_everywhere(mirror):
    _, root, _ = mirror
    with pytest.raises(DataError, match="LPBENCH_MIRROR") as err:
        data.fetch("nothing/here.bin", "0" * 64, urls=("https://example.invalid/x",),
                   data_dir=root)
    assert not isinstance(err.value, ChecksumError)


def test_fetch_from_url(tmp_path, monkeypatch):
    monkeypatch.delenv("LPBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("LPBENCH_MIRROR", raising=False)
    payload = b"served over a URL"
    src = tmp_path / "served.bin"
    src.write_bytes(payload)
    missing = (tmp_path / "missing.bin").as_uri()
    got = data.fetch("f.bin", _sha(payload), urls=(missing, src.as_uri()), data_dir=tmp_path / "d")
    assert got.read_bytes() == payload
    with pytest.raises(ChecksumError, match="expected"):
        data.fetch("g.bin", _sha(b"other"), urls=(src.as_uri(),), data_dir=tmp_path / "d")
    assert not (tmp_path / "d" / "g.bin").exists()


@pytest.mark.parametrize("relpath", ["/etc/passwd", "../outside", ""])
def test_fetch_rejects_paths_outside_data_dir(tmp_path, relpath):
    with pytest.raises(ValueError):
        data.fetch(relpath, "0" * 64, data_dir=tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        data.fetch("ok.bin", "not-a-digest", data_dir=tmp_path)


# --- CIFAR-10 --------------------------------------------------------------------------------

def _write_batch(path: Path, rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[int]]:
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"tiny", b"data": pixels, b"labels": labels}, fh, protocol=2)
    return pixels, labels


def test_cifar10_round_trip(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels, labels = _write_batch(folder / "test_batch", rng, 5)
    ds = data.load_dataset("cifar10", "test", data_dir=tmp_path)
    assert ds.images.shape == (5, 3, 32, 32) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == labels
    # channel-major rows: the first 1024 bytes are the red plane, row by row
    assert np.allclose(ds.images[2, 0, 1, 3], pixels[2, 32 + 3] / 255.0)
    assert np.allclose(ds.images[4, 2, 31, 31], pixels[4, 3071] / 255.0)
    train = [_write_batch(folder / f"data_batch_{i}", rng, 2) for i in range(1, 6)]
    ds = data.load_cifar10("train", data_dir=tmp_path)
    assert ds.images.shape == (10, 3, 32, 32)
    assert ds.labels.tolist() == sum((b[1] for b in train), [])


def test_cifar10_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load_cifar10("test", data_dir=tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match="3072"):
        data.load_cifar10("test", data_dir=tmp_path)


def test_cifar10_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": [0]}, fh)
    with pytest.raises(DataError, match="not allowed"):
        data.load_cifar10("test", data_dir=tmp_path)
    assert not marker.exists()

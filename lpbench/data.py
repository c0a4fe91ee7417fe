"""Data sets (MNIST IDX files, CIFAR-10 python batches) and a checksummed file fetcher.

Pixels are float32 in [0, 1] (raw byte / 255), images are NCHW and labels int64, the convention
of the convex-relaxation-barrier study (papers/convex-barrier-salman2019.txt), where perturbation
sets are intersected with the [0, 1] box.

Files live in a data directory (:func:`data_dir`). :func:`fetch` puts a file there from a local
mirror (``LPBENCH_MIRROR``) or a canonical URL, and never hands back a file whose sha256 differs
from the expected one. The MNIST test split ships inside the package (``lpbench/assets/mnist``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Sequence

import numpy as np

from lpbench.errors import ChecksumError, DataError

__all__ = [
    "ASSETS_DIR", "Dataset", "DATASETS", "data_dir", "fetch", "sha256_file", "read_idx",
    "load_mnist", "load_cifar10", "load_dataset",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"

_MNIST_FILES = {
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
}
_MNIST_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "4e612d6003de73386763f2c35c044ab376e830da80adb2347651a1f182f103a1",
    "t10k-labels-idx1-ubyte.gz": "909a5aeb9fcec3f171b427c45622a55f69dc15dd80bd0624413cbfbe12553c1c",
    "train-images-idx3-ubyte.gz": "d2cebd02927d553943b2679536bf602ec0cdcb6555ad87dda5d640e1d425faaf",
    "train-labels-idx1-ubyte.gz": "2a107763ddf1eef92815bfbb1b855b662a7228add9dfab29de697c644d666cda",
}
_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/{}",
    "https://storage.googleapis.com/cvdf-datasets/mnist/{}",
)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "IDX file format").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images (N, C, H, W) float32 in [0, 1], labels (N,) int64, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    source: tuple[Path, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# ---------------------------------------------------------------------------------------------
# data directory and fetcher


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path`` if given, else ``$LPBENCH_DATA_DIR``, else the user cache
    (``$XDG_CACHE_HOME/lpbench``, default ``~/.cache/lpbench``). It is not created here."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("LPBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "lpbench"


_data_root = data_dir  # alias: several functions below take a parameter named data_dir


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mirror_dirs() -> list[Path]:
    raw = os.environ.get("LPBENCH_MIRROR", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


def _copy_verified(src: BinaryIO, target: Path, sha256: str, origin: str) -> None:
    """Stream ``src`` into a temporary file beside ``target``, check its sha256 and only then
    rename it into place (atomic on one file system). Raises ChecksumError on a mismatch."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumError(
                f"{target.name} from {origin}: sha256 mismatch "
                f"(expected {sha256}, got {actual}); the file was not used")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(relpath: str, sha256: str, urls: Sequence[str] = (),
          data_dir: str | os.PathLike | None = None, timeout: float = 60.0) -> Path:
    """Return the path of ``relpath`` inside the data directory, with the given sha256.

    A file already there is used if its sha256 matches; one that does not match raises
    ChecksumError (it is never used or silently replaced). Otherwise the file is copied from the
    first local mirror that has it (``$LPBENCH_MIRROR``, directories separated by
    ``os.pathsep``; each is searched for every trailing part of ``relpath``, down to the bare
    file name), then downloaded from ``urls`` in order, unless ``$LPBENCH_OFFLINE`` is set.
    Every copy is verified before it is renamed into place.
    """
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"relpath must be a relative path inside the data directory: {relpath!r}")
    sha256 = sha256.lower()
    if len(sha256) != 64 or not set(sha256) <= set("0123456789abcdef"):
        raise ValueError(f"not a hex sha256 digest: {sha256!r}")
    target = _data_root(data_dir) / Path(*rel.parts)
    if target.is_file():
        actual = sha256_file(target)
        if actual == sha256:
            return target
        raise ChecksumError(
            f"{target}: sha256 mismatch (expected {sha256}, got {actual}); refusing to use it. "
            "Delete the file to fetch it again.")

    suffixes = [Path(*rel.parts[i:]) for i in range(len(rel.parts))]
    local = [m / suffix for m in _mirror_dirs() for suffix in suffixes if (m / suffix).is_file()]
    sources: list[tuple[str, Callable[[], BinaryIO]]] = [
        (str(p), lambda p=p: open(p, "rb")) for p in local]
    if not os.environ.get("LPBENCH_OFFLINE"):
        sources += [(u, lambda u=u: urllib.request.urlopen(u, timeout=timeout)) for u in urls]
    failures: list[str] = []
    bad_checksum = False
    for origin, open_source in sources:
        try:
            with open_source() as src:
                _copy_verified(src, target, sha256, origin)
            return target
        except ChecksumError as err:
            bad_checksum = True
            failures.append(str(err))
        except (OSError, ValueError) as err:  # URLError and socket timeouts are OSErrors
            failures.append(f"{origin}: {err}")
    offline = " (downloads disabled by LPBENCH_OFFLINE)" if os.environ.get("LPBENCH_OFFLINE") else ""
    tried = "; ".join(failures) if failures else f"no mirror had it and no URL was tried{offline}"
    message = (f"cannot fetch {relpath} into {target.parent} ({tried}). Set LPBENCH_MIRROR to a "
               "directory holding the file, or place it in the data directory yourself.")
    raise (ChecksumError if bad_checksum else DataError)(message)


# ---------------------------------------------------------------------------------------------
# IDX (MNIST)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt gzip stream: {err}") from err
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, told apart by the gzip magic bytes) into a
    native-endian numpy array. Raises DataError if the header or the size is wrong."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: IDX size mismatch: dimensions {dims} need {expected} bytes, "
                        f"the file has {len(raw)}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _mnist_file(name: str, split: str, data_dir: str | os.PathLike | None) -> Path:
    sha256 = _MNIST_SHA256[name]
    if split == "test":
        packaged = ASSETS_DIR / "mnist" / name
        if packaged.is_file():
            actual = sha256_file(packaged)
            if actual != sha256:
                raise ChecksumError(f"packaged {packaged}: sha256 mismatch (expected {sha256}, "
                                    f"got {actual}); reinstall lpbench")
            return packaged
    return fetch(f"mnist/{name}", sha256, urls=[u.format(name) for u in _MNIST_URLS],
                 data_dir=data_dir)


def load_mnist(split: str = "test", data_dir: str | os.PathLike | None = None) -> Dataset:
    """MNIST as (N, 1, 28, 28) float32 pixels in [0, 1] and int64 labels.

    The test split (10,000 images) comes from the copy packaged with lpbench; the train split
    (60,000) goes through :func:`fetch` into the data directory.
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; choose one of {sorted(_MNIST_FILES)}")
    paths = tuple(_mnist_file(name, split, data_dir) for name in _MNIST_FILES[split])
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{paths[0]}: expected uint8 images of shape (N, 28, 28), "
                        f"got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],) or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
        raise DataError(f"{paths[1]}: expected {images.shape[0]} uint8 labels in 0..9, "
                        f"got {labels.dtype} {labels.shape}")
    pixels = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return Dataset(pixels, labels.astype(np.int64), f"mnist-{split}", paths)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers, and nothing else, so that a
    hostile batch file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch: {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: not a CIFAR-10 python batch (need a dict with b'data' and "
                        "b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected uint8 data of shape (N, 3072), "
                        f"got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: expected {data.shape[0]} labels in 0..9, got {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(split: str = "test", data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 as (N, 3, 32, 32) float32 pixels in [0, 1] and int64 labels, from the standard
    python batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) in
    ``<data dir>/cifar-10-batches-py``. No download: extract cifar-10-python.tar.gz there."""
    if split not in _CIFAR_BATCHES:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; choose one of {sorted(_CIFAR_BATCHES)}")
    folder = _data_root(data_dir) / _CIFAR_DIR
    paths = tuple(folder / name for name in _CIFAR_BATCHES[split])
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"CIFAR-10 batches {missing} not found in {folder}; extract "
                        "cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) "
                        "into the data directory")
    parts = [_read_cifar_batch(p) for p in paths]
    images = np.concatenate([p[0] for p in parts]).astype(np.float32) / np.float32(255.0)
    labels = np.concatenate([p[1] for p in parts])
    return Dataset(images, labels, f"cifar10-{split}", paths)


# ---------------------------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., Dataset]] = {"mnist": load_mnist, "cifar10": load_cifar10}


def load_dataset(name: str, split: str = "test",
                 data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a registered data set (see ``DATASETS``) by name."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {sorted(DATASETS)}") from None
    return loader(split=split, data_dir=data_dir)

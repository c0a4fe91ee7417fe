"""The model zoo: the networks of the convex-relaxation-barrier study, with checksums.

Salman et al. 2019, "A Convex Relaxation Barrier to Tight Robustness Verification of Neural
Networks" (papers/convex-barrier-salman2019.txt). The manifest (``assets/salman2019/manifest.json``)
lists 41 models: the Table 1 MNIST MLPs (experiment_1, shipped with lpbench) and the networks of
the minimum-adversarial-distortion experiment, Section 6.2 (experiment_2, fetched into the data
directory through :func:`lpbench.data.fetch`, local mirrors first). Every weight file is checked
against its sha256 before it is opened.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from lpbench.data import ASSETS_DIR, fetch, sha256_file
from lpbench.errors import ChecksumError, DataError, ModelError
from lpbench.network import Network

__all__ = ["ModelFile", "ModelInfo", "MANIFEST_PATH", "list_models", "model_info", "load_model",
           "ten_test_images"]

ZOO = "salman2019"
ZOO_DIR = ASSETS_DIR / ZOO
MANIFEST_PATH = ZOO_DIR / "manifest.json"

# Canonical download locations, derived from the manifest's relative paths. Unverified offline:
# the files were taken from these repositories, but the URLs were not checked to resolve.
_MODEL_URL = "https://github.com/Hadisalman/robust-verify-benchmark/raw/master/models/{basename}"
_MIPVERIFY_URL = "https://github.com/vtjeng/MIPVerify_data/raw/master/{path}"

# The manifest has no checksums for ADV-MLP-A's numpy files and for the ten test images; these
# were computed from the files as distributed with the manifest.
_EXTRA_SHA256 = {
    "experiment_1/MIPVerify_data/weights/mnist/RSL18a/linf0.1/W1.npy":
        "074e6d3f6e2e9a3d55bbc62014e366e0d419657a27a90b0bec54d1d24e2c83f2",
    "experiment_1/MIPVerify_data/weights/mnist/RSL18a/linf0.1/B1.npy":
        "82e61ae93e229c823c4b3d536d2c17f41638e51fe4cb65d9d18262e4d0663e14",
    "experiment_1/MIPVerify_data/weights/mnist/RSL18a/linf0.1/W2.npy":
        "b6a3fc8aca69afd8ab63378f4b077e572b2593677dc9fca2ec3f545ea7c81af1",
    "experiment_1/MIPVerify_data/weights/mnist/RSL18a/linf0.1/B2.npy":
        "c6fcf4acc1f5f4fbeb1946cfc80fc99e2fb32ade2db53f5ffc8f9239457ace5b",
    "experiment_2/ten_test_images.npy":
        "41d6e92b6612c092fd59de562d20357c1b363218c872b26d01dbee9ef9bf18b5",
}

_WIDTH = re.compile(r"^(\d*)k$")  # a positional width "4k" / "k"; "k=4" (kernel size) is keyword


@dataclass(frozen=True)
class ModelFile:
    """One weight file: its role (``"state_dict"`` or a numpy array name such as ``"W1"``), its
    path relative to the zoo directory, and its sha256."""

    key: str
    path: str
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """A manifest entry with its architecture resolved (the width factor ``k`` expanded)."""

    name: str
    arch: str
    dataset: str
    training: str
    train_eps: float | None
    table1_eps: tuple[float, ...]
    paper_test_error_pct: float | None
    input_shape: tuple[int, ...]
    layers: tuple[str, ...]
    files: tuple[ModelFile, ...]

    @property
    def in_table1(self) -> bool:
        """Whether the paper reports this model in Table 1."""
        return bool(self.table1_eps)


def expand_width(layer: str, k: int | None) -> str:
    """Replace the width placeholder in a layer spec: ``"conv(4k,k=4,s=2,p=1)"`` with k=2 gives
    ``"conv(8,k=4,s=2,p=1)"`` and ``"linear(128k)"`` gives ``"linear(256)"``. Only positional
    arguments are widths; ``k=4`` is a kernel size and stays."""
    match = re.fullmatch(r"(\w+)\((.*)\)", layer.strip())
    if not match:
        return layer.strip()
    args = []
    for arg in (a.strip() for a in match.group(2).split(",")):
        width = _WIDTH.match(arg)
        if width:
            if k is None:
                raise ModelError(f"layer {layer!r} has a width factor k but the model gives none")
            arg = str(int(width.group(1) or 1) * k)
        args.append(arg)
    return f"{match.group(1)}({','.join(args)})"


def _parse_entry(entry: Mapping[str, Any], archs: Mapping[str, Any]) -> ModelInfo:
    name = entry["name"]
    arch = archs.get(entry["arch"])
    if arch is None:
        raise ModelError(f"manifest: model {name} names unknown architecture {entry['arch']!r}")
    if "file" in entry:
        files = (ModelFile("state_dict", entry["file"], entry["sha256"]),)
    else:
        try:
            files = tuple(ModelFile(key, path, _EXTRA_SHA256[path])
                          for key, path in entry["files"].items())
        except KeyError as err:
            raise ModelError(f"manifest: model {name}: no sha256 known for {err}") from None
    eps = entry.get("train_eps")
    error = entry.get("paper_test_error_pct")
    return ModelInfo(
        name=name, arch=entry["arch"], dataset=entry["dataset"], training=entry["training"],
        train_eps=None if eps is None else float(eps),
        table1_eps=tuple(float(e) for e in entry.get("table1_eps", ())),
        paper_test_error_pct=None if error is None else float(error),
        input_shape=tuple(int(d) for d in arch["input"]),
        layers=tuple(expand_width(layer, entry.get("k")) for layer in arch["layers"]),
        files=files)


@lru_cache(maxsize=None)
def _catalogue() -> dict[str, ModelInfo]:
    try:
        manifest = json.loads(MANIFEST_PATH.read_text())
        entries = manifest["models"]
        archs = manifest["architectures"]
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"cannot read the model manifest {MANIFEST_PATH}: {err}") from err
    return {entry["name"]: _parse_entry(entry, archs) for entry in entries}


def list_models() -> list[ModelInfo]:
    """All models of the zoo, in manifest order."""
    return list(_catalogue().values())


def model_info(name: str) -> ModelInfo:
    """The manifest entry of ``name``; ModelError (listing the known names) if there is none."""
    catalogue = _catalogue()
    if name not in catalogue:
        close = difflib.get_close_matches(name, catalogue, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(catalogue)}")
    return catalogue[name]


def _url(path: str) -> str:
    if "MIPVerify_data/" in path:
        return _MIPVERIFY_URL.format(path=path.split("MIPVerify_data/", 1)[1])
    return _MODEL_URL.format(basename=path.rsplit("/", 1)[-1])


def _zoo_file(path: str, sha256: str, data_dir: str | os.PathLike | None) -> Path:
    """A verified local copy of a zoo file: the packaged one if lpbench ships it, else fetched
    into ``<data dir>/salman2019/<path>``."""
    packaged = ZOO_DIR / path
    if packaged.is_file():
        actual = sha256_file(packaged)
        if actual != sha256:
            raise ChecksumError(f"packaged {packaged}: sha256 mismatch (expected {sha256}, "
                                f"got {actual}); reinstall lpbench")
        return packaged
    return fetch(f"{ZOO}/{path}", sha256, urls=(_url(path),), data_dir=data_dir)


def _load_state_dict(path: Path) -> dict[str, np.ndarray]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for an unreadable file
        raise ModelError(f"cannot load weights {path}: {err}") from err
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"{path}: expected a state dict of tensors")
    return {str(k): v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load array {path}: {err}") from err


def _mlp_a_params(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """MIPVerify's x @ W + B convention to the (out, in) convention of a torch Linear, for the
    layers ["flatten", "linear(500)", "relu", "linear(10)"]."""
    def f32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)
    return {"1.weight": f32(arrays["W1"].T), "1.bias": f32(arrays["B1"].reshape(-1)),
            "3.weight": f32(arrays["W2"].T), "3.bias": f32(arrays["B2"].reshape(-1))}


def _check_keys(info: ModelInfo, params: Mapping[str, np.ndarray]) -> None:
    expected = {f"{i}.{kind}" for i, layer in enumerate(info.layers)
                if layer.startswith(("linear(", "conv(")) for kind in ("weight", "bias")}
    if set(params) != expected:
        raise ModelError(f"model {info.name}: parameters {sorted(params)} do not match the "
                         f"architecture {info.arch} (expected {sorted(expected)})")


def load_model(name: str, data_dir: str | os.PathLike | None = None) -> Network:
    """Load a zoo model by name as a :class:`lpbench.network.Network`.

    Table 1 models come from the package; the others are fetched into the data directory
    (``$LPBENCH_MIRROR`` first, see :func:`lpbench.data.fetch`). Raises ModelError for an unknown
    name or unreadable weights, and ChecksumError for a file whose sha256 does not match.
    """
    info = model_info(name)
    paths = {f.key: _zoo_file(f.path, f.sha256, data_dir) for f in info.files}
    if "state_dict" in paths:
        params = _load_state_dict(paths["state_dict"])
    else:
        params = _mlp_a_params({key: _load_npy(path) for key, path in paths.items()})
    _check_keys(info, params)
    try:
        return Network.from_spec(info.input_shape, info.layers, params, name=info.name)
    except (ValueError, IndexError) as err:
        raise ModelError(f"model {info.name}: weights do not fit {info.arch}: {err}") from err


def ten_test_images(data_dir: str | os.PathLike | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ten MNIST test images of the paper's minimum-distortion experiment (Section 6.2):
    images (10, 1, 28, 28) float32 in [0, 1], labels (10,) int64, and their indices (10,) int64
    in the MNIST test set."""
    try:
        meta = json.loads(MANIFEST_PATH.read_text())["ten_test_images"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"cannot read ten_test_images from {MANIFEST_PATH}: {err}") from err
    path = _zoo_file(meta["file"], _EXTRA_SHA256[meta["file"]], data_dir)
    try:
        images = np.load(path, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot load {path}: {err}") from err
    if images.shape != tuple(meta["shape"]):
        raise DataError(f"{path}: expected shape {tuple(meta['shape'])}, got {images.shape}")
    labels = np.asarray(meta["labels"], dtype=np.int64)
    indices = np.asarray(meta["mnist_test_indices"], dtype=np.int64)
    return images, labels, indices

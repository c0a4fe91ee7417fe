"""Test session set-up: no network, a throw-away data directory, and the project's shared
mirror of model weights and data sets.

The mirror is ``$LPBENCH_TEST_SHARED`` (default ``<repo>/../shared``), holding
``zoo/salman2019`` and ``data/mnist``. Tests that need files from it are skipped when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("LPBENCH_TEST_SHARED",
                             Path(__file__).resolve().parents[1].parent / "shared"))
MIRROR_DIRS = (SHARED / "zoo" / "salman2019", SHARED / "data" / "mnist")
HAVE_MIRROR = all(d.is_dir() for d in MIRROR_DIRS)


@pytest.fixture
def shared_mirror() -> Path:
    """The shared mirror directory; skips the test when it is absent."""
    if not HAVE_MIRROR:
        pytest.skip(f"no shared mirror at {SHARED} (set LPBENCH_TEST_SHARED)")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _lpbench_env(tmp_path_factory):
    """Point lpbench at a temporary data directory and the local mirror; forbid downloads."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LPBENCH_DATA_DIR", str(tmp_path_factory.mktemp("lpbench-data")))
        mp.setenv("LPBENCH_MIRROR", os.pathsep.join(str(d) for d in MIRROR_DIRS))
        mp.setenv("LPBENCH_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: torch's intra-op threads only add synchronisation overhead (and on a busy
    2-core machine, spin-waiting). Modules opt in with ``pytestmark``."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tampered_cnn_small(tmp_path, shared_mirror, monkeypatch) -> Path:
    """A mirror whose NOR-CNN-SMALL weights have one byte flipped, in effect for this test (and
    the worker processes it starts): lpbench must refuse the file (sha256)."""
    import shutil
    mirror = tmp_path / "mirror" / "experiment_2"
    mirror.mkdir(parents=True)
    src = shared_mirror / "zoo" / "salman2019" / "experiment_2" / "mnist_cnn_small_NOR.pth"
    shutil.copy(src, mirror / src.name)
    with open(mirror / src.name, "r+b") as f:  # flip one byte in the middle of the weights
        f.seek(2000)
        b = f.read(1)
        f.seek(2000)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setenv("LPBENCH_MIRROR", str(mirror.parent))
    monkeypatch.setenv("LPBENCH_DATA_DIR", str(tmp_path / "data"))
    return mirror.parent

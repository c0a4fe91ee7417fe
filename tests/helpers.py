"""Small builders shared by the test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np

from lpbench.activations import parse_activation
from lpbench.network import Act, Dense, Network

RELU = Act(parse_activation("relu"))


def random_relu_net(rng: np.random.Generator, widths: list[int], name: str) -> Network:
    """A dense ReLU network with layer widths ``widths`` (input first, classes last), weights
    N(0, 1.5^2) and biases N(0, 0.3^2), as float32."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense((rng.normal(size=(b, a)) * 1.5).astype(np.float32),
                            (0.3 * rng.normal(size=b)).astype(np.float32)))
        if i < len(widths) - 2:
            layers.append(RELU)
    return Network(tuple(layers), (widths[0],), name)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``lpbench ARGS`` in this process through its real entry point: (exit code, stdout, stderr)."""
    import sys

    from lpbench.cli import main

    monkeypatch.setattr(sys, "argv", ["lpbench", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err

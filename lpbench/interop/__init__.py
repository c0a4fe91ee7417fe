"""Interoperation with the verification community: ONNX networks, VNNLIB properties and
VNN-COMP benchmark instances (instances.csv + per-instance result files).

* :mod:`lpbench.interop.onnx_import` -- ONNX graph -> :class:`~lpbench.network.Network`;
* :mod:`lpbench.interop.onnx_export` -- Network -> ONNX, and onnxruntime evaluation;
* :mod:`lpbench.interop.vnnlib` -- read and write VNNLIB 1.0 properties (the linear subset);
* :mod:`lpbench.interop.encode` -- a property as an lpbench problem (centre, ball, margins);
* :mod:`lpbench.interop.vnncomp` -- solve instances, write and read result files;
* :mod:`lpbench.interop.benchmark` -- write lpbench problems (Table 1) as VNN-COMP instances;
* :mod:`lpbench.interop.sweep` -- instance lists inside sweeps (``instances = ...``);
* :mod:`lpbench.interop.commands` -- ``lpbench vnncomp run | export | onnx``.

``onnx`` and ``onnxruntime`` are imported only where needed, so lpbench imports without them.
"""

from __future__ import annotations

from lpbench.errors import LpbenchError


def require_onnx():
    """The ``onnx`` module, or an LpbenchError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise LpbenchError("ONNX support needs the 'onnx' package (pip install onnx onnxruntime)") from None
    return onnx


def require_onnxruntime():
    """The ``onnxruntime`` module, or an LpbenchError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise LpbenchError("running ONNX models needs the 'onnxruntime' package "
                           "(pip install onnxruntime)") from None
    return onnxruntime

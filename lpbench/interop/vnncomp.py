"""VNN-COMP instances: (ONNX network, VNNLIB property, timeout) rows of an ``instances.csv``.

:func:`solve` runs one registered lpbench method on one instance and answers in VNN-COMP's
words: ``unsat`` (the property holds: the method verified every disjunct of the counterexample
region away), ``sat`` (a counterexample, inside the exact box, that reaches the region both in
lpbench's float64 forward pass and when replayed through onnxruntime), ``timeout``, ``unknown``
or ``error``. A method's "falsified" whose point fails either replay is ``unknown``. An answer
that came after the instance's timeout is reported as ``timeout`` (its verdict kept in the
message), as VNN-COMP scores it.

:func:`result_text` / :func:`parse_result_text` write and read the VNN-COMP result file: the
first line is the result; after ``sat`` the assignment ``((X_0 v) ... (Y_0 v) ...)``.
"""

from __future__ import annotations

import csv
import gzip
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from lpbench.errors import LpbenchError
from lpbench.interop.encode import Encoded, encode
from lpbench.interop.onnx_export import OrtModel
from lpbench.interop.onnx_import import Imported, from_onnx, load_onnx
from lpbench.interop.vnnlib import Property, parse_vnnlib, read_vnnlib
from lpbench.methods import get_method, verify
from lpbench.problem import Status

RESULTS = ("sat", "unsat", "timeout", "unknown", "error")
_STATUS = {Status.VERIFIED: "unsat", Status.TIMEOUT: "timeout", Status.ERROR: "error",
           Status.UNKNOWN: "unknown", Status.FALSIFIED: "unknown"}


@dataclass(frozen=True, eq=False)
class Answer:
    result: str  # one of RESULTS
    time_s: float
    message: str = ""
    x: np.ndarray | None = None  # the counterexample (flat ONNX input) after sat
    y: np.ndarray | None = None  # its outputs from onnxruntime
    decided_by: str = ""


@dataclass(frozen=True, eq=False)
class Loaded:
    """An ONNX model ready for instances: the imported network and an onnxruntime session."""

    imported: Imported
    ort: OrtModel


def load_model_file(path: str | Path) -> Loaded:
    path = Path(path)
    if path.suffix == ".gz":
        from lpbench.interop import require_onnx
        onnx = require_onnx()
        if not path.is_file():
            raise LpbenchError(f"ONNX file {path} not found")
        try:
            model = onnx.load_from_string(gzip.decompress(path.read_bytes()))
        except Exception as err:
            raise LpbenchError(f"cannot read ONNX file {path}: {type(err).__name__}: {err}") from None
        return Loaded(from_onnx(model, path.stem, str(path)), OrtModel(model))
    return Loaded(load_onnx(path), OrtModel(path))


def load_property(path: str | Path) -> Property:
    path = Path(path)
    if path.suffix == ".gz":
        if not path.is_file():
            raise LpbenchError(f"VNNLIB file {path} not found")
        return parse_vnnlib(gzip.decompress(path.read_bytes()).decode(), str(path))
    return read_vnnlib(path)


def method_options(method: str, timeout: float, options: Mapping[str, Any] | None = None) -> dict:
    """The instance's timeout as the method's time limit (MILP: per sample; LPs: per LP)."""
    opts = {k: dict(v) for k, v in (options or {}).items()}
    if method in ("milp", "lp-all", "lp-last"):
        opts.setdefault(method, {}).setdefault("time_limit", float(timeout))
    return opts


def solve(model: Loaded, prop: Property, method: str, timeout: float,
          options: Mapping[str, Any] | None = None) -> Answer:
    """Decide one instance with one registered method (see the module doc)."""
    t0 = time.perf_counter()
    get_method(method)
    enc = encode(model.imported.network, prop)
    outcome = verify(enc.net, enc.x[None], [enc.label], enc.pset, [method],
                     options=method_options(method, timeout, options))[0]
    by = str(outcome.stats.get("decided_by", method))
    ans = None
    if outcome.status is Status.VERIFIED or enc.unsat(outcome.margin_lower):
        ans = Answer("unsat", 0.0, enc.how, decided_by=by)
    elif outcome.counterexample is not None:
        ans = replay(model, prop, enc, outcome.counterexample, by)
        if ans.result != "sat" and outcome.status is not Status.FALSIFIED:
            ans = replace(ans, result=_STATUS[outcome.status])
    if (ans is None or ans.result not in ("sat", "unsat")) and \
            _rows_rule_out(enc, outcome.margin_lower, method, timeout, options, t0):
        ans = Answer("unsat", 0.0, enc.how + "; each disjunct has a row proved never to hold", decided_by=by)
    if ans is None:
        ans = Answer(_STATUS[outcome.status], 0.0, enc.how, decided_by=by)
    dt = time.perf_counter() - t0
    if dt > timeout and ans.result in ("sat", "unsat"):
        ans = replace(ans, result="timeout", x=None, y=None,
                      message=f"{ans.result} after {dt:.1f} s, past the {timeout:g} s timeout")
    return replace(ans, time_s=dt)


def _rows_rule_out(enc: Encoded, margin_lower, method, timeout, options, t0) -> bool:
    """Regions with conjunctions: a row found (or violated at one point) decides nothing alone,
    so each disjunct not yet ruled out gets one run per row until a row is proved never to hold."""
    if all(len(g) == 1 for g in enc.groups):
        return False
    ml = np.full(enc.net.n_classes, np.nan) if margin_lower is None else np.asarray(margin_lower, np.float64)
    for g in enc.groups:
        if any(ml[j] > 0 for j in g):
            continue
        for j in g:
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                return False
            o = verify(enc.single_row(j), enc.x[None], [0], enc.pset, [method],
                       options=method_options(method, left, options))[0]
            if o.status is Status.VERIFIED:
                break
        else:
            return False
    return True


def replay(model: Loaded, prop: Property, enc: Encoded, point: np.ndarray, by: str) -> Answer:
    """``sat`` if the point, clipped into the box and rounded inwards to float32 (what the ONNX
    model takes), reaches the region in lpbench's float64 forward pass and in onnxruntime."""
    x32 = _inward_float32(enc.to_input(point), prop.lower, prop.upper)
    if x32 is None:
        return Answer("unknown", 0.0, "counterexample has no float32 neighbour inside the box", decided_by=by)
    net = model.imported.network
    y64 = net.logits64(x32.reshape(1, *net.input_shape))[0]
    y_ort = model.ort(x32[None].astype(np.float32))[0]
    if not prop.reached(y64):
        return Answer("unknown", 0.0, "counterexample does not reach the region in float64 once clipped and "
                      "rounded to float32", decided_by=by)
    if not prop.reached(y_ort):
        return Answer("unknown", 0.0, "counterexample not confirmed by onnxruntime", decided_by=by)
    return Answer("sat", 0.0, "counterexample replayed through onnxruntime", x32, y_ort, by)


def _inward_float32(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
    """``x`` rounded to float32 values inside [lower, upper] (as float64), or None if a
    coordinate's range holds no float32 number."""
    x32 = np.clip(x, lower, upper).astype(np.float32)
    low, high = x32.astype(np.float64) < lower, x32.astype(np.float64) > upper
    x32[low] = np.nextafter(x32[low], np.float32(np.inf))
    x32[high] = np.nextafter(x32[high], np.float32(-np.inf))
    out = x32.astype(np.float64)
    return out if np.all(out >= lower) and np.all(out <= upper) else None


# -- result files ----------------------------------------------------------------------------
def _num(v: float) -> str:
    return np.format_float_positional(float(v), unique=True, trim="-")


def result_text(ans: Answer) -> str:
    if ans.result != "sat":
        return ans.result + "\n"
    pairs = [f"(X_{i} {_num(v)})" for i, v in enumerate(ans.x)] + [f"(Y_{j} {_num(v)})" for j, v in enumerate(ans.y)]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def parse_result_text(text: str) -> tuple[str, dict[str, float]]:
    """(result, assignment) of a VNN-COMP result file; LpbenchError when malformed."""
    lines = text.strip().splitlines()
    if not lines or lines[0].strip() not in RESULTS + ("violated", "holds"):
        raise LpbenchError(f"result file must start with one of {RESULTS}, got {lines[:1]}")
    result = {"violated": "sat", "holds": "unsat"}.get(lines[0].strip(), lines[0].strip())
    body = " ".join(lines[1:]).replace("(", " ( ").replace(")", " ) ").split()
    assignment: dict[str, float] = {}
    k = 0
    while k < len(body):
        if body[k] == "(" and k + 3 < len(body) and body[k + 3] == ")" and body[k + 1] not in "()":
            try:
                assignment[body[k + 1]] = float(body[k + 2])
            except ValueError:
                raise LpbenchError(f"bad value {body[k + 2]!r} for {body[k + 1]}") from None
            k += 4
        elif body[k] in "()":
            k += 1
        else:
            raise LpbenchError(f"unexpected {body[k]!r} in the assignment")
    if result == "sat" and not assignment:
        raise LpbenchError("a sat result needs the counterexample assignment")
    return result, assignment


def _stem(path: str) -> str:
    name = Path(path).name.removesuffix(".gz")
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(name).stem) or "x"


# -- instance lists --------------------------------------------------------------------------
@dataclass(frozen=True)
class Instance:
    index: int
    onnx: str
    vnnlib: str
    timeout: float
    base: Path
    problem: str = ""  # a bad row: why


def read_instances(path: str | Path) -> list[Instance]:
    """The rows of an instances.csv (paths relative to its directory); a malformed row becomes an
    Instance with ``problem`` set, so the other rows still run."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LpbenchError(f"cannot read instance list {path}: {e.strerror or e}") from None
    out = []
    for k, row in enumerate(r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)):
        row = [c.strip() for c in row]
        if len(row) != 3:
            out.append(Instance(k, "", "", 0.0, path.parent, f"line {k + 1}: expected onnx,vnnlib,timeout, got {row}"))
            continue
        try:
            timeout = float(row[2])
            if not timeout > 0 or timeout == float("inf"):
                raise ValueError
        except ValueError:
            out.append(Instance(k, row[0], row[1], 0.0, path.parent, f"line {k + 1}: bad timeout {row[2]!r}"))
            continue
        out.append(Instance(k, row[0], row[1], timeout, path.parent))
    if not out:
        raise LpbenchError(f"instance list {path} has no rows")
    return out


def solve_instance(inst: Instance, method: str, options: Mapping[str, Any] | None = None,
                   models: dict | None = None) -> Answer:
    """One row of an instance list; any problem with it is an ``error`` answer. ``models``
    caches loaded ONNX files (and their load errors) between rows."""
    t0 = time.perf_counter()
    models = {} if models is None else models
    try:
        if inst.problem:
            raise LpbenchError(inst.problem)
        onnx_path = (inst.base / inst.onnx).resolve()
        if onnx_path not in models:
            try:
                models[onnx_path] = load_model_file(onnx_path)
            except LpbenchError as e:
                models[onnx_path] = e
        model = models[onnx_path]
        if isinstance(model, LpbenchError):
            raise model
        return solve(model, load_property(inst.base / inst.vnnlib), method, inst.timeout, options)
    except (LpbenchError, ValueError) as e:
        return Answer("error", time.perf_counter() - t0, str(e))


def run_instances(path: str | Path, method: str, out_dir: str | Path,
                  options: Mapping[str, Any] | None = None,
                  progress: Callable[[Instance, Answer], None] | None = None) -> list[dict]:
    """Solve every row, write ``<out>/results/<index>_<onnx>_<vnnlib>.txt`` per instance and
    ``<out>/results.csv``; a missing file or bad instance is an error row, the rest goes on."""
    get_method(method)
    out_dir = Path(out_dir)
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    models: dict[Path, Loaded | LpbenchError] = {}
    records = []
    for inst in read_instances(path):
        ans = solve_instance(inst, method, options, models)
        name = f"{inst.index:04d}_{_stem(inst.onnx)}_{_stem(inst.vnnlib)}.txt"
        (out_dir / "results" / name).write_text(result_text(ans))
        records.append({"index": inst.index, "onnx": inst.onnx, "vnnlib": inst.vnnlib, "timeout": inst.timeout,
                        "result": ans.result, "method": method, "decided_by": ans.decided_by,
                        "time_s": round(ans.time_s, 4), "result_file": f"results/{name}",
                        "message": ans.message})
        if progress is not None:
            progress(inst, ans)
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    return records

"""VNNLIB 1.0 properties, the linear subset used for classification robustness.

A property declares inputs ``X_0 .. X_{n-1}`` and outputs ``Y_0 .. Y_{m-1}`` (``declare-const``
``Real``), bounds every input by ``(assert (<= X_i c))`` / ``(assert (>= X_i c))`` (either
order, or inside one ``and``), and asserts the *counterexample region* over the outputs: a
Boolean combination (``or`` / ``and``) of linear inequalities ``<=``, ``>=`` (and ``=``) between
linear terms (``+``, ``-``, ``*`` by a constant, ``/`` by a constant). Several output asserts
are a conjunction. The region is normalised to a disjunction of conjunctions of rows
``c . Y >= d``: the property holds (UNSAT) iff no input of the box reaches the region.

Anything outside the subset (unbounded or linearly constrained inputs, assertions mixing X and
Y, products of variables, unknown commands) is a :class:`VnnlibError` with the line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from lpbench.errors import LpbenchError

_VAR = re.compile(r"^([XY])_(\d+)$")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
#: One-line commands of the common shape, read without building S-expressions (a 3072-input
#: property has ~9000 of them); anything else goes through the general reader.
_FAST_DECL = re.compile(r"^\s*\(\s*declare-const\s+([XY]_\d+)\s+Real\s*\)\s*(?:;.*)?$")
_FAST_BOUND = re.compile(r"^\s*\(\s*assert\s+\(\s*(<=|>=)\s+(X_\d+)\s+([^\s()]+)\s*\)\s*\)\s*(?:;.*)?$")
#: Largest number of disjuncts after distributing several output asserts.
MAX_DISJUNCTS = 10_000


class VnnlibError(LpbenchError):
    """A VNNLIB file that is malformed or outside the supported subset."""


@dataclass(frozen=True, eq=False)
class Property:
    """Input box ``lower <= X <= upper`` (float64, flat) and the counterexample region: it is
    reached iff for some disjunct ``k``, ``rows[k] @ Y >= rhs[k]`` holds row by row."""

    lower: np.ndarray
    upper: np.ndarray
    n_outputs: int
    rows: tuple[np.ndarray, ...]  # per disjunct (r, n_outputs)
    rhs: tuple[np.ndarray, ...]  # per disjunct (r,)

    def reached(self, y: np.ndarray) -> bool:
        """True if the output vector ``y`` lies in the counterexample region (float64)."""
        y = np.asarray(y, np.float64).ravel()
        return any(bool(np.all(c @ y >= d)) for c, d in zip(self.rows, self.rhs))

    def in_box(self, x: np.ndarray) -> bool:
        x = np.asarray(x, np.float64).ravel()
        return bool(np.all(x >= self.lower) and np.all(x <= self.upper))

    def same_as(self, other: "Property") -> bool:
        return (np.array_equal(self.lower, other.lower) and np.array_equal(self.upper, other.upper)
                and self.n_outputs == other.n_outputs and len(self.rows) == len(other.rows)
                and all(np.array_equal(a, b) for a, b in zip(self.rows, other.rows))
                and all(np.array_equal(a, b) for a, b in zip(self.rhs, other.rhs)))


def robustness_property(x: np.ndarray, label: int, eps: float, n_classes: int,
                        box: tuple[float, float] | None = (0.0, 1.0)) -> Property:
    """The l_inf robustness property of lpbench: inputs in ``[x - eps, x + eps]`` clipped to
    ``box``, counterexample ``Y_j >= Y_label`` for some ``j != label``."""
    x = np.asarray(x, np.float64).ravel()
    lo, hi = x - eps, x + eps
    if box is not None:
        lo, hi = np.maximum(lo, box[0]), np.minimum(hi, box[1])
    rows, rhs = [], []
    for j in range(n_classes):
        if j != label:
            r = np.zeros((1, n_classes))
            r[0, j], r[0, label] = 1.0, -1.0
            rows.append(r)
            rhs.append(np.zeros(1))
    return Property(lo, hi, n_classes, tuple(rows), tuple(rhs))


# -- writing ---------------------------------------------------------------------------------
def _num(v: float) -> str:
    return np.format_float_positional(float(v), unique=True, trim="-")


def _row_text(c: np.ndarray, d: float) -> str:
    nz = np.flatnonzero(c)
    if d == 0 and len(nz) == 2 and sorted(c[nz]) == [-1.0, 1.0]:
        a, b = (int(nz[0]), int(nz[1])) if c[nz[0]] > 0 else (int(nz[1]), int(nz[0]))
        return f"(>= Y_{a} Y_{b})"
    terms = " ".join(f"(* {_num(c[j])} Y_{j})" for j in nz) or "0"
    return f"(>= (+ {terms}) {_num(d)})" if len(nz) > 1 else f"(>= {terms} {_num(d)})"


def vnnlib_text(prop: Property, comment: str = "") -> str:
    """The property as VNNLIB text (numbers written so that they read back exactly)."""
    lines = [f"; {c}" for c in comment.splitlines()] if comment else []
    n = prop.lower.size
    lines += [f"(declare-const X_{i} Real)" for i in range(n)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs)] + [""]
    for i in range(n):
        lines.append(f"(assert (<= X_{i} {_num(prop.upper[i])}))")
        lines.append(f"(assert (>= X_{i} {_num(prop.lower[i])}))")
    disj = ["(and " + " ".join(_row_text(c[r], d[r]) for r in range(len(d))) + ")"
            for c, d in zip(prop.rows, prop.rhs)]
    lines += ["", "(assert (or", *[f"    {s}" for s in disj], "))", ""]
    return "\n".join(lines)


def write_vnnlib(path: str | Path, prop: Property, comment: str = "") -> None:
    Path(path).write_text(vnnlib_text(prop, comment))


# -- reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Node:
    items: tuple  # of _Node or (str token, line)
    line: int


def _parse_sexprs(text: str, where: str) -> list[_Node]:
    stack: list[list] = [[]]
    starts: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for tok in _TOKEN.findall(line.split(";", 1)[0]):
            if tok == "(":
                stack.append([])
                starts.append(lineno)
            elif tok == ")":
                if len(stack) == 1:
                    raise VnnlibError(f"{where}:{lineno}: unbalanced ')'")
                items = stack.pop()
                stack[-1].append(_Node(tuple(items), starts.pop()))
            else:
                stack[-1].append((tok, lineno))
    if len(stack) > 1:
        raise VnnlibError(f"{where}:{starts[-1]}: '(' is never closed")
    for item in stack[0]:
        if not isinstance(item, _Node):
            raise VnnlibError(f"{where}:{item[1]}: unexpected {item[0]!r} outside a command")
    return stack[0]


def read_vnnlib(path: str | Path) -> Property:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise VnnlibError(f"cannot read VNNLIB file {path}: {e.strerror or e}") from None
    return parse_vnnlib(text, str(path))


def parse_vnnlib(text: str, where: str = "vnnlib") -> Property:
    return _Reader(where).read(text)


class _Reader:
    def __init__(self, where: str) -> None:
        self.where = where
        self.declared: dict[str, int] = {}  # name -> line

    def err(self, line: int, msg: str) -> VnnlibError:
        return VnnlibError(f"{self.where}:{line}: {msg}")

    def read(self, text: str) -> Property:
        bounds: dict[int, list] = {}
        out_disj: list[list[tuple[dict, float]]] = [[]]
        text = self.fast_lines(text, bounds)
        for cmd in _parse_sexprs(text, self.where):
            head = self.atom(cmd.items[0], cmd.line) if cmd.items else None
            if head == "declare-const":
                self.declare(cmd)
            elif head == "assert" and len(cmd.items) == 2:
                body = cmd.items[1]
                names = self.names(body)
                if names and all(n[0] == "X" for n in names):
                    self.input_bounds(body, bounds)
                elif names and all(n[0] == "Y" for n in names):
                    dnf = self.dnf(body)
                    if len(out_disj) * len(dnf) > MAX_DISJUNCTS:
                        raise self.err(cmd.line, f"more than {MAX_DISJUNCTS} disjuncts")
                    out_disj = [a + b for a, b in product(out_disj, dnf)]
                else:
                    raise self.err(cmd.line, "an assertion must constrain either inputs X or outputs Y "
                                   "(mixed or constant assertions are not supported)")
            else:
                raise self.err(cmd.line, f"unsupported command {head!r}")
        return self.finish(bounds, out_disj)

    def fast_lines(self, text: str, bounds: dict[int, list]) -> str:
        """Read the one-line declarations and input bounds; the other lines are returned (the
        consumed ones blanked, so line numbers stay)."""
        lines = text.splitlines()
        for k, line in enumerate(lines):
            m = _FAST_DECL.match(line)
            if m and m.group(1) not in self.declared:
                self.declared[m.group(1)] = k + 1
                lines[k] = ""
                continue
            m = _FAST_BOUND.match(line)
            if m and m.group(2) in self.declared:
                try:
                    val = float(m.group(3))
                except ValueError:
                    continue
                if not np.isfinite(val):
                    continue
                lo_hi = bounds.setdefault(int(m.group(2)[2:]), [-np.inf, np.inf, k + 1])
                lo_hi[2] = k + 1
                if m.group(1) == "<=":
                    lo_hi[1] = min(lo_hi[1], val)
                else:
                    lo_hi[0] = max(lo_hi[0], val)
                lines[k] = ""
        return "\n".join(lines)

    def atom(self, item, line) -> str:
        if isinstance(item, _Node):
            raise self.err(item.line, "expected a name, got a list")
        return item[0]

    def declare(self, cmd: _Node) -> None:
        if len(cmd.items) != 3 or self.atom(cmd.items[2], cmd.line) != "Real":
            raise self.err(cmd.line, "expected (declare-const NAME Real)")
        name = self.atom(cmd.items[1], cmd.line)
        if not _VAR.match(name):
            raise self.err(cmd.line, f"variable {name!r} is not named X_i or Y_i")
        if name in self.declared:
            raise self.err(cmd.line, f"{name} declared twice")
        self.declared[name] = cmd.line

    def names(self, node) -> set[str]:
        if not isinstance(node, _Node):
            tok, line = node
            if _VAR.match(tok) and tok not in self.declared:
                raise self.err(line, f"{tok} is used but never declared")
            return {tok} if _VAR.match(tok) else set()
        return set().union(*(self.names(i) for i in node.items)) if node.items else set()

    def input_bounds(self, node: _Node, bounds: dict[int, list]) -> None:
        op = self.atom(node.items[0], node.line) if node.items else None
        if op == "and":
            for item in node.items[1:]:
                self.input_bounds(item, bounds)
            return
        if op not in ("<=", ">=", "=") or len(node.items) != 3:
            raise self.err(node.line, f"input constraints must be bounds (<= X_i c) / (>= X_i c), got {op!r}")
        (ca, ka), (cb, kb) = (self.linear(i) for i in node.items[1:])
        coef, const = ({k: ca.get(k, 0.0) - cb.get(k, 0.0) for k in set(ca) | set(cb)}, kb - ka)
        coef = {k: v for k, v in coef.items() if v != 0}
        if len(coef) != 1:
            raise self.err(node.line, "input constraints must bound one variable X_i by a constant "
                           "(linear constraints between inputs are not supported)")
        (name, a), = coef.items()
        i = int(_VAR.match(name).group(2))
        val = const / a  # a * X (op) const
        lo_hi = bounds.setdefault(i, [-np.inf, np.inf, node.line])
        lo_hi[2] = node.line  # the latest bound: where an empty range shows
        if op == "=" or (op == "<=") == (a > 0):
            lo_hi[1] = min(lo_hi[1], val)
        if op == "=" or (op == ">=") == (a > 0):
            lo_hi[0] = max(lo_hi[0], val)

    def linear(self, node) -> tuple[dict[str, float], float]:
        """A linear term as (coefficients by variable, constant)."""
        if not isinstance(node, _Node):
            tok, line = node
            if _VAR.match(tok):
                return {tok: 1.0}, 0.0
            try:
                val = float(tok)
            except ValueError:
                raise self.err(line, f"unknown symbol {tok!r}") from None
            if not np.isfinite(val):
                raise self.err(line, f"{tok!r} is not a finite number")
            return {}, val
        if not node.items:
            raise self.err(node.line, "empty term ()")
        op = self.atom(node.items[0], node.line)
        args = [self.linear(i) for i in node.items[1:]]
        if not args:
            raise self.err(node.line, f"{op!r} without arguments")
        if op == "+" or (op == "-" and len(args) > 1):
            sign = [1.0] + [1.0 if op == "+" else -1.0] * (len(args) - 1)
            coef: dict[str, float] = {}
            for s, (c, _) in zip(sign, args):
                for k, v in c.items():
                    coef[k] = coef.get(k, 0.0) + s * v
            return coef, sum(s * k for s, (_, k) in zip(sign, args))
        if op == "-":
            return {k: -v for k, v in args[0][0].items()}, -args[0][1]
        if op in ("*", "/"):
            if op == "/" and (len(args) != 2 or args[1][0] or args[1][1] == 0):
                raise self.err(node.line, "division only by a non-zero constant")
            if op == "/":
                return {k: v / args[1][1] for k, v in args[0][0].items()}, args[0][1] / args[1][1]
            if sum(bool(c) for c, _ in args) > 1:
                raise self.err(node.line, "non-linear term: product of variables")
            scale = float(np.prod([k for c, k in args if not c]))
            var = [c for c, _ in args if c]
            return ({k: scale * v for k, v in var[0].items()}, 0.0) if var else ({}, scale)
        raise self.err(node.line, f"unsupported term operator {op!r} (non-linear or not VNNLIB 1.0)")

    def dnf(self, node) -> list[list[tuple[dict, float]]]:
        """A Boolean combination of inequalities as a list of conjunctions of rows (c, d): c.Y >= d."""
        if not isinstance(node, _Node) or not node.items:
            raise self.err(node[1] if not isinstance(node, _Node) else node.line, "expected a constraint")
        op = self.atom(node.items[0], node.line)
        if op == "or":
            return [conj for item in node.items[1:] for conj in self.dnf(item)]
        if op == "and":
            out: list[list] = [[]]
            for item in node.items[1:]:
                out = [a + b for a, b in product(out, self.dnf(item))]
                if len(out) > MAX_DISJUNCTS:
                    raise self.err(node.line, f"more than {MAX_DISJUNCTS} disjuncts")
            return out
        if op in ("<=", ">=", "=") and len(node.items) == 3:
            (ca, ka), (cb, kb) = (self.linear(i) for i in node.items[1:])
            diff = {k: ca.get(k, 0.0) - cb.get(k, 0.0) for k in set(ca) | set(cb)}
            ge = (diff, kb - ka)  # a >= b  <=>  (a - b).Y >= kb - ka
            le = ({k: -v for k, v in diff.items()}, ka - kb)
            return [[ge]] if op == ">=" else [[le]] if op == "<=" else [[ge, le]]
        raise self.err(node.line, f"unsupported output constraint {op!r}")

    def finish(self, bounds, out_disj) -> Property:
        xs = sorted(int(_VAR.match(n).group(2)) for n in self.declared if n[0] == "X")
        ys = sorted(int(_VAR.match(n).group(2)) for n in self.declared if n[0] == "Y")
        for kind, idx in (("X", xs), ("Y", ys)):
            if idx != list(range(len(idx))) or not idx:
                raise VnnlibError(f"{self.where}: {kind} variables must be {kind}_0 .. {kind}_n-1, got "
                                  f"{len(idx)} with indices up to {max(idx, default=-1)}")
        lower, upper = np.full(len(xs), -np.inf), np.full(len(xs), np.inf)
        for i, (lo, hi, line) in bounds.items():
            if lo > hi:
                raise self.err(line, f"X_{i} has an empty range [{lo}, {hi}]")
            lower[i], upper[i] = lo, hi
        for i in range(len(xs)):
            if not (np.isfinite(lower[i]) and np.isfinite(upper[i])):
                raise self.err(self.declared[f"X_{i}"], f"input X_{i} is unbounded (both a lower and an "
                               "upper bound are needed)")
        if out_disj == [[]]:
            raise VnnlibError(f"{self.where}: no assertion on the outputs Y")
        rows, rhs = [], []
        for conj in out_disj:
            c = np.zeros((len(conj), len(ys)))
            for r, (coef, _) in enumerate(conj):
                for k, v in coef.items():
                    c[r, int(_VAR.match(k).group(2))] += v
            rows.append(c)
            rhs.append(np.array([d for _, d in conj], np.float64))
        return Property(lower, upper, len(ys), tuple(rows), tuple(rhs))

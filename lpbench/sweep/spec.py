"""WHAT a sweep computes: a TOML file naming models x epsilons x methods x samples.

::

    name = "table1-lpd"            # the sweep's key in the results store
    models = ["LPD-MLP-B-0.1"]
    epsilons = [0.1]               # or a table per model: [epsilons] "LPD-MLP-B-0.1" = [0.1]
    methods = ["pgd", "lp-greedy", "lp-all", "milp"]
    samples = "0:1000"             # N, "A:B", or a list of test-set indices
    norm = "linf"                  # optional
    device = "cpu"                 # torch methods; "cuda" where workers hold a GPU
    block = 200                    # samples per torch task
    lp_chunk = 100                 # neurons per LP-ALL task
    # instances = "bench/instances.csv"   # instead of models/epsilons/samples: a VNN-COMP
    #                                     # instance list (relative to this file), one task per row

    [options.milp]                 # per-method options, as in lpbench.verify
    time_limit = 60

Everything is checked before any work starts (:func:`load_spec`): unknown keys, models,
methods, option keys and bad values are a :class:`~lpbench.errors.LpbenchError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lpbench.errors import LpbenchError

KEYS = ("name", "models", "epsilons", "methods", "samples", "norm", "dataset", "device", "block",
        "lp_chunk", "options", "instances")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    models: tuple[str, ...]
    epsilons: dict[str, tuple[float, ...]]  # per model
    methods: tuple[str, ...]
    samples: Any = 100  # N, "A:B" or a list of ids
    norm: str = "linf"
    dataset: str | None = None  # default: each model's own test set
    device: str = "cpu"
    block: int = 200
    lp_chunk: int = 100  # bench scaling: 2 workers 1.98x faster than 1 at 100, 1.68x at 50
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: str | None = None  # a VNN-COMP instances.csv (lpbench.interop.sweep)

    def to_json(self) -> str:
        """The spec as canonical JSON (echoed into the store and exports)."""
        return json.dumps(asdict(self), sort_keys=True, default=list)

    def method_key(self, method: str) -> str:
        """Stored outcomes of ``method`` are reused only under the same options of that method
        (and of PGD, which the MILP and the LP cascade run first)."""
        opts = {k: self.options.get(k, {}) for k in (method, "pgd") if k in self.options}
        return hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:10]

    def jobs(self) -> list[tuple[str, float, str]]:
        """Every (model, epsilon, method) of the sweep."""
        return [(m, e, meth) for m in self.models for e in self.epsilons[m] for meth in self.methods]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise LpbenchError(f"cannot read sweep file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise LpbenchError(f"sweep file {path} is not valid TOML: {e}") from None
    if isinstance(raw.get("instances"), str):  # relative to the sweep file; must exist
        raw["instances"] = str((path.parent / raw["instances"]).resolve())
        if not Path(raw["instances"]).is_file():
            raise LpbenchError(f"{path}: instance list {raw['instances']} not found")
    return parse_spec(raw, str(path))


def parse_spec(raw: dict[str, Any], where: str = "sweep") -> SweepSpec:
    """Validate a sweep given as a dict (the parsed TOML)."""
    from lpbench.methods import REGISTRY, get_method
    from lpbench.zoo import model_info

    def bad(msg: str) -> LpbenchError:
        return LpbenchError(f"{where}: {msg}")

    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise bad(f"unknown key(s) {unknown}; known: {', '.join(KEYS)}")
    if raw.get("instances") is not None:
        raw = _instance_sweep(raw, bad)
    for key in ("name", "models", "epsilons", "methods"):
        if key not in raw:
            raise bad(f"missing key {key!r}")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\\n"):
        raise bad(f"name must be a non-empty string without slashes, got {name!r}")
    models = _str_list(raw["models"], "models", bad)
    if raw.get("instances") is None:
        _known(models, model_info, bad)
    eps_raw = raw["epsilons"]
    if isinstance(eps_raw, dict):
        missing = [m for m in models if m not in eps_raw]
        extra = sorted(set(eps_raw) - set(models))
        if missing or extra:
            raise bad(f"epsilons table must name exactly the models; missing {missing}, extra {extra}")
        epsilons = {m: _eps_list(eps_raw[m], bad) for m in models}
    else:
        eps = _eps_list(eps_raw, bad)
        epsilons = {m: eps for m in models}
    methods = _str_list(raw["methods"], "methods", bad)
    _known(methods, get_method, bad)
    spec = SweepSpec(name.strip(), models, epsilons, methods,
                     samples=raw.get("samples", 100), norm=raw.get("norm", "linf"),
                     dataset=raw.get("dataset"), device=raw.get("device", "cpu"),
                     block=_positive_int(raw.get("block", 200), "block", bad),
                     lp_chunk=_positive_int(raw.get("lp_chunk", 100), "lp_chunk", bad),
                     options=_options(raw.get("options", {}), methods, bad, REGISTRY),
                     instances=raw.get("instances"))
    from lpbench.problem import NORMS
    if spec.norm not in NORMS:
        raise bad(f"unknown norm {spec.norm!r}; choose one of {', '.join(NORMS)}")
    if not isinstance(spec.device, str) or spec.device.split(":")[0] not in ("cpu", "cuda"):
        raise bad(f"device must be 'cpu' or 'cuda[:N]', got {spec.device!r}")
    _check_samples(spec.samples, bad)
    return spec


def _instance_sweep(raw: dict[str, Any], bad) -> dict[str, Any]:
    """An instance-list sweep as an ordinary one: one pseudo model (the list), epsilon 0, and
    the rows as samples (see :mod:`lpbench.interop.sweep`)."""
    from lpbench.interop.sweep import instance_model
    path = raw["instances"]
    if not isinstance(path, str) or not path.strip():
        raise bad(f"instances must be the path of an instances.csv, got {path!r}")
    clash = sorted(k for k in ("models", "epsilons", "samples", "dataset") if raw.get(k) is not None)
    if clash and not (set(clash) <= {"models", "epsilons", "samples"} and raw.get("models") == [instance_model(path)]):
        raise bad(f"a sweep over instances takes no {', '.join(clash)} (the instance list fixes them)")
    model = instance_model(path)
    return {**raw, "models": [model], "epsilons": [0.0], "samples": ":"}


def _str_list(v: Any, key: str, bad) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
        raise bad(f"{key} must be a non-empty list of names, got {v!r}")
    if len(set(v)) != len(v):
        raise bad(f"{key} lists a name twice: {v}")
    return tuple(v)


def _known(names: tuple[str, ...], lookup, bad) -> None:
    """``lookup(name)`` raises LpbenchError (naming the known ones) for an unknown name."""
    for name in names:
        try:
            lookup(name)
        except LpbenchError as e:
            raise bad(str(e)) from None


def _eps_list(v: Any, bad) -> tuple[float, ...]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list) or not v:
        raise bad(f"epsilons must be a number or a non-empty list of numbers, got {v!r}")
    for e in v:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise bad(f"epsilon must be a finite number >= 0, got {e!r}")
    return tuple(float(e) for e in v)


def _positive_int(v: Any, key: str, bad) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise bad(f"{key} must be a positive integer, got {v!r}")
    return v


def _check_samples(v: Any, bad) -> None:
    if isinstance(v, bool):
        raise bad(f"samples must be N, 'A:B' or a list of indices, got {v!r}")
    if isinstance(v, list) and not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
        raise bad(f"samples list must hold indices >= 0, got {v!r}")
    if not isinstance(v, (int, str, list)):
        raise bad(f"samples must be N, 'A:B' or a list of indices, got {v!r}")


def _options(v: Any, methods: tuple[str, ...], bad, registry) -> dict[str, dict[str, Any]]:
    """Per-method option tables; keys are checked by the method's own option parser."""
    if not isinstance(v, dict):
        raise bad("options must be a table of per-method tables")
    out = {}
    for name, opts in v.items():
        if name not in registry:
            raise bad(f"options for unknown method {name!r}")
        if not isinstance(opts, dict):
            raise bad(f"options.{name} must be a table")
        try:
            _check_method_options(name, opts)
        except (ValueError, TypeError) as e:
            raise bad(f"options.{name}: {e}") from None
        out[name] = dict(opts)
    return out


def _check_method_options(name: str, opts: dict[str, Any]) -> None:
    """Raise ValueError/TypeError for options the method would refuse."""
    from lpbench.methods import BOUND_OPTIONS, Context, bound_options
    ctx = Context("cpu", 1, {name: opts})
    if name == "pgd":
        from lpbench.attacks.pgd import PGDConfig
        PGDConfig(**opts)
    elif name in ("lp-all", "lp-last"):
        from lpbench.lp.methods import options
        options(ctx, name)
    elif name == "milp":
        from lpbench.milp.methods import options
        options(ctx)
    elif name in BOUND_OPTIONS:
        bound_options(name, opts)
    elif opts:
        raise ValueError(f"method {name!r} takes no options")

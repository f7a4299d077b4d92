"""Sweep grids: benchmarks x architectures x layers x distances x seeds x presets, from TOML.

A grid file::

    # defaults for every benchmark below
    [sweep]
    archs = "paper"            # the 14 architectures of Pihlgren et al., or a list ["alexnet", "vgg16"]
    layers = "paper"           # E, S, M, L; or a list; a layer set is one comma-joined string "E,M"
    seeds = [0, 1]
    preset = "quick"           # or presets = ["quick", "paper"]
    weights = "imagenet"       # "imagenet" | "none" | path

    [benchmarks.superres]      # one table per benchmark (built-in name or dotted module path)
    scale = 4                  # any key that is not an axis is a fixed benchmark option
    distances = ["mse"]        # axes may be overridden per benchmark
    data = "/work/shared/data/superres"

Axis keys (singular or plural): ``archs``/``arch``/``nets``/``net``, ``layers``/``layer``,
``distances``/``distance``, ``seeds``/``seed``, ``presets``/``preset``, ``weights``. A benchmark
without ``archs`` (and no default) runs once per remaining point with ``net`` unset (a
non-perceptual baseline). Relative paths in options are interpreted by the benchmark (relative to
the working directory of ``lossnet sweep run``).

Every grid point is turned into a partial config and resolved by the benchmark's own
``resolve_config``; architecture and layer names are checked against :mod:`lossnet.registry`
before anything runs. Points with equal resolved configs share one run key and collapse into one run.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lossnet.errors import LossnetError

__all__ = ["PlannedRun", "load_benchmark", "load_grid", "expand_grid", "plan_grid", "plan_file", "PAPER"]

PAPER = "paper"
_AXES = {
    "archs": ("archs", "arch", "nets", "net"),
    "layers": ("layers", "layer"),
    "distances": ("distances", "distance"),
    "seeds": ("seeds", "seed"),
    "presets": ("presets", "preset"),
    "weights": ("weights",),
}
_CONFIG_KEY = {"archs": "net", "layers": "layer", "distances": "distance", "seeds": "seed", "presets": "preset", "weights": "weights"}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its key, benchmark name and resolved config."""

    key: str
    benchmark: str
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        c = self.config
        return {
            "key": self.key, "benchmark": self.benchmark, "preset": c.get("preset"), "net": c.get("net"),
            "layer": c.get("layer"), "distance": c.get("distance"), "seed": c.get("seed"),
        }


def load_grid(path: str | Path) -> dict[str, Any]:
    """Parse a grid TOML file.

    Raises:
        LossnetError: missing, unreadable or invalid TOML, or no ``[benchmarks.*]`` table.
    """
    path = Path(path)
    if not path.is_file():
        raise LossnetError(f"grid file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LossnetError(f"grid file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"sweep", "benchmarks"}
    if unknown:
        raise LossnetError(f"grid file {path}: unknown top-level key(s) {', '.join(sorted(unknown))}; use [sweep] and [benchmarks.NAME]")
    if not isinstance(data.get("benchmarks"), dict) or not data["benchmarks"]:
        raise LossnetError(f"grid file {path} has no [benchmarks.NAME] table")
    return data


def _axis(table: dict[str, Any], axis: str, where: str) -> tuple[bool, Any]:
    found = [k for k in _AXES[axis] if k in table]
    if len(found) > 1:
        raise LossnetError(f"{where}: give only one of {', '.join(found)}")
    return (True, table[found[0]]) if found else (False, None)


def _as_list(value: Any, axis: str, where: str) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise LossnetError(f"{where}: {axis} is an empty list")
        return value
    return [value]


def _expand_archs(value: Any, where: str) -> list[str]:
    from lossnet.registry import PAPER_ARCHS

    out: list[str] = []
    for v in _as_list(value, "archs", where):
        if not isinstance(v, str):
            raise LossnetError(f"{where}: architecture names must be strings, got {v!r}")
        out.extend(PAPER_ARCHS if v == PAPER else [v])
    return out


def _expand_layers(value: Any, where: str) -> list[str]:
    from lossnet.paper import LAYER_KEYS

    out: list[str] = []
    for v in _as_list(value, "layers", where):
        if isinstance(v, list):  # a layer set given as a TOML list
            v = ",".join(map(str, v))
        if not isinstance(v, str):
            raise LossnetError(f"{where}: layer names must be strings, got {v!r}")
        out.extend(LAYER_KEYS if v == PAPER else [v])
    return out


def expand_grid(grid: dict[str, Any], where: str = "grid") -> list[dict[str, Any]]:
    """All grid points as partial configs (``benchmark`` set), in file order, not yet resolved."""
    defaults = grid.get("sweep", {}) or {}
    if not isinstance(defaults, dict):
        raise LossnetError(f"{where}: [sweep] must be a table")
    points: list[dict[str, Any]] = []
    for bench, table in grid["benchmarks"].items():
        if not isinstance(table, dict):
            raise LossnetError(f"{where}: [benchmarks.{bench}] must be a table")
        w = f"{where} [benchmarks.{bench}]"
        axes: dict[str, list[Any]] = {}
        for axis in _AXES:
            present, value = _axis(table, axis, w)
            if not present:
                present, value = _axis(defaults, axis, f"{where} [sweep]")
            if not present:
                continue
            if axis == "archs":
                axes[axis] = _expand_archs(value, w)
            elif axis == "layers":
                axes[axis] = _expand_layers(value, w)
            else:
                axes[axis] = _as_list(value, axis, w)
        if "layers" in axes and "archs" not in axes:
            raise LossnetError(f"{w}: layers given without archs")
        axis_names = {k for names in _AXES.values() for k in names}
        fixed = {k: v for k, v in table.items() if k not in axis_names}
        bad = set(fixed) & {"benchmark", "net", "layer", "preset", "seed", "distance"}
        if bad:
            raise LossnetError(f"{w}: {', '.join(sorted(bad))} cannot be fixed options")
        # defaults may carry fixed options too (e.g. weights_dir), overridden per benchmark
        base = {k: v for k, v in defaults.items() if k not in axis_names}
        base.update(fixed)
        names = list(axes)
        for combo in itertools.product(*(axes[n] for n in names)):
            point = dict(base)
            point.update({_CONFIG_KEY[n]: v for n, v in zip(names, combo)})
            point["benchmark"] = bench
            points.append(point)
    return points


def load_benchmark(name: str):
    """The benchmark module for a built-in name or a module path.

    Like :func:`lossnet.bench.base.get_benchmark`, but a top-level module name without a dot
    (``fake_bench``) is accepted too when it is importable and has the plug-in interface.
    """
    import importlib

    from lossnet.bench.base import BENCHMARKS, get_benchmark

    if name in BENCHMARKS or "." in name:
        return get_benchmark(name)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return get_benchmark(name)  # raises the "unknown benchmark" error listing the built-ins
        raise
    if not all(hasattr(module, a) for a in ("PRESETS", "resolve_config", "run")):
        return get_benchmark(name)
    return module


def _validate_net_layer(point: dict[str, Any], where: str) -> None:
    from lossnet.registry import get_spec, resolve_layer

    net = point.get("net")
    if net is None:
        return
    get_spec(net)  # UnknownNetworkError names the architecture
    layer = point.get("layer")
    if layer is not None:
        for name in str(layer).split(","):
            resolve_layer(net, name)


def plan_grid(grid: dict[str, Any], where: str = "grid", *, overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
    """Resolve every grid point; duplicates (equal run keys) are kept once, first occurrence first.

    Args:
        grid: parsed grid (:func:`load_grid`).
        where: name used in error messages (the file name).
        overrides: config keys applied to every point after expansion (e.g. runtime ``device``).

    Raises:
        LossnetError: unknown benchmark, architecture or layer, or a config its benchmark rejects;
            the message names the grid point. Nothing is run before every point is valid.
    """
    from lossnet.runkey import run_key

    planned: dict[str, PlannedRun] = {}
    modules: dict[str, Any] = {}
    for point in expand_grid(grid, where):
        if overrides:
            point.update({k: v for k, v in overrides.items() if v is not None})
        bench = point["benchmark"]
        desc = ", ".join(f"{k}={point[k]}" for k in ("net", "layer", "distance", "seed", "preset") if k in point)
        try:
            if bench not in modules:
                modules[bench] = load_benchmark(bench)
            _validate_net_layer(point, where)
            config = modules[bench].resolve_config(dict(point))
        except LossnetError as exc:
            raise LossnetError(f"{where}: benchmark {bench} ({desc}): {exc}") from exc
        if not isinstance(config, dict):
            raise LossnetError(f"{where}: benchmark {bench}.resolve_config returned {type(config).__name__}, not a dict")
        config.setdefault("benchmark", bench)
        key = run_key(config)
        planned.setdefault(key, PlannedRun(key=key, benchmark=bench, config=config))
    return list(planned.values())


def plan_file(path: str | Path, *, overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
    """:func:`load_grid` + :func:`plan_grid`."""
    return plan_grid(load_grid(path), where=str(path), overrides=overrides)


def summarize(runs: Iterable[PlannedRun]) -> list[dict[str, Any]]:
    return [r.summary() for r in runs]

"""Sweep grids: benchmarks x architectures x layers x distances x seeds x presets, from TOML.

A grid file::

    # defaults for every benchmark below
    [sweep]
    archs = "all"              # the 14 architectures of Pihlgren et al. ("paper" works too), or ["alexnet", "vgg16"]
    layers = "all"             # E, S, M, L ("paper" works too); or a list; a layer set is one string "E,M"
    seeds = [0, 1]
    preset = "quick"           # or presets = ["quick", "paper"]
    weights = "imagenet"       # "imagenet" | "none" | path

    [benchmarks.superres]      # one table per benchmark (built-in name or dotted module path)
    scale = 4                  # any key that is not an axis is a fixed benchmark option
    distances = ["mse"]        # axes may be overridden per benchmark
    data = "/work/shared/data/superres"

A benchmark run with several fixed-option variants (super-resolution x4 and x8, the autoencoder on
SVHN and STL-10) takes an array of tables, one per variant: ``[[benchmarks.superres]]`` twice.

Axis keys (singular or plural): ``archs``/``arch``/``nets``/``net``, ``layers``/``layer``,
``distances``/``distance``, ``seeds``/``seed``, ``presets``/``preset``, ``weights``. A benchmark
without ``archs`` (and no default) runs once per remaining point with ``net`` unset (a
non-perceptual baseline). Relative paths in options are interpreted by the benchmark (relative to
the working directory of ``lossnet sweep run``).

Every grid point is turned into a partial config and resolved by the benchmark's own
``resolve_config``; option names are checked against the benchmark's presets (an unknown option,
e.g. ``epoch`` for ``epochs``, is an error with a suggestion), architecture and layer names against
:mod:`lossnet.models.registry`, all before anything runs. Points with equal resolved configs share one run
key and collapse into one run.

Trust: a benchmark named by a module path instead of a built-in name is Python code that planning
imports and running executes; :func:`plan_grid` refuses it unless ``allow_modules=True`` (the CLI's
``--allow-module``).
"""

from __future__ import annotations

import difflib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import tomllib

from lossnet.errors import LossnetError

__all__ = [
    "PlannedRun",
    "load_grid",
    "expand_grid",
    "plan_grid",
    "plan_file",
    "missing_data",
    "benchmark_grids",
    "PAPER",
    "ALL",
    "builtin_benchmarks",
]

PAPER = "paper"
ALL = "all"  # the CLI's spelling of "every paper architecture / layer"; PAPER is kept as an alias
_AXES = {
    "archs": ("archs", "arch", "nets", "net"),
    "layers": ("layers", "layer"),
    "distances": ("distances", "distance"),
    "seeds": ("seeds", "seed"),
    "presets": ("presets", "preset"),
    "weights": ("weights",),
}
_CONFIG_KEY = {
    "archs": "net",
    "layers": "layer",
    "distances": "distance",
    "seeds": "seed",
    "presets": "preset",
    "weights": "weights",
}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its key, benchmark name and resolved config."""

    key: str
    benchmark: str
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        c = self.config
        return {
            "key": self.key,
            "benchmark": self.benchmark,
            "preset": c.get("preset"),
            "net": c.get("net"),
            "layer": c.get("layer"),
            "distance": c.get("distance"),
            "seed": c.get("seed"),
        }


def load_grid(path: str | Path) -> dict[str, Any]:
    """Parse a grid TOML file.

    Raises:
        LossnetError: missing, unreadable or invalid TOML, or no ``[benchmarks.*]`` table.
    """
    path = Path(path)
    if path.is_dir():
        tomls = sorted(p.name for p in path.glob("*.toml"))
        hint = f" (grid files in it: {', '.join(tomls[:5])}{', ...' if len(tomls) > 5 else ''})" if tomls else ""
        raise LossnetError(f"{path} is a directory, not a grid file; give a grid TOML file{hint}")
    if not path.is_file():
        raise LossnetError(f"grid file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LossnetError(f"grid file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"sweep", "benchmarks"}
    if unknown:
        raise LossnetError(
            f"grid file {path}: unknown top-level key(s) {', '.join(sorted(unknown))}; use [sweep] and [benchmarks.NAME]"
        )
    if not isinstance(data.get("benchmarks"), dict) or not data["benchmarks"]:
        raise LossnetError(f"grid file {path} has no [benchmarks.NAME] table")
    return data


def _tables(value: Any) -> list[Any]:
    """The variant tables of a ``[benchmarks.NAME]`` entry: one table, or an array of tables."""
    return list(value) if isinstance(value, list) else [value]


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
    from lossnet.models.registry import PAPER_ARCHS

    out: list[str] = []
    for v in _as_list(value, "archs", where):
        if not isinstance(v, str):
            raise LossnetError(f"{where}: architecture names must be strings, got {v!r}")
        out.extend(PAPER_ARCHS if v in (PAPER, ALL) else [v])
    return out


def _expand_layers(value: Any, where: str) -> list[str]:
    from lossnet.paper import LAYER_KEYS

    out: list[str] = []
    for v in _as_list(value, "layers", where):
        if isinstance(v, list):  # a layer set given as a TOML list
            v = ",".join(map(str, v))
        if not isinstance(v, str):
            raise LossnetError(f"{where}: layer names must be strings, got {v!r}")
        out.extend(LAYER_KEYS if v in (PAPER, ALL) else [v])
    return out


def expand_grid(grid: dict[str, Any], where: str = "grid") -> list[dict[str, Any]]:
    """All grid points as partial configs (``benchmark`` set), in file order, not yet resolved."""
    defaults = grid.get("sweep", {}) or {}
    if not isinstance(defaults, dict):
        raise LossnetError(f"{where}: [sweep] must be a table")
    points: list[dict[str, Any]] = []
    for bench, table in ((b, t) for b, value in grid["benchmarks"].items() for t in _tables(value)):
        if not isinstance(table, dict):
            raise LossnetError(f"{where}: [benchmarks.{bench}] must be a table or an array of tables")
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


def _validate_net_layer(point: dict[str, Any], where: str) -> None:
    from lossnet.models.layers import resolve_layer
    from lossnet.models.registry import get_spec

    net = point.get("net")
    if net is None:
        return
    get_spec(net)  # UnknownNetworkError names the architecture
    layer = point.get("layer")
    if layer is not None:
        for name in str(layer).split(","):
            resolve_layer(net, name)


def builtin_benchmarks() -> list[str]:
    """Names of the built-in benchmarks (no ``--allow-module`` needed)."""
    from lossnet.bench import base

    names = getattr(base, "list_benchmarks", None)
    return list(names()) if callable(names) else sorted(getattr(base, "BENCHMARKS", {}))


def _known_options(bench: Any) -> set[str] | None:
    """Config keys a benchmark accepts: its config fields (``config_keys()``) or else the union of
    its presets' keys, plus the runtime keys, ``benchmark`` and ``preset``; None when there is
    nothing to check against."""
    from lossnet.runs.identity import RUNTIME_KEYS

    keys: set[str] = set()
    config_keys = getattr(bench, "config_keys", None)
    if callable(config_keys):
        keys |= set(config_keys())
    presets = getattr(bench, "PRESETS", None)
    if isinstance(presets, dict) and all(isinstance(v, dict) for v in presets.values()):
        keys |= set().union(*(set(v) for v in presets.values())) if presets else set()
    if not keys:
        return None
    return keys | set(RUNTIME_KEYS) | {"benchmark", "preset"}


def plan_grid(
    grid: dict[str, Any],
    where: str = "grid",
    *,
    overrides: dict[str, Any] | None = None,
    allow_modules: bool = False,
) -> list[PlannedRun]:
    """Resolve every grid point; duplicates (equal run keys) are kept once, first occurrence first.

    Args:
        grid: parsed grid (:func:`load_grid`).
        where: name used in error messages (the file name).
        overrides: config keys applied to every point after expansion (e.g. runtime ``device``).
        allow_modules: accept benchmarks given as Python module paths (their code is imported now
            and executed by the runs). Without it only built-in benchmark names are accepted.

    Raises:
        LossnetError: a module-path benchmark without ``allow_modules``, unknown benchmark or
            option (with a suggestion), architecture or layer, or a config its benchmark rejects;
            the message names the grid table or point. Nothing is run before every point is valid.
    """
    from lossnet.bench.base import get_benchmark

    builtins = set(builtin_benchmarks())
    if not allow_modules:
        for bench in grid["benchmarks"]:
            if bench not in builtins:
                raise LossnetError(
                    f"{where} [benchmarks.{bench}]: {bench!r} is not a built-in benchmark ({', '.join(sorted(builtins))}); "
                    f"as a Python module path it would be imported and executed: pass --allow-module if you trust it"
                )
    planned: dict[str, PlannedRun] = {}
    modules: dict[str, Any] = {}
    known: dict[str, set[str] | None] = {}
    sweep_defaults = grid.get("sweep", {}) or {}
    for point in expand_grid(grid, where):
        if overrides:
            point.update({k: v for k, v in overrides.items() if v is not None})
        bench = point["benchmark"]
        desc = ", ".join(f"{k}={point[k]}" for k in ("net", "layer", "distance", "seed", "preset") if k in point)
        try:
            if bench not in modules:
                modules[bench] = get_benchmark(bench)
                known[bench] = _known_options(modules[bench])
        except LossnetError as exc:
            raise LossnetError(f"{where}: benchmark {bench}: {exc}") from exc
        if known[bench] is not None:
            tables = [t for t in _tables(grid["benchmarks"][bench]) if isinstance(t, dict)]
            _check_known(
                point, known[bench], {k: v for t in tables for k, v in t.items()}, sweep_defaults, where, bench
            )
        # a Benchmark object resolves configs of its own name (a module path may differ from it)
        point["benchmark"] = getattr(modules[bench], "name", None) or bench
        try:
            _validate_net_layer(point, where)
            run = plan_point(modules[bench], point, bench)
        except LossnetError as exc:
            raise LossnetError(f"{where}: benchmark {bench} ({desc}): {exc}") from exc
        wdir = run.config.get("weights_dir")
        if isinstance(wdir, str) and wdir and not os.path.isabs(wdir):
            # runtime key (not in the run key): absolute, so Ray workers elsewhere find the same folder
            run.config["weights_dir"] = os.path.abspath(wdir)
        planned.setdefault(run.key, run)
    return list(planned.values())


def plan_point(bench: Any, partial: dict[str, Any], name: str | None = None) -> PlannedRun:
    """One run: ``bench.resolve_config(partial)`` (validated) and its run key -- what every planner
    (a grid point here, a command line in :func:`plan_partials`) does for each run.

    Raises:
        LossnetError: the benchmark rejects the config, or its ``resolve_config`` returns no dict.
    """
    from lossnet.runs.identity import run_key

    name = name or bench.name
    config = bench.resolve_config(dict(partial))
    if not isinstance(config, dict):
        raise LossnetError(f"benchmark {name}.resolve_config returned {type(config).__name__}, not a dict")
    config.setdefault("benchmark", name)
    return PlannedRun(key=run_key(config), benchmark=name, config=config)


def plan_partials(bench: Any, partials: Iterable[dict[str, Any]]) -> list[PlannedRun]:
    """The runs of partial configs (``lossnet bench``'s command line: ``bench.partials_from_args``),
    each run key once, in order; every one is validated before any runs."""
    planned: dict[str, PlannedRun] = {}
    for partial in partials:
        run = plan_point(bench, partial)
        planned.setdefault(run.key, run)
    return list(planned.values())


def _check_known(
    point: dict[str, Any], known: set[str], table: dict[str, Any], defaults: dict[str, Any], where: str, bench: str
) -> None:
    """An option no preset of the benchmark has is a typo (``epoch`` for ``epochs``): error with a
    suggestion, naming the table it came from."""
    for option in point:
        if option in known:
            continue
        axis_of = {c: a for a, c in _CONFIG_KEY.items()}
        spellings = _AXES.get(axis_of.get(option, ""), (option,))
        in_table = option in table or any(k in table for k in spellings)
        section = (
            f"[benchmarks.{bench}]"
            if in_table or not any(k in defaults for k in spellings)
            else f"[sweep] (for benchmark {bench})"
        )
        choices = sorted(known - {"benchmark"})
        close = _suggest(option, choices)
        hint = (
            f" (did you mean {' or '.join(map(repr, close))}?)" if close else f"; {bench} accepts: {', '.join(choices)}"
        )
        raise LossnetError(f"{where} {section}: unknown option {option!r}{hint}")


def _suggest(word: str, choices: list[str]) -> list[str]:
    """The closest choice (difflib, cutoff 0.6), plus a second one when it is about as close
    (``subsets`` -> ``subsets_jnd`` or ``subsets_2afc``)."""
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    if len(close) == 2:
        ratio = [difflib.SequenceMatcher(None, word, c).ratio() for c in close]
        close = close if ratio[1] >= ratio[0] - 0.1 else close[:1]
    return close


def missing_data(exc: BaseException):
    """The :class:`~lossnet.errors.DataError` behind a planning error (:func:`plan_grid` chains the
    benchmark's error under one naming the point), or None when the error is not missing data."""
    from lossnet.errors import DataError

    return exc if isinstance(exc, DataError) else exc.__cause__ if isinstance(exc.__cause__, DataError) else None


def benchmark_grids(grid: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(benchmark, grid of that benchmark alone)`` for each ``[benchmarks.NAME]`` table, the
    ``[sweep]`` defaults kept: planned one by one, a benchmark's missing data stops only its runs."""
    for bench, value in grid["benchmarks"].items():
        for table in _tables(value):  # each variant table alone (its data may be missing alone)
            yield bench, {"sweep": grid.get("sweep", {}), "benchmarks": {bench: table}}


def plan_file(
    path: str | Path, *, overrides: dict[str, Any] | None = None, allow_modules: bool = False
) -> list[PlannedRun]:
    """:func:`load_grid` + :func:`plan_grid`."""
    return plan_grid(load_grid(path), where=str(path), overrides=overrides, allow_modules=allow_modules)


def summarize(runs: Iterable[PlannedRun]) -> list[dict[str, Any]]:
    return [r.summary() for r in runs]

"""One shape for every benchmark: a typed config, presets, a registry, and CLI options from the config.

A benchmark is a :class:`Benchmark` subclass instance named ``BENCHMARK`` in its module, with

- ``Config``: a dataclass extending :class:`CommonConfig`; each field declared with :func:`option`
  (type, help text, range, choices, CLI flag). Field defaults are the base values;
- ``PRESETS``: ``{name: {field: value}}`` overriding the defaults -- at least ``paper`` (the papers'
  hyperparameters, for a GPU) and ``quick`` (CPU minutes);
- ``validate(config)``: benchmark-specific checks and normalisation (may modify ``config``, an
  instance of ``Config``);
- ``run(config, workdir, *, progress) -> BenchResult``: ``config`` is an instance of ``Config``.

Configs travel as ``Config`` objects (attributes a type checker and an IDE know); they are dicts
only at the boundaries -- what a user, CLI or grid gives, and the run key / results store.
:meth:`Benchmark.resolve_config` merges defaults, preset and a partial config, rejects unknown keys
with a suggestion, checks every field against its declaration, builds the ``Config`` object,
validates it, normalises the loss-network keys and returns it as a JSON-serialisable dict (the run
key hashes it); :meth:`Benchmark.config_object` turns that dict back into the object that
:meth:`Benchmark.run` receives. ``lossnet bench``, ``lossnet sweep`` and the Python API all go
through them. :meth:`Benchmark.add_arguments` and :meth:`Benchmark.partials_from_args` build the
CLI from the config's fields.

This module imports neither torch nor numpy, so building ``lossnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import difflib
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from lossnet.devices import check_device, resolve_device
from lossnet.errors import LossnetError
from lossnet.runs.identity import RUNTIME_KEYS

__all__ = [
    "BenchResult",
    "Benchmark",
    "CommonConfig",
    "TrainingConfig",
    "check_stand_ins",
    "config_dict",
    "ReducedRun",
    "resolving_without_data",
    "data_optional",
    "option",
    "BENCHMARKS",
    "get_benchmark",
    "list_benchmarks",
    "resolve_device",
    "check_device",
    "build_training_loss",
    "split_names",
    "expand_nets",
    "expand_layers",
    "default_workdir",
    "loss_network_knobs",
]

#: Built-in benchmarks: CLI name -> module holding ``BENCHMARK``. A dotted module path is also
#: accepted by :func:`get_benchmark` (custom benchmarks).
BENCHMARKS = {
    "similarity": "lossnet.bench.similarity",
    "superres": "lossnet.bench.superres",
    "roads": "lossnet.bench.roads",
    "autoencoder": "lossnet.bench.autoencoder",
}

#: Keys the extraction-point expansion understands (``--net all``, ``--layer E,S,M,L``).
_ESML = ("E", "S", "M", "L")


@dataclass
class BenchResult:
    """What one benchmark run produces.

    Attributes:
        config: the resolved config the run used.
        metrics: flat ``{"<dataset>/<metric>": value}`` (or ``{"<metric>": value}`` when the
            benchmark has a single dataset), higher-is-better unless the name says otherwise.
        artifacts: ``{name: path}`` of files written under the run's workdir.
        status: ``"done"``, or ``"diverged"`` (training loss became non-finite; metrics are those
            of the best weights so far, if any).
        details: optional extra rows for the printed summary (e.g. per-epoch or per-MLP table).
        signature: the reproducibility signature (:mod:`lossnet.signature`) of the perceptual
            metric or training loss the run used (stored with the run in the results store).
    """

    config: dict[str, Any]
    metrics: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)
    status: str = "done"
    details: list[dict[str, Any]] = field(default_factory=list)
    signature: str | None = None

    def __post_init__(self):
        if dataclasses.is_dataclass(self.config):  # a run's Config object -> the dict the store keeps
            self.config = config_dict(self.config)


# -- config fields ------------------------------------------------------------------------------

_KINDS = {"int", "float", "str", "bool", "list", "dict", "any"}


def option(
    default: Any = None,
    help: str = "",
    *,
    kind: str = "any",
    nullable: bool = False,
    minimum: float | None = None,
    positive: bool = False,
    choices: tuple | None = None,
    cli: bool = True,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    normalize: Callable[[Any], Any] | None = None,
    append: bool = False,
    metavar: str | None = None,
) -> Any:
    """A config field: its default, help text and how it is checked and offered on the CLI.

    Args:
        default: base value (presets override it); lists/dicts are copied per instance.
        help: one line for ``--help`` (the preset values are appended automatically).
        kind: ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict`` or ``any`` (unchecked).
        nullable: None is a valid value.
        minimum: numbers must be ``>= minimum``; ``positive``: ``> 0``.
        choices: allowed values.
        cli: offer a ``--flag`` (``flag`` overrides the name derived from the field).
        parse: converts the CLI string (default: from ``kind``); raise ``argparse.ArgumentTypeError``.
        normalize: maps a given value (CLI, grid or API) to its canonical form before the checks;
            raise ``ValueError`` with the reason for a bad value.
        append: repeatable CLI option collecting a list.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown option kind {kind!r}")
    meta = dict(
        help=help,
        kind=kind,
        nullable=nullable,
        minimum=minimum,
        positive=positive,
        choices=choices,
        cli=cli,
        flag=flag,
        parse=parse,
        normalize=normalize,
        append=append,
        metavar=metavar,
    )
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check_field(bench: str, f: dataclasses.Field, value: Any) -> Any:
    """``value`` checked against the declaration of ``f`` (ints accepted for floats, as floats)."""
    m = f.metadata
    kind = m.get("kind", "any")
    # the config key, and the CLI flag when it is spelled differently (lam is --lambda)
    name = f"{f.name} ({m['flag']})" if m.get("flag") and m["flag"].lstrip("-").replace("-", "_") != f.name else f.name
    if m.get("normalize") is not None and value is not None:
        try:
            value = m["normalize"](value)
        except (TypeError, ValueError) as exc:
            raise LossnetError(f"{bench}: {name}: {exc}") from None
    if value is None:
        if m.get("nullable") or kind == "any":
            return None
        raise LossnetError(f"{bench}: {name} must be set (got null)")
    bad = None
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        bad = "an integer"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad = "a finite number"
        else:
            value = float(value)
    elif kind == "str" and not isinstance(value, str):
        bad = "a string"
    elif kind == "bool" and not isinstance(value, bool):
        bad = "true or false"
    elif kind == "list" and not isinstance(value, list):
        bad = "a list"
    elif kind == "dict" and not isinstance(value, dict):
        bad = "a table NAME = VALUE"
    if bad:
        raise LossnetError(f"{bench}: {name} must be {bad}, got {value!r}")
    if kind in ("int", "float"):
        if m.get("positive") and not value > 0:
            raise LossnetError(f"{bench}: {name} must be positive, got {value!r}")
        if m.get("minimum") is not None and value < m["minimum"]:
            raise LossnetError(f"{bench}: {name} must be >= {m['minimum']:g}, got {value!r}")
    if m.get("choices") and value not in m["choices"]:
        raise LossnetError(f"{bench}: unknown {name} {value!r}; choose one of {', '.join(map(str, m['choices']))}")
    return value


@dataclass
class CommonConfig:
    """Keys every benchmark config has. ``net``/``layer``/``weights``/``distance`` describe the loss
    network; they are None when a benchmark's baseline uses none (so they cannot split identical runs)."""

    benchmark: str = option("", cli=False)
    preset: str = option("quick", "hyperparameter preset", kind="str", cli=False)
    net: str | None = option(
        None,
        "loss network architecture (a torchvision classification model, e.g. vgg16); "
        "a comma list or 'all' (the paper's 14) runs each",
        kind="str",
        nullable=True,
    )
    layer: str | None = option(
        None,
        "extraction layer: E/S/M/L, a readable alias (relu2_2) or an FX node name; "
        "E,S,M,L runs each, another comma list is one layer set",
        kind="str",
        nullable=True,
    )
    weights: str | None = option(
        "imagenet", "'imagenet', 'none' (random init) or a .safetensors/.pth file", kind="str", nullable=True
    )
    distance: str | None = option("mse", "feature distance (see lossnet.distances)", kind="str", nullable=True)
    normalize: str | None = option(
        "imagenet",
        "loss-network input: imagenet (mean/std, what the weights expect) or none "
        "(raw [0, 1], as the reference code feeds super-resolution and the autoencoder)",
        kind="str",
        nullable=True,
        choices=("imagenet", "none"),
    )
    transform_input: bool | None = option(
        None,
        "googlenet/inception_v3 only: torchvision's input re-normalisation (none: "
        "torchvision's default for the weights; the reference code never applies it)",
        kind="bool",
        nullable=True,
    )
    loss_net_mode: str | None = option(
        "eval",
        "eval (frozen network in eval mode), or train: BatchNorm uses batch statistics "
        "and stochastic depth is active, as in the reference's roads and autoencoder code",
        kind="str",
        nullable=True,
        choices=("eval", "train"),
    )
    seed: int = option(
        0, "random seed (>= 0: numpy, sklearn and torch generators take no negative seeds)", kind="int", minimum=0
    )
    # runtime keys: where/how the run executes, not part of the run key
    device: str | None = option(None, "torch device (default: cuda if available, else cpu)", kind="str", nullable=True)
    weights_dir: str | None = option(
        None,
        "folder searched for <arch>-imagenet1k-v1*.safetensors before downloading (default: $LOSSNET_WEIGHTS_DIR)",
        kind="str",
        nullable=True,
    )
    num_workers: int | None = option(
        None, "DataLoader worker processes (default 0)", kind="int", nullable=True, minimum=0
    )
    threads: int | None = option(
        None, "torch intra-op threads (default: torch's)", kind="int", nullable=True, minimum=1, cli=False
    )


@dataclass
class TrainingConfig(CommonConfig):
    """Keys of the training benchmarks (superres, roads, autoencoder): stand-in data, determinism,
    and the trainer's mixed precision and memory format."""

    allow_stand_in: bool = option(
        False,
        "with --preset paper, run on stand-in data (digits, the ../shared test crops, "
        "validation held out of the training images) instead of refusing; the run is stored and "
        "reported as not paper-comparable",
        kind="bool",
    )
    stand_in: list | None = option(
        None,
        "the stand-ins a paper-preset run used (set when the config is resolved)",
        kind="list",
        nullable=True,
        cli=False,
    )
    deterministic: bool | None = option(
        None,
        "deterministic algorithms (cuDNN deterministic, no autotuning), as the "
        "reference's super-resolution code; off: cuDNN autotuning on CUDA",
        kind="bool",
        nullable=True,
    )
    # the trainer's (lossnet.bench.trainer): every training benchmark has them
    amp: str = option(
        "off",
        "mixed precision of the training passes: off, bf16, or fp16 (with a gradient scaler); "
        "validation and test metrics are always fp32",
        kind="str",
        choices=("off", "bf16", "fp16"),
    )
    channels_last: bool = option(
        False, "NHWC memory format for the trained network (faster convolutions on GPUs)", kind="bool"
    )


_WITHOUT_DATA: contextvars.ContextVar[bool] = contextvars.ContextVar("lossnet_resolve_without_data", default=False)


@contextlib.contextmanager
def resolving_without_data():
    """Resolve configs (``--print-config``) without the data: a missing dataset leaves its keys
    unset (null) instead of raising, and stand-ins are recorded in ``stand_in`` instead of refused."""
    token = _WITHOUT_DATA.set(True)
    try:
        yield
    finally:
        _WITHOUT_DATA.reset(token)


def data_optional() -> bool:
    """True inside :func:`resolving_without_data`."""
    return _WITHOUT_DATA.get()


def check_stand_ins(config: TrainingConfig, reasons: list[str]) -> None:
    """Record or refuse the stand-in data of a config being resolved: a ``paper`` preset run on
    stand-ins (``reasons``, one phrase each) is refused unless ``allow_stand_in``, which marks it in
    ``config.stand_in`` (stored with the run; the report lists it as not paper-comparable).

    Raises:
        LossnetError: one line naming the stand-ins and the flag.
    """
    reasons = list(reasons) if config.preset == "paper" else []
    if reasons and not config.allow_stand_in and not data_optional():
        raise LossnetError(
            f"{config.benchmark}: --preset paper would run on stand-in data ({'; '.join(reasons)}); "
            f"give the paper's data, or pass --allow-stand-in to run anyway (marked not paper-comparable)"
        )
    config.stand_in = reasons or None


@dataclass
class ReducedRun:
    """A run cut short to time its fixed cost (:meth:`Benchmark.reduced_config`): its config, and how
    many training steps and validation passes it makes (the estimate counts those separately)."""

    config: Any
    steps: int = 1
    vals: int = 0


def config_dict(config: Any) -> dict[str, Any]:
    """A config object as the JSON-serialisable dict of the run key and the store (field order)."""
    return dataclasses.asdict(config)


# -- the benchmark base class -------------------------------------------------------------------


class Benchmark:
    """Base class of the benchmarks. Subclasses set :attr:`name`, :attr:`Config`, :attr:`PRESETS`
    and implement :meth:`run` (and usually :meth:`validate`)."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = CommonConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: value of ``loss`` that trains without a loss network (None: every run uses one).
    BASELINE_LOSS: ClassVar[str | None] = None
    #: config keys a checkpoint may differ in and still be resumed (evaluation-only settings).
    RESUMABLE_KEYS: ClassVar[frozenset] = frozenset()
    #: distances this benchmark accepts (None: every name of lossnet.distances).
    DISTANCES: ClassVar[tuple | None] = None
    #: ``layer = "all"`` (every feature node) is meaningful for this benchmark.
    allows_all_layers: ClassVar[bool] = False
    #: the benchmark trains a network (its runs have steps, epochs and a fixed cost); False: it
    #: only evaluates (similarity), and :meth:`time_steps` times its evaluation batches.
    trains: ClassVar[bool] = True

    def resumable_keys(self, config: CommonConfig) -> frozenset:
        """Keys a checkpoint may differ in and still be resumed (default :attr:`RESUMABLE_KEYS`)."""
        return self.RESUMABLE_KEYS

    # -- config ---------------------------------------------------------------------------------

    def defaults(self, preset: str) -> dict[str, Any]:
        """Field values of ``preset`` (defaults overridden by the preset)."""
        if preset not in self.PRESETS:
            raise LossnetError(
                f"{self.name}: unknown preset {preset!r}; choose one of {', '.join(sorted(self.PRESETS))}"
            )
        values = dataclasses.asdict(self.Config())
        values.update(self.PRESETS[preset])
        values.update(benchmark=self.name, preset=preset)
        return values

    def config_keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.Config)]

    def uses_loss_network(self, config: CommonConfig) -> bool:
        return self.BASELINE_LOSS is None or getattr(config, "loss", None) != self.BASELINE_LOSS

    def config_object(self, config: dict[str, Any] | CommonConfig) -> CommonConfig:
        """The ``Config`` object of a resolved config dict (from :meth:`resolve_config`, a plan or a
        store); an object is returned as is. Keys the dict lacks take the field defaults.

        Raises:
            LossnetError: a key that is not a field of this benchmark's config.
        """
        if isinstance(config, self.Config):
            return config
        if dataclasses.is_dataclass(config):
            raise LossnetError(f"{self.name}: a {type(config).__name__} is not a {self.Config.__name__}")
        names = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise LossnetError(f"{self.name}: unknown config key(s) {', '.join(map(repr, unknown))}")
        return self.Config(**config)

    def resolve_config(self, partial: dict[str, Any]) -> dict[str, Any]:
        """The full, validated, JSON-serialisable config of one run.

        ``partial`` values that are None mean "not given": the preset's value is used.

        Raises:
            LossnetError: unknown preset or key (with a suggestion), a value of the wrong type or
                range, an unknown network/layer/distance, a missing weights file or data folder.
        """
        partial = dict(partial)
        given_bench = partial.pop("benchmark", None)
        if given_bench not in (None, self.name):
            raise LossnetError(f"config of benchmark {given_bench!r} given to {self.name}")
        preset = partial.pop("preset", None) or "quick"
        config = self.defaults(preset)
        fields = {f.name: f for f in dataclasses.fields(self.Config)}
        for key in partial:
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known options: {', '.join(sorted(fields))}"
                raise LossnetError(f"{self.name}: unknown option {key!r}{hint}")
        config.update({k: v for k, v in partial.items() if v is not None})
        for name, f in fields.items():
            config[name] = _check_field(self.name, f, config[name])
        cfg = self.Config(**config)
        self.validate(cfg)
        if cfg.device:
            check_device(cfg.device)
        self.check_loss_network(cfg)
        return config_dict(cfg)

    def validate(self, config: CommonConfig) -> None:
        """Benchmark-specific checks and normalisation (in place), after the per-field checks and
        before the loss-network checks."""

    def check_loss_network(self, config: CommonConfig) -> None:
        """Loss-network keys: None for a baseline; otherwise network, every layer, distance and
        weights are checked before any work starts, and the weights spec is normalised.
        (A benchmark without a real loss network may override this.)"""
        if not self.uses_loss_network(config):
            for key in ("net", "layer", "weights", "distance", "normalize", "transform_input", "loss_net_mode"):
                setattr(config, key, None)
            return
        from lossnet import distances
        from lossnet.errors import UnknownLayerError
        from lossnet.models.layers import resolve_layer
        from lossnet.models.registry import get_spec
        from lossnet.weights import WeightsSpec

        if not config.net:
            raise LossnetError(f"{self.name}: needs --net (a loss network architecture)")
        if not config.layer:
            raise LossnetError(f"{self.name}: needs --layer")
        allowed = self.DISTANCES or tuple(distances.DISTANCES)
        if config.distance not in allowed:
            raise LossnetError(f"{self.name}: unknown distance {config.distance!r}; choose one of {', '.join(allowed)}")
        get_spec(config.net)  # UnknownNetworkError names the architecture
        if str(config.layer).strip().lower() != "all" or not self.allows_all_layers:
            for layer in str(config.layer).split(","):
                try:
                    resolve_layer(config.net, layer.strip())  # UnknownLayerError lists the choices
                except UnknownLayerError:
                    self._explain_default_layer(config)
                    raise
        config.weights = WeightsSpec.parse(config.weights).label

    def _explain_default_layer(self, config: CommonConfig) -> None:
        """A layer the user never gave -- the preset's default, named for its default network (vgg16's
        relu2_2) -- is missing from another network: say so instead of naming an unknown layer."""
        preset = config.preset or "quick"
        defaults = self.defaults(preset) if preset in self.PRESETS else {}
        if (
            defaults.get("layer")
            and defaults.get("net")
            and config.layer == defaults["layer"]
            and config.net != defaults["net"]
        ):
            raise LossnetError(
                f"{self.name}: {config.net} has no layer {config.layer!r} (the {preset} preset's default layer is "
                f"{defaults['net']}'s); give --layer: E, S, M or L (the paper's extraction points), "
                f"E,S,M,L to run each, or a layer name (lossnet nets show {config.net})"
            )

    # -- CLI ------------------------------------------------------------------------------------

    def _preset_help(self, name: str) -> str:
        values = {p: self.defaults(p).get(name) for p in self.PRESETS}
        if len(set(map(repr, values.values()))) == 1:
            return f"default {_show(next(iter(values.values())))}"
        return "; ".join(f"{p}: {_show(v)}" for p, v in values.items())

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Every CLI option of this benchmark, generated from the config fields (help states defaults)."""
        common = {f.name for f in dataclasses.fields(CommonConfig)}
        g_common = parser.add_argument_group("common options")
        g_common.add_argument(
            "--preset",
            default="quick",
            choices=sorted(self.PRESETS),
            help=f"hyperparameter preset (default quick): {', '.join(sorted(self.PRESETS))}",
        )
        g_own = parser.add_argument_group(f"{self.name} options")
        for f in dataclasses.fields(self.Config):
            m = f.metadata
            if not m.get("cli", True) or f.name in ("benchmark", "preset"):
                continue
            group = g_common if f.name in common else g_own
            flag = m.get("flag") or "--" + f.name.replace("_", "-")
            kwargs: dict[str, Any] = {"dest": f.name, "default": None}
            help_text = m.get("help", "")
            if f.name not in RUNTIME_KEYS:
                help_text = (
                    f"{help_text} ({self._preset_help(f.name)})" if help_text else f"({self._preset_help(f.name)})"
                )
            kwargs["help"] = help_text.replace("%", "%%")
            if m.get("kind") == "bool":
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = m.get("parse") or {"int": int, "float": float}.get(m.get("kind"), str)
                if m.get("append"):
                    kwargs["action"] = "append"
                if m.get("choices") and not m.get("parse"):
                    kwargs["choices"] = m["choices"]
                if m.get("metavar"):
                    kwargs["metavar"] = m["metavar"]
            group.add_argument(flag, **kwargs)
        self.add_extra_arguments(g_own)
        out = parser.add_argument_group("output options")
        out.add_argument(
            "--out",
            help="work directory for checkpoints and artifacts (default: lossnet-out/<benchmark>/<run key>; "
            "with several runs, one sub-folder per run key)",
        )
        out.add_argument(
            "--json", dest="json_path", help="write {runs: {run key: {status, config, metrics}}} to this JSON file"
        )
        out.add_argument("--store", help="also record the runs in this SQLite results store (see 'lossnet sweep')")
        out.add_argument("--no-progress", action="store_true", help="disable progress bars")
        out.add_argument(
            "--print-config",
            action="store_true",
            help="print the resolved config of every run (JSON, keyed by run key) and exit without running",
        )
        out.add_argument(
            "--profile",
            type=int,
            metavar="K",
            help="time K training steps of every run (per phase: data, "
            "loss network, model, optimiser...) and print where a step spends its time, without a full run",
        )

    def add_extra_arguments(self, group) -> None:
        """Options that are not config fields (e.g. ones that expand into several runs)."""

    def partials_from_args(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        """Partial configs of the runs a command line asks for: ``--net a,b`` / ``--net all`` and
        ``--layer E,S,M,L`` expand into one run each; ``--separate-layers`` splits other layer lists."""
        keys = [f.name for f in dataclasses.fields(self.Config) if f.metadata.get("cli", True)]
        base = {k: getattr(args, k, None) for k in keys if k not in ("net", "layer")}
        base["preset"] = getattr(args, "preset", None)
        nets = expand_nets(getattr(args, "net", None))
        layers = expand_layers(getattr(args, "layer", None), separate=bool(getattr(args, "separate_layers", False)))
        return [dict(p, net=n, layer=l) for p in self.expand_args(args, base) for n in nets for l in layers]

    def expand_args(self, args: argparse.Namespace, base: dict[str, Any]) -> list[dict[str, Any]]:
        """Hook: benchmark-specific expansion of one partial config into several (default: none)."""
        return [base]

    # -- running --------------------------------------------------------------------------------

    def run(self, config: CommonConfig, workdir: str | Path, *, progress: bool = True) -> BenchResult:
        """One run of ``config`` (a ``Config`` object; implementations start with
        ``config = self.config_object(config)`` so a resolved dict is accepted too)."""
        raise NotImplementedError

    # -- timing hooks, read by lossnet.bench.profile.time_benchmark (`lossnet sweep estimate`) --

    def training_setup(self, config: CommonConfig):
        """Hook: a :class:`lossnet.bench.profile.TrainingSetup` (the built training task of
        ``config``, steps per epoch, epochs) for timing steps without a full run; None (the
        default) times one whole run instead."""
        return None

    def reduced_config(self, config: CommonConfig) -> CommonConfig | None:
        """Hook: ``config`` cut to one epoch of one training step (everything else, evaluation
        included, as in the full run), whose wall time gives the run's fixed cost, as a
        :class:`ReducedRun`; None: none."""
        return None

    def time_steps(self, config: CommonConfig, steps: int, *, warmup: int = 1, sizes: dict[str, Any] | None = None):
        """Hook: a :class:`lossnet.bench.profile.StepTiming` of ``steps`` steps of ``config`` timed the
        benchmark's own way (similarity: evaluation batches); None (the default): the training
        steps of :meth:`training_setup`. ``sizes``: the real data's sizes (:meth:`synthetic_data`)."""
        return None

    def scale_to_real(self, config: CommonConfig, timing, sizes: dict[str, Any]) -> None:
        """Hook: rescale ``timing`` (steps per run, validation seconds) from the synthetic data it was
        measured on to the real data's ``sizes`` (from :meth:`synthetic_data`). Default: nothing."""

    def synthetic_data(self, root: Path, values: dict[str, Any]):
        """Hook: write synthetic data of the shapes ``values`` (the preset's values with the grid's
        table over them) need under ``root``; a :class:`lossnet.bench.synthetic.SyntheticData`.
        ``lossnet sweep estimate`` times a benchmark whose data are missing on them.

        Raises:
            DataError: the benchmark has no synthetic data (the default).
        """
        from lossnet.errors import DataError

        raise DataError(f"{self.name}: no synthetic data for this benchmark")

    def paper_benchmark(self, config: dict[str, Any]) -> str | None:
        """Hook: the paper's benchmark (table group of :mod:`lossnet.paper`) a stored run of this
        benchmark is compared with -- ``config`` is the stored dict -- or None (not a paper benchmark)."""
        return None

    def __repr__(self) -> str:
        return f"<benchmark {self.name}>"


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v)) or "[]"
    return "none" if v is None else str(v)


# -- registry ------------------------------------------------------------------------------------


def list_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name`` (built-in) or the ``BENCHMARK`` of a dotted module path.

    Raises:
        LossnetError: unknown name, or a module without a ``BENCHMARK`` instance.
    """
    if isinstance(name, Benchmark):
        return name
    module_name = BENCHMARKS.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise LossnetError(
                f"unknown benchmark {name!r}: choose one of {', '.join(list_benchmarks())} or an importable module path"
            ) from exc
        raise
    bench = getattr(module, "BENCHMARK", None)
    if not isinstance(bench, Benchmark):
        raise LossnetError(
            f"benchmark module {module_name!r} has no BENCHMARK (a lossnet.bench.base.Benchmark instance)"
        )
    if not bench.name:
        raise LossnetError(f"benchmark module {module_name!r}: BENCHMARK.name is empty")
    return bench


# -- net/layer expansion (one place) --------------------------------------------------------------


def split_names(value: str | None) -> list[str]:
    """Comma-separated value -> stripped, non-empty names."""
    return [s.strip() for s in str(value).split(",") if s.strip()] if value else []


def expand_nets(net: str | None) -> list[str | None]:
    """``--net``: "all" = the paper's 14, a comma list = one run each, nothing = [None]."""
    names = split_names(net)
    if [n.lower() for n in names] == ["all"]:
        from lossnet.models.registry import PAPER_ARCHS

        return list(PAPER_ARCHS)
    return names or [None]


def expand_layers(layer: str | None, *, separate: bool = False) -> list[str | None]:
    """``--layer``: an E/S/M/L list (or any list with ``separate``) is one run per layer; another
    comma list is one layer set."""
    names = split_names(layer)
    if not names:
        return [None]
    if len(names) > 1 and (separate or all(n.upper() in _ESML for n in names)):
        return [n.upper() if n.upper() in _ESML else n for n in names]
    return [",".join(names)]


def default_workdir(benchmark: str, key: str) -> Path:
    return Path("lossnet-out") / benchmark / key


# -- devices and losses ----------------------------------------------------------------------------


def build_training_loss(config: CommonConfig, *, pixel: Callable | None = None):
    """The training loss of a config: ``pixel()`` (default pixel MSE) when the benchmark's baseline
    uses no loss network, else :class:`lossnet.loss.PerceptualLoss` at the config's
    network/layer(s)/distance (Eq. 3 / Eq. 5 / Eq. 6 of Pihlgren et al.: ``d(phi_l(pred), phi_l(target))``)."""
    if config.net is None:
        if pixel is not None:
            return pixel()
        from torch import nn

        return nn.MSELoss()
    from lossnet.loss import PerceptualLoss

    weights = None if config.weights in (None, "none") else config.weights
    # the loss-network knobs are passed only when they differ from the defaults, so the loss is
    # built exactly as before the knobs existed
    return PerceptualLoss(
        net=config.net,
        layers=tuple(split_names(config.layer)),
        distance=config.distance,
        weights=weights,
        weights_dir=config.weights_dir,
        **loss_network_knobs(config),
    )


#: Loss-network knobs of :class:`CommonConfig` and their defaults (today's behaviour).
_KNOB_DEFAULTS = {
    k: CommonConfig.__dataclass_fields__[k].default for k in ("normalize", "transform_input", "loss_net_mode")
}


def loss_network_knobs(config: CommonConfig) -> dict[str, Any]:
    """The config's loss-network options that differ from the defaults (``normalize``,
    ``transform_input``, ``loss_net_mode``), as keyword arguments of LossNetwork/PerceptualLoss."""
    return {k: getattr(config, k) for k, default in _KNOB_DEFAULTS.items() if getattr(config, k) != default}

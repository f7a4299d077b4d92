"""The benchmark plug-in interface shared by ``lossnet bench`` and the sweep runner."""

from __future__ import annotations

import argparse
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lossnet.errors import LossnetError

__all__ = [
    "BenchResult",
    "BENCHMARKS",
    "get_benchmark",
    "list_benchmarks",
    "add_common_arguments",
    "common_config_from_args",
    "apply_preset",
    "RUNTIME_KEYS",
]

#: Built-in benchmarks: CLI name -> module. A dotted module path is also accepted by
#: :func:`get_benchmark` (custom benchmarks, and the fake benchmark of the sweep tests).
BENCHMARKS = {
    "similarity": "lossnet.bench.similarity",
    "superres": "lossnet.bench.superres",
    "roads": "lossnet.bench.roads",
    "autoencoder": "lossnet.bench.autoencoder",
}

#: Config keys that describe where/how a run executes, not what it computes. They are kept in the
#: stored config but excluded from the run key.
RUNTIME_KEYS = frozenset({"device", "weights_dir", "num_workers", "progress", "threads"})


@dataclass
class BenchResult:
    """What one benchmark run produces.

    Attributes:
        config: the resolved config the run used.
        metrics: flat ``{"<dataset>/<metric>": value}`` (or ``{"<metric>": value}`` when the
            benchmark has a single dataset), higher-is-better unless the name says otherwise.
        artifacts: ``{name: path}`` of files written under the run's workdir (checkpoints,
            images, CSV, logs).
        status: ``"done"``, or a short failure status such as ``"diverged"``.
        details: optional extra rows for the printed summary (e.g. per-MLP validation table).
    """

    config: dict[str, Any]
    metrics: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)
    status: str = "done"
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.metrics.items()}
        return {"config": self.config, "metrics": metrics, "artifacts": self.artifacts, "status": self.status}


def list_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


def get_benchmark(name: str) -> ModuleType:
    """The benchmark module for a built-in name or a dotted module path."""
    module_name = BENCHMARKS.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise LossnetError(
                f"unknown benchmark {name!r}: choose one of {', '.join(list_benchmarks())} or an importable module path"
            ) from exc
        raise
    for attr in ("PRESETS", "resolve_config", "run"):
        if not hasattr(module, attr):
            raise LossnetError(f"benchmark module {module_name!r} lacks {attr}")
    return module


def apply_preset(presets: dict[str, dict], partial: dict[str, Any]) -> dict[str, Any]:
    """Preset values, overridden by every key of ``partial`` that is not None."""
    preset = partial.get("preset", "quick")
    if preset not in presets:
        raise LossnetError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(presets))}")
    config = dict(presets[preset])
    config.update({k: v for k, v in partial.items() if v is not None})
    config["preset"] = preset
    return config


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every ``lossnet bench`` command has."""
    g = parser.add_argument_group("common options")
    g.add_argument("--preset", default="quick", help="hyperparameter preset: paper (GPU scale) or quick (CPU minutes); default quick")
    g.add_argument("--net", help="loss network architecture (e.g. vgg16, alexnet, or any torchvision classification model)")
    g.add_argument("--layer", help="extraction layer: E/S/M/L, a readable alias (relu2_2) or an FX node name; comma-separated for several")
    g.add_argument("--weights", help="'imagenet' (default), 'none' (random init) or a .safetensors/.pth file")
    g.add_argument("--weights-dir", help="folder searched for <arch>-imagenet1k-v1*.safetensors before downloading (default: $LOSSNET_WEIGHTS_DIR)")
    g.add_argument("--seed", type=int, help="random seed")
    g.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--out", help="work directory for checkpoints and artifacts (default: lossnet-out/<benchmark>/<run key>)")
    g.add_argument("--json", dest="json_path", help="write {config, metrics} to this JSON file")
    g.add_argument("--store", help="also record the run in this SQLite results store (see 'lossnet sweep')")
    g.add_argument("--no-progress", action="store_true", help="disable progress bars")


_COMMON_KEYS = ("preset", "net", "layer", "weights", "weights_dir", "seed", "device")


def common_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k, None) for k in _COMMON_KEYS}


def split_names(value: str | None) -> list[str]:
    """Comma-separated CLI value -> stripped, non-empty names."""
    return [s.strip() for s in value.split(",") if s.strip()] if value else []


def expand_nets(net: str | None) -> list[str | None]:
    """``--net``: "all" = the paper's 14, a comma list = one run each, nothing = [None]."""
    from lossnet.registry import PAPER_ARCHS

    names = split_names(net)
    return list(PAPER_ARCHS) if names == ["all"] else (names or [None])


def expand_layers(layer: str | None) -> list[str | None]:
    """``--layer``: an E/S/M/L list is one run per layer; another comma list is one layer set."""
    names = split_names(layer)
    if not names:
        return [None]
    if len(names) > 1 and all(n.upper() in ("E", "S", "M", "L") for n in names):
        return [n.upper() for n in names]
    return [",".join(names)]


def default_workdir(benchmark: str, key: str) -> Path:
    return Path("lossnet-out") / benchmark / key


def resolve_device(config: dict[str, Any]):
    """The run's torch device: ``config["device"]``, else CUDA when available, else CPU."""
    import torch

    return torch.device(config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))


def check_loss_network(config: dict[str, Any], benchmark: str) -> None:
    """Validate (in place) the loss-network keys of a training benchmark's config.

    ``loss == "pixel"``: the baseline has no loss network, so net/layer/weights/distance become
    None and cannot split identical runs. Otherwise the distance, every layer and a weights file
    are checked before any training starts.
    """
    if config["loss"] == "pixel":
        config.update(net=None, layer=None, weights=None, distance=None)
        return
    from lossnet import distances
    from lossnet.registry import resolve_layer

    if config["distance"] not in distances.DISTANCES:
        raise LossnetError(f"{benchmark}: unknown distance {config['distance']!r}; choose one of {', '.join(distances.DISTANCES)}")
    for layer in str(config["layer"]).split(","):
        resolve_layer(config["net"], layer.strip())  # raises UnknownNetworkError / UnknownLayerError
    w = config["weights"]
    if w not in ("imagenet", "none", None) and not Path(w).is_file():
        raise LossnetError(f"{benchmark}: weights file not found: {w}")
    config["weights"] = "none" if w is None else w


def build_training_loss(config: dict[str, Any]):
    """``pixel``: MSE on RGB. Otherwise :class:`lossnet.loss.PerceptualLoss` at the config's
    network/layer(s)/distance (Eq. 3 and Eq. 6 of Pihlgren et al.: ``d(phi_l(pred), phi_l(target))``)."""
    from torch import nn

    if config["loss"] == "pixel":
        return nn.MSELoss()
    from lossnet.loss import PerceptualLoss

    layers = tuple(s.strip() for s in str(config["layer"]).split(",") if s.strip())
    weights = None if config["weights"] in (None, "none") else config["weights"]
    return PerceptualLoss(
        net=config["net"], layers=layers, distance=config["distance"], weights=weights, weights_dir=config.get("weights_dir")
    )

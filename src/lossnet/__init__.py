"""lossnet: deep perceptual loss networks, distances and benchmarks.

The public API is available from the package itself::

    import lossnet

    loss = lossnet.PerceptualLoss(net="vgg16", layers=("relu2_2",), distance="mse")
    metric = lossnet.PerceptualMetric(preset="lpips-alex")

Names are loaded on first use (PEP 562), so ``import lossnet`` does not import torch or
torchvision. It does install the torchvision compatibility hook (:mod:`lossnet._torchvision_compat`):
import ``lossnet`` before torchvision / lpips / piq and torchvision's missing op schemas are
defined right before torchvision is first imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lossnet import errors as _errors
from lossnet._torchvision_compat import install_import_hook as _install_import_hook

__version__ = "0.1.0"

_install_import_hook()  # must happen before anything imports torchvision; imports nothing itself

#: The error types: every exception class of :mod:`lossnet.errors` (LossnetError and subclasses).
_ERROR_NAMES = tuple(
    name for name, obj in vars(_errors).items()
    if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == _errors.__name__
)
globals().update({name: getattr(_errors, name) for name in _ERROR_NAMES})

#: public name -> module that defines it (imported on first attribute access).
_LAZY: dict[str, str] = {
    # loss networks, losses and metrics
    "LossNetwork": "lossnet.network",
    "PerceptualLoss": "lossnet.loss",
    "PerceptualMetric": "lossnet.loss",
    "perceptual_distance": "lossnet.loss",
    "check_range": "lossnet.loss",
    "RANGE_CHECKS": "lossnet.loss",
    "RangeWarning": "lossnet.loss",
    # distances (lossnet.distances.__all__)
    "EPS": "lossnet.distances",
    "DISTANCES": "lossnet.distances",
    "unit_normalize": "lossnet.distances",
    "spatial": "lossnet.distances",
    "mse": "lossnet.distances",
    "l1": "lossnet.distances",
    "gram": "lossnet.distances",
    "gram_matrix": "lossnet.distances",
    "meanpool": "lossnet.distances",
    "compute_distance": "lossnet.distances",
    "Distance": "lossnet.distances",
    "DISTS_C1": "lossnet.distances",
    "DISTS_C2": "lossnet.distances",
    "MAP_DISTANCES": "lossnet.distances",
    "CHANNEL_WEIGHTED": "lossnet.distances",
    "dists": "lossnet.distances",
    "layer_masks": "lossnet.distances",
    "distance_map": "lossnet.distances",
    # architecture registry
    "list_models": "lossnet.registry",
    "get_spec": "lossnet.registry",
    "list_nodes": "lossnet.registry",
    "EXTRA_LAYERS": "lossnet.registry",
    # backbones
    "build_backbone": "lossnet.backbone",
    "build_feature_extractor": "lossnet.backbone",
    # weights
    "WeightsSpec": "lossnet.weights",
    # LPIPS presets (lossnet.lpips_presets.__all__)
    "LpipsPreset": "lossnet.lpips_presets",
    "PRESETS": "lossnet.lpips_presets",
    "get_preset": "lossnet.lpips_presets",
    "lpips_version": "lossnet.lpips_presets",
    "lpips_heads": "lossnet.lpips_presets",
    "lpips_head_path": "lossnet.lpips_presets",
    # DISTS preset
    "DISTS_PRESET": "lossnet.dists_preset",
    "dists_channel_weights": "lossnet.dists_preset",
    # reproducibility signatures
    "parse_signature": "lossnet.signature",
    # calibrated heads (lossnet.heads)
    "Heads": "lossnet.heads",
    "load_heads": "lossnet.heads",
    "save_heads": "lossnet.heads",
    "export_lpips_heads": "lossnet.heads",
    "fit_heads": "lossnet.heads",
    "HeadsFitConfig": "lossnet.heads",
}

#: Submodules reachable as attributes (``lossnet.loss``) without an explicit import.
_SUBMODULES = frozenset({
    "adapters", "atomic", "backbone", "bench", "cli", "distances", "dists_preset", "errors", "heads", "imageio", "loss",
    "lpips_presets", "network", "paper", "registry", "report", "runkey", "signature", "structure", "sweep", "weights",
})

__all__ = ["__version__", *_LAZY, *_ERROR_NAMES]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


if TYPE_CHECKING:  # static analysers and IDEs see the real names (re-exports)
    from lossnet.backbone import build_backbone, build_feature_extractor  # noqa: F401
    from lossnet.distances import (  # noqa: F401
        CHANNEL_WEIGHTED,
        DISTANCES,
        DISTS_C1,
        DISTS_C2,
        EPS,
        MAP_DISTANCES,
        Distance,
        compute_distance,
        distance_map,
        dists,
        gram,
        gram_matrix,
        l1,
        layer_masks,
        meanpool,
        mse,
        spatial,
        unit_normalize,
    )
    from lossnet.dists_preset import DISTS_PRESET, dists_channel_weights  # noqa: F401
    from lossnet.heads import Heads, HeadsFitConfig, export_lpips_heads, fit_heads, load_heads, save_heads  # noqa: F401
    from lossnet.errors import DataError, InputError, LossnetError, UnknownLayerError, UnknownNetworkError, WeightsError  # noqa: F401
    from lossnet.loss import RANGE_CHECKS, PerceptualLoss, PerceptualMetric, RangeWarning, check_range, perceptual_distance  # noqa: F401
    from lossnet.lpips_presets import PRESETS, LpipsPreset, get_preset, lpips_head_path, lpips_heads, lpips_version  # noqa: F401
    from lossnet.network import LossNetwork  # noqa: F401
    from lossnet.registry import EXTRA_LAYERS, get_spec, list_models, list_nodes  # noqa: F401
    from lossnet.signature import parse_signature  # noqa: F401
    from lossnet.weights import WeightsSpec  # noqa: F401

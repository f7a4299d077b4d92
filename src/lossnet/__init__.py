"""lossnet: deep perceptual loss networks and distances (the core), and the Pihlgren et al. /
Kumar et al. benchmark harness (the application, ``pip install "lossnet[bench]"``).

The public face is small; everything else is reachable from its module::

    import lossnet

    loss = lossnet.PerceptualLoss(net="vgg16", layers=("relu2_2",), distance="mse")
    metric = lossnet.PerceptualMetric(preset="lpips-alex")
    lossnet.distances.gram, lossnet.models.registry.EXTRA_LAYERS, lossnet.errors.WeightsError

Names are loaded on first use (PEP 562), so ``import lossnet`` does not import torch or
torchvision. It does install the torchvision compatibility hook (:mod:`lossnet._torchvision_compat`):
import ``lossnet`` before torchvision / lpips / piq and torchvision's missing op schemas are
defined right before torchvision is first imported.

Layers (imports only go down; ``tests/core/test_layering.py`` enforces it): the core -- ``loss``,
``network``, ``distances``, ``models``, ``weights``, ``presets`` (``lpips_presets``,
``dists_preset``, ``heads``), ``imageio``, ``signature``, ``errors`` -- needs torch, torchvision,
numpy, safetensors and pillow only; the application -- ``bench``, ``sweep``, ``report``,
``datasets``, ``cli`` -- sits above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lossnet._torchvision_compat import install_import_hook as _install_import_hook
from lossnet._version import __version__

_install_import_hook()  # must happen before anything imports torchvision; imports nothing itself

#: public name -> module that defines it (imported on first attribute access).
_LAZY: dict[str, str] = {
    # loss networks, losses and metrics
    "LossNetwork": "lossnet.network",
    "PerceptualLoss": "lossnet.loss",
    "PerceptualMetric": "lossnet.loss",
    "perceptual_distance": "lossnet.loss",
    "check_range": "lossnet.loss",
    # distances (the rest: lossnet.distances)
    "DISTANCES": "lossnet.distances",
    "distance_map": "lossnet.distances",
    # architecture registry and builder (the rest: lossnet.models)
    "list_models": "lossnet.models.registry",
    "get_spec": "lossnet.models.registry",
    "list_nodes": "lossnet.models.layers",
    "build_feature_extractor": "lossnet.models.builder",
    # weights, presets, heads files
    "WeightsSpec": "lossnet.weights",
    "PRESETS": "lossnet.lpips_presets",
    "Heads": "lossnet.heads.file",
    "load_heads": "lossnet.heads.file",
    "save_heads": "lossnet.heads.file",
    # reproducibility signatures
    "parse_signature": "lossnet.signature",
    # the base of every lossnet error (the subclasses: lossnet.errors)
    "LossnetError": "lossnet.errors",
    # which network and layer to use: Pihlgren et al.'s published tables (or your results store)
    "recommend": "lossnet.recommendation",
}

#: Core submodules reachable as attributes (``lossnet.distances``) without an explicit import. The
#: application packages (bench, sweep, report, datasets, cli) are imported explicitly.
_SUBMODULES = frozenset(
    {
        "atomic",
        "distances",
        "dists_preset",
        "errors",
        "heads",
        "imageio",
        "loss",
        "lpips_presets",
        "models",
        "network",
        "paper",
        "signature",
        "structure",
        "weights",
    }
)

__all__ = ["__version__", *_LAZY]


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
    from lossnet.distances import DISTANCES, distance_map  # noqa: F401
    from lossnet.errors import LossnetError  # noqa: F401
    from lossnet.heads.file import Heads, load_heads, save_heads  # noqa: F401
    from lossnet.loss import PerceptualLoss, PerceptualMetric, check_range, perceptual_distance  # noqa: F401
    from lossnet.lpips_presets import PRESETS  # noqa: F401
    from lossnet.models.builder import build_feature_extractor  # noqa: F401
    from lossnet.models.layers import list_nodes  # noqa: F401
    from lossnet.models.registry import get_spec, list_models  # noqa: F401
    from lossnet.network import LossNetwork  # noqa: F401
    from lossnet.recommendation import recommend  # noqa: F401
    from lossnet.signature import parse_signature  # noqa: F401
    from lossnet.weights import WeightsSpec  # noqa: F401

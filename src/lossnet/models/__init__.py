"""Loss-network architectures: the registry of names and extraction points, the builder, and the
adapters that make transformer outputs feature maps.

Layering (one way): :mod:`~lossnet.models.registry` (names, E/S/M/L, aliases; no model is built)
<- :mod:`~lossnet.models.builder` (torchvision models, feature extractors) <-
:mod:`~lossnet.models.layers` (layer names checked against the built graph). The registry never
imports the builder.
"""

from lossnet.models.builder import build_backbone, build_feature_extractor
from lossnet.models.layers import list_nodes, resolve_layer, resolve_layers
from lossnet.models.registry import ArchSpec, get_spec, list_models, paper_layers

__all__ = [
    "ArchSpec",
    "build_backbone",
    "build_feature_extractor",
    "get_spec",
    "list_models",
    "list_nodes",
    "paper_layers",
    "resolve_layer",
    "resolve_layers",
]

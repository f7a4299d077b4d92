"""Layer names resolved against the built graph: the one place that needs both the registry
(:mod:`lossnet.models.registry`: E/S/M/L, aliases) and the builder (:mod:`lossnet.models.builder`:
the FX nodes). The registry never imports the builder; this module sits above both.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from lossnet.errors import UnknownLayerError
from lossnet.models.registry import get_spec, named_layer

__all__ = ["list_nodes", "resolve_layer", "resolve_layers"]


@lru_cache(maxsize=None)
def list_nodes(arch: str) -> tuple[str, ...]:
    """Every FX node of ``arch`` in eval mode (what ``create_feature_extractor`` accepts), in execution order."""
    from torchvision.models.feature_extraction import get_graph_node_names

    from lossnet.models import builder  # looked up at call time: one build path, patchable in tests

    if arch.startswith("timm:"):
        from lossnet.models.extract import node_names

        return node_names(builder.build_backbone(arch))  # FX nodes where it traces, module paths otherwise
    _, eval_nodes = get_graph_node_names(builder.build_backbone(arch))
    return tuple(n for n in eval_nodes if n != "x")


def _module_prefixes(nodes: tuple[str, ...]) -> set[str]:
    prefixes = set()
    for n in nodes:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            prefixes.add(".".join(parts[:i]))
    return prefixes


def resolve_layer(arch: str, name: str, *, validate: bool = True) -> str:
    """Map a layer name to the FX node / module name torchvision's feature extractor takes.

    Accepted, in this order: an extraction point ``E``/``S``/``M``/``L`` (case-insensitive; the
    paper's, or lossnet's for :data:`EXTRA_LAYERS`), ``"input"`` (the image itself, returned as
    is), a readable alias (``relu2_2``), or an FX node / module name (``features.8``, ``layer1``).

    Raises:
        UnknownLayerError: none of the above; the message lists the valid choices.
    """
    spec = get_spec(arch)
    key = name.strip()
    node = named_layer(arch, key)
    if node is not None:
        return node
    if not validate:
        return key
    nodes = list_nodes(arch)
    if key in nodes or key in _module_prefixes(nodes):
        return key
    choices = list(spec.layers) + list(spec.aliases)
    close = difflib.get_close_matches(key, choices + list(nodes), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownLayerError(
        f"unknown layer {name!r} for {arch}: use E/S/M/L, an alias ({', '.join(spec.aliases) or 'none'}) "
        f"or an FX node name (lossnet nets show {arch} --nodes).{hint}"
    )


def resolve_layers(arch: str, names) -> list[str]:
    """:func:`resolve_layer` for a string (comma-separated allowed) or a sequence of names."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise UnknownLayerError(f"no layer given for {arch}")
    return [resolve_layer(arch, n) for n in names]

"""Registry of loss-network architectures and their extraction points.

The 14 architectures of Pihlgren et al. (Table II) carry their four extraction points E/S/M/L
(early, semi-early, middle, late) as torchvision FX node / module names, readable aliases
(``relu2_2``, ``layer1``, ``fire4`` ...), and the paper's Table I numbers. Any other torchvision
classification model can be used too, with FX node names (``lossnet nets show ARCH --nodes``).

References:
    Pihlgren, Nikolaidou, Chhipa, Abid, Saini, Simistira, Liwicki. "A Systematic Performance
    Analysis of Deep Perceptual Loss Networks: Breaking Transfer Learning Conventions", 2024.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache

from lossnet.errors import UnknownLayerError, UnknownNetworkError
from lossnet.paper import LAYER_KEYS, architectures

__all__ = [
    "PAPER_ARCHS",
    "PAPER_LAYERS",
    "EXTRA_LAYERS",
    "INPUT_LAYER",
    "ArchSpec",
    "get_spec",
    "paper_layers",
    "named_layer",
    "layer_key",
    "list_models",
    "aliases",
    "WEIGHTS_TAG",
]

#: torchvision weights every paper architecture is pinned to ("pretrained=True" in the paper).
WEIGHTS_TAG = "IMAGENET1K_V1"

_RESNET = {"E": "relu", "S": "layer1", "M": "layer2", "L": "layer4"}
_EFFNET = {"E": "features.0", "S": "features.1", "M": "features.4", "L": "features.7"}

#: Table II of the paper: torchvision module path of each extraction point.
PAPER_LAYERS: dict[str, dict[str, str]] = {
    "alexnet": {"E": "features.1", "S": "features.4", "M": "features.7", "L": "features.11"},
    "vgg11": {"E": "features.1", "S": "features.4", "M": "features.9", "L": "features.19"},
    "vgg16": {"E": "features.3", "S": "features.8", "M": "features.15", "L": "features.29"},
    "vgg16_bn": {"E": "features.5", "S": "features.12", "M": "features.22", "L": "features.42"},
    "vgg19": {"E": "features.3", "S": "features.8", "M": "features.17", "L": "features.35"},
    "resnet18": dict(_RESNET),
    "resnet50": dict(_RESNET),
    "resnext50_32x4d": dict(_RESNET),
    "googlenet": {"E": "conv1", "S": "inception3a", "M": "inception4a", "L": "inception5b"},
    "inception_v3": {"E": "Conv2d_2b_3x3", "S": "Mixed_5b", "M": "Mixed_5d", "L": "Mixed_6e"},
    "efficientnet_b0": dict(_EFFNET),
    "efficientnet_b7": dict(_EFFNET),
    "densenet121": {
        "E": "features.relu0",
        "S": "features.denseblock1",
        "M": "features.denseblock2",
        "L": "features.denseblock4",
    },
    "squeezenet1_1": {"E": "features.1", "S": "features.3", "M": "features.7", "L": "features.12"},
}

#: The 14 architectures in the paper's table order.
PAPER_ARCHS: tuple[str, ...] = tuple(PAPER_LAYERS)

#: The layer name that means the (range-mapped, un-normalised) input image itself, as DISTS uses it.
INPUT_LAYER = "input"


def _vit_points(blocks: int) -> dict[str, str]:
    # E = the patch embedding (the "stem", like a CNN's first conv); S/M/L = the blocks ending the
    # first quarter, the first half and the whole encoder (block outputs, before the final LayerNorm).
    return {
        "E": "conv_proj",
        "S": f"encoder.layers.encoder_layer_{blocks // 4 - 1}",
        "M": f"encoder.layers.encoder_layer_{blocks // 2 - 1}",
        "L": f"encoder.layers.encoder_layer_{blocks - 1}",
    }


# Hierarchical models (ConvNeXt, Swin): features.0 is the stem (patchify conv), features.1/3/5/7 the
# four stages (2/4/6 are the downsampling layers). E/S/M/L = stem, stage 1, stage 2, stage 4 -- the
# ResNet choice (relu, layer1, layer2, layer4) of the paper carried over stage for stage.
_STAGED = {"E": "features.0", "S": "features.1", "M": "features.3", "L": "features.7"}

#: E/S/M/L extraction points chosen by lossnet for transformer and modern backbones (not in the paper).
EXTRA_LAYERS: dict[str, dict[str, str]] = {
    "vit_b_16": _vit_points(12),
    "vit_b_32": _vit_points(12),
    "vit_l_16": _vit_points(24),
    "vit_l_32": _vit_points(24),
    "vit_h_14": _vit_points(32),
    **{a: dict(_STAGED) for a in ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b")},
    **{a: dict(_STAGED) for a in ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large")},
}


@dataclass(frozen=True)
class ArchSpec:
    """What lossnet knows about one architecture.

    Attributes:
        name: torchvision model name (``torchvision.models.get_model`` builder).
        layers: extraction points ``{"E": node, ...}``: the paper's (Table II) for its 14
            architectures, lossnet's for the transformer/modern ones of :data:`EXTRA_LAYERS`,
            empty otherwise.
        aliases: readable names -> FX node / module names.
        imagenet_top1, depth, mflops: Table I of the paper (None for non-paper models).
        weights_tag: torchvision weights enum member used for ``weights="imagenet"``.
    """

    name: str
    layers: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    imagenet_top1: float | None = None
    depth: int | None = None
    mflops: int | None = None
    weights_tag: str = WEIGHTS_TAG

    @property
    def in_paper(self) -> bool:
        return self.name in PAPER_LAYERS


def _vgg_aliases(config: list) -> dict[str, str]:
    """conv{b}_{i}, bn{b}_{i}, relu{b}_{i}, pool{b} for a torchvision VGG/AlexNet-style ``features``."""
    out: dict[str, str] = {}
    block, conv = 1, 0
    for idx, kind in enumerate(config):
        if kind == "conv":
            conv += 1
            out[f"conv{block}_{conv}"] = f"features.{idx}"
        elif kind == "bn":
            out[f"bn{block}_{conv}"] = f"features.{idx}"
        elif kind == "relu":
            out[f"relu{block}_{conv}"] = f"features.{idx}"
        elif kind == "pool":
            out[f"pool{block}"] = f"features.{idx}"
            block, conv = block + 1, 0
    return out


def _vgg_layout(cfg: str, batch_norm: bool) -> list[str]:
    # torchvision.models.vgg.cfgs, spelled out so no model has to be built for the aliases.
    cfgs = {
        "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
        "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
    }
    layout: list[str] = []
    for v in cfgs[cfg]:
        if v == "M":
            layout.append("pool")
        else:
            layout += ["conv", "bn", "relu"] if batch_norm else ["conv", "relu"]
    return layout


def _alexnet_aliases() -> dict[str, str]:
    # features: conv relu pool conv relu pool conv relu conv relu conv relu pool
    convs = [0, 3, 6, 8, 10]
    out = {}
    for i, idx in enumerate(convs, start=1):
        out[f"conv{i}"] = f"features.{idx}"
        out[f"relu{i}"] = f"features.{idx + 1}"
    out.update({"pool1": "features.2", "pool2": "features.5", "pool5": "features.12"})
    return out


def _squeezenet11_aliases() -> dict[str, str]:
    fires = [3, 4, 6, 7, 9, 10, 11, 12]
    out = {"conv1": "features.0", "relu1": "features.1"}
    out.update({f"fire{i}": f"features.{idx}" for i, idx in enumerate(fires, start=1)})
    return out


def _efficientnet_aliases() -> dict[str, str]:
    out = {"stem": "features.0", "head": "features.8"}
    out.update({f"stage{i}": f"features.{i}" for i in range(1, 8)})
    return out


def _densenet_aliases() -> dict[str, str]:
    out = {"conv0": "features.conv0", "relu0": "features.relu0", "pool0": "features.pool0"}
    out.update({f"denseblock{i}": f"features.denseblock{i}" for i in range(1, 5)})
    out.update({f"transition{i}": f"features.transition{i}" for i in range(1, 4)})
    return out


def _staged_aliases() -> dict[str, str]:
    return {"stem": "features.0", **{f"stage{i}": f"features.{2 * i - 1}" for i in range(1, 5)}}


def _vit_aliases(blocks: int) -> dict[str, str]:
    out = {"patch_embed": "conv_proj", "encoder_ln": "encoder.ln"}
    out.update({f"block{i}": f"encoder.layers.encoder_layer_{i - 1}" for i in range(1, blocks + 1)})
    return out


def _resnet_aliases() -> dict[str, str]:
    return {
        "conv1": "conv1",
        "bn1": "bn1",
        "relu": "relu",
        "maxpool": "maxpool",
        **{f"layer{i}": f"layer{i}" for i in range(1, 5)},
    }


_ALIASES = {
    "alexnet": _alexnet_aliases,
    "vgg11": lambda: _vgg_aliases(_vgg_layout("A", False)),
    "vgg11_bn": lambda: _vgg_aliases(_vgg_layout("A", True)),
    "vgg16": lambda: _vgg_aliases(_vgg_layout("D", False)),
    "vgg16_bn": lambda: _vgg_aliases(_vgg_layout("D", True)),
    "vgg19": lambda: _vgg_aliases(_vgg_layout("E", False)),
    "vgg19_bn": lambda: _vgg_aliases(_vgg_layout("E", True)),
    "squeezenet1_1": _squeezenet11_aliases,
    "densenet121": _densenet_aliases,
}


def aliases(arch: str) -> dict[str, str]:
    """Readable layer names of ``arch`` mapped to FX node / module names."""
    if arch in _ALIASES:
        return _ALIASES[arch]()
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return _resnet_aliases()
    if arch.startswith("efficientnet"):
        return _efficientnet_aliases()
    if arch.startswith(("swin", "convnext")):
        return _staged_aliases()
    if arch.startswith("vit_"):
        return _vit_aliases({"vit_b": 12, "vit_l": 24, "vit_h": 32}.get(arch[:5], 12))
    return {}


@lru_cache(maxsize=None)
def _torchvision_classification_models() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


@lru_cache(maxsize=None)
def get_spec(arch: str) -> ArchSpec:
    """The :class:`ArchSpec` of a paper architecture or any torchvision classification model.

    Raises:
        UnknownNetworkError: ``arch`` is not a torchvision classification model.
    """
    if isinstance(arch, str) and arch.startswith("timm:"):
        from lossnet.models.timm import describe

        info = describe(arch)  # UnknownNetworkError / MissingExtraError name the problem
        return ArchSpec(name=arch, layers=dict(info.layers), aliases=dict(info.aliases), weights_tag="timm")
    if arch not in PAPER_LAYERS and arch not in _torchvision_classification_models():
        close = difflib.get_close_matches(arch, _torchvision_classification_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see 'lossnet nets list --all'"
        raise UnknownNetworkError(f"unknown network {arch!r}: not a torchvision classification model{hint}")
    table1 = architectures().get(arch, {})
    return ArchSpec(
        name=arch,
        layers=dict(PAPER_LAYERS.get(arch) or EXTRA_LAYERS.get(arch, {})),
        aliases=aliases(arch),
        imagenet_top1=table1.get("imagenet_top1"),
        depth=table1.get("depth"),
        mflops=table1.get("mflops"),
    )


def paper_layers(arch: str) -> dict[str, str]:
    """``{"E": node, "S": node, "M": node, "L": node}`` for one of the 14 paper architectures."""
    if arch not in PAPER_LAYERS:
        raise UnknownNetworkError(f"{arch!r} is not one of the paper's 14 architectures ({', '.join(PAPER_ARCHS)})")
    return dict(PAPER_LAYERS[arch])


def named_layer(arch: str, name: str) -> str | None:
    """The node a *name* of the registry stands for: ``E``/``S``/``M``/``L`` (case-insensitive),
    ``"input"`` or a readable alias; None for anything else (an FX node name, or a typo: telling
    them apart needs the built graph, :func:`lossnet.models.layers.resolve_layer`).

    Raises:
        UnknownLayerError: an extraction point asked of an architecture that has none.
    """
    spec = get_spec(arch)
    key = name.strip()
    if key.upper() in LAYER_KEYS and len(key) == 1:
        if not spec.layers:
            raise UnknownLayerError(
                f"{arch} has no E/S/M/L extraction points (only the paper's architectures and "
                f"{', '.join(EXTRA_LAYERS)} do); use an FX node name (lossnet nets show {arch} --nodes)"
            )
        return spec.layers[key.upper()]
    if key.lower() == INPUT_LAYER:
        return INPUT_LAYER
    return spec.aliases.get(key)


def layer_key(arch: str, name: str) -> str | None:
    """The paper's E/S/M/L key that ``name`` refers to for ``arch``, or None."""
    if arch not in PAPER_LAYERS:
        return None
    if name.strip().upper() in LAYER_KEYS and len(name.strip()) == 1:
        return name.strip().upper()
    node = named_layer(arch, name) or name.strip()
    for k, v in PAPER_LAYERS[arch].items():
        if v == node:
            return k
    return None


def list_models(pattern: str = "*", *, paper_only: bool = False, source: str = "torchvision") -> list[str]:
    """Architecture names matching a shell-style wildcard (timm-style), sorted.

    Args:
        pattern: e.g. ``"vgg*"``, ``"*resnet*"``.
        paper_only: only the paper's 14 architectures.
        source: ``"torchvision"`` (default), ``"timm"`` (``timm:<name>`` for every timm model; needs
            ``lossnet[timm]``) or ``"all"``.
    """
    if source not in ("torchvision", "timm", "all"):
        raise ValueError(f"source must be torchvision, timm or all, got {source!r}")
    if source != "torchvision" and not paper_only:
        from lossnet.models.timm import list_names

        timm_names = list_names(pattern)
        return timm_names if source == "timm" else sorted(list_models(pattern) + timm_names)
    names = PAPER_ARCHS if paper_only else tuple(sorted(set(PAPER_ARCHS) | set(_torchvision_classification_models())))
    rx = re.compile(fnmatch.translate(pattern))
    return sorted(n for n in names if rx.match(n))

"""timm backbones as loss networks: ``net="timm:<model name>"`` (the ``lossnet[timm]`` extra).

``timm`` is imported lazily, inside the functions, after :func:`lossnet.extras.require` has checked
it is installed (a one-line install hint otherwise); nothing here runs at ``import lossnet``.

Extraction points E/S/M/L (lossnet's rule, mirroring the paper's for ResNets; see docs/backbones.md):

- **Hierarchical models** (CNNs, ConvNeXt, Swin, ...: ``feature_info`` has growing reductions):
  E = the earliest feature: the stride-2 ``feature_info`` entry if there is one (ResNet ``act1``),
  else the stem module (ConvNeXt ``stem``); S = the first entry at stride 4 (after the first
  downsampling stages; ResNet ``layer1``); M = the first entry at stride 8 (ResNet ``layer2``);
  L = the last entry (ResNet ``layer4``). For ResNets this is exactly Table II's relu/layer1/layer2/layer4.
- **Plain ViTs** (every ``feature_info`` entry at the patch stride: DINO, DINOv2, CLIP, SigLIP, ...):
  E = ``patch_embed`` (the stem), S/M/L = the outputs of the blocks ending the first quarter, the
  first half and the whole of ``blocks`` -- lossnet's rule for torchvision's ViTs.

ViTs are built with ``dynamic_img_size=True, dynamic_img_pad=True``: any input size works (position
embeddings resampled as timm does; sides that are not multiples of the patch size are zero-padded
at the right/bottom by timm's patch embedding, so the token grid is ``ceil(H/p) x ceil(W/p)``).

Weights: random init, a local state-dict file, or timm's pretrained mechanism (the Hugging Face
Hub: the local HF cache when offline, a download when online). Normalisation comes from the
model's pretrained config (``timm.data.resolve_data_config``), not hard-coded ImageNet values.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from lossnet.errors import UnknownNetworkError, WeightsError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PREFIX", "TimmInfo", "is_timm", "model_name", "describe", "create", "list_names"]

#: Net names with this prefix are timm models: ``"timm:vit_small_patch14_dinov2"``.
PREFIX = "timm:"

#: Stem module names tried (in order) when a hierarchical model has no stride-2 feature.
_STEMS = ("stem", "conv_stem", "patch_embed", "stem.conv", "conv1")

#: Keyword arguments that make a timm ViT take any input size (see the module docstring).
_VIT_KWARGS = {"dynamic_img_size": True, "dynamic_img_pad": True}


def is_timm(arch: object) -> bool:
    """True for a ``"timm:<name>"`` net name."""
    return isinstance(arch, str) and arch.startswith(PREFIX)


def model_name(arch: str) -> str:
    """``"timm:resnet50"`` -> ``"resnet50"`` (a ``.tag`` such as ``.lvd142m`` is kept)."""
    return arch[len(PREFIX) :] if is_timm(arch) else arch


def _timm(what: str):
    from lossnet.extras import require

    require("timm", what)
    import timm

    return timm


@dataclass(frozen=True)
class TimmInfo:
    """What lossnet knows about one timm model (read from a model built on the meta device).

    Attributes:
        name: timm model name (with its pretrained tag, if one was given).
        kind: ``"vit"`` (plain transformer, token outputs) or ``"hierarchical"``.
        layers: ``{"E": module path, "S": ..., "M": ..., "L": ...}``.
        aliases: readable names: ``stem``/``patch_embed``, ``block<i>`` (ViTs), ``feature<i>``
            (the ``feature_info`` entries) -> module paths.
        mean, std, input_size: from ``timm.data.resolve_data_config`` (the pretrained config).
        patch: the patch size of a ViT (0 otherwise); prefix: its class/register token count.
        nhwc: 4-D outputs of the stages are channels-last (Swin-like ``output_fmt="NHWC"``).
        kwargs: extra ``timm.create_model`` arguments lossnet passes.
        modules: every module path (what a layer name may be besides E/S/M/L and aliases).
    """

    name: str
    kind: str
    layers: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    input_size: tuple = (3, 224, 224)
    patch: int = 0
    prefix: int = 0
    nhwc: bool = False
    kwargs: dict = field(default_factory=dict)
    modules: tuple = ()


def _points(model, fi: list[dict]) -> tuple[str, dict, dict]:
    reductions = [int(f["reduction"]) for f in fi]
    aliases = {f"feature{i}": f["module"] for i, f in enumerate(fi)}
    names = {n for n, _ in model.named_modules()}
    if len(set(reductions)) == 1 and hasattr(model, "blocks") and hasattr(model, "patch_embed"):
        n = len(model.blocks)
        if n < 4:
            raise UnknownNetworkError(f"timm model has {n} blocks; E/S/M/L need at least 4")
        aliases = {"patch_embed": "patch_embed", **{f"block{i + 1}": f"blocks.{i}" for i in range(n)}}
        return (
            "vit",
            {"E": "patch_embed", "S": f"blocks.{n // 4 - 1}", "M": f"blocks.{n // 2 - 1}", "L": f"blocks.{n - 1}"},
            aliases,
        )
    first = lambda r: next((f["module"] for f in fi if int(f["reduction"]) == r), None)  # noqa: E731
    early = first(2)
    if early is None:
        early = next((s for s in _STEMS if s in names), fi[0]["module"])
        if early != fi[0]["module"]:
            aliases["stem"] = early
    s = first(4) or fi[1]["module"]
    m = first(8) or fi[2]["module"]
    return "hierarchical", {"E": early, "S": s, "M": m, "L": fi[-1]["module"]}, aliases


def _kwargs_for(timm, name: str) -> dict:
    import torch

    try:
        with torch.device("meta"):
            timm.create_model(name, pretrained=False, **_VIT_KWARGS)
        return dict(_VIT_KWARGS)
    except TypeError:  # not a ViT: its constructor has no dynamic_img_size
        return {}


@lru_cache(maxsize=None)
def describe(arch: str) -> TimmInfo:
    """The :class:`TimmInfo` of ``"timm:<name>"`` (built on the meta device: no memory, no download).

    Raises:
        UnknownNetworkError: not a timm model name (with close matches).
        MissingExtraError: timm is not installed.
    """
    import torch

    name = model_name(arch)
    timm = _timm(f"net {arch!r}")
    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
        hint = (
            f"; did you mean {', '.join(PREFIX + c for c in close)}?"
            if close
            else "; see 'lossnet nets list --source timm'"
        )
        raise UnknownNetworkError(f"unknown network {arch!r}: not a timm model{hint}")
    kwargs = _kwargs_for(timm, name)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    fi = list(getattr(model, "feature_info", None) or [])
    if len(fi) < 3:
        raise UnknownNetworkError(
            f"timm model {name!r} has no feature_info with at least 3 stages; lossnet cannot "
            f"place E/S/M/L on it (pass module paths as layers with model=)"
        )
    kind, layers, aliases = _points(model, fi)
    cfg = timm.data.resolve_data_config({}, model=model)
    patch = 0
    if kind == "vit":
        ps = getattr(model.patch_embed, "patch_size", 0)
        patch = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
    return TimmInfo(
        name=name,
        kind=kind,
        layers=layers,
        aliases=aliases,
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        input_size=tuple(int(v) for v in cfg["input_size"]),
        patch=patch,
        prefix=int(getattr(model, "num_prefix_tokens", 0) or 0) if kind == "vit" else 0,
        nhwc=str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC",
        kwargs=kwargs,
        modules=tuple(n for n, _ in model.named_modules() if n),
    )


def create(arch: str, *, pretrained: bool = False) -> "nn.Module":
    """The timm model of ``arch`` in eval mode: random init, or (``pretrained=True``) timm's
    pretrained weights through the Hugging Face Hub (the local HF cache offline, a download online).

    Raises:
        WeightsError: pretrained weights requested but neither cached nor downloadable (one line).
    """
    info = describe(arch)
    timm = _timm(f"net {arch!r}")
    if not pretrained:
        return timm.create_model(info.name, pretrained=False, **info.kwargs).eval()
    try:
        return timm.create_model(info.name, pretrained=True, **info.kwargs).eval()
    except Exception as exc:  # hub errors (offline, gated, missing file) have many types
        raise WeightsError(
            f"no pretrained weights for {arch}: timm could not read them from the Hugging Face cache or download "
            f"them ({_hub_reason(exc)}); pass weights=PATH (a .safetensors/.pth state dict of the timm model) or "
            f"weights=None for random init"
        ) from exc


def _hub_reason(exc: BaseException) -> str:
    """Why timm's pretrained load failed, in one line.

    huggingface_hub's messages span lines (the URL comes after "404 Client Error."), and when nothing is
    cached it says "check your connection" whether the Hub was unreachable or ``HF_HUB_OFFLINE=1`` forbade
    asking it: say which, with the cache folder and the endpoint it used (``HF_HUB_CACHE``, ``HF_ENDPOINT``).
    """
    text = " ".join(str(exc).split())[:300]
    try:
        from huggingface_hub import constants
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # not a Hub error
        return f"{type(exc).__name__}: {text}"
    if not isinstance(exc, LocalEntryNotFoundError):
        return f"{type(exc).__name__}: {text}"
    where = f"not in the Hugging Face cache {constants.HF_HUB_CACHE}"
    if constants.HF_HUB_OFFLINE:
        return f"{where}, and HF_HUB_OFFLINE=1 forbids a download"
    cause = exc.__cause__
    why = f": {type(cause).__name__}: {' '.join(str(cause).split())[:200]}" if cause is not None else ""
    return f"{where}, and the Hugging Face Hub at {constants.ENDPOINT} could not be reached{why}"


def list_names(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """timm model names matching a shell wildcard, as ``"timm:<name>"`` (``pretrained=True``: the
    ``name.tag`` entries that have pretrained weights)."""
    timm = _timm("listing timm models")
    pat = model_name(pattern)
    names = timm.list_models(pretrained=pretrained)
    return [PREFIX + n for n in names if fnmatch.fnmatchcase(n, pat)]

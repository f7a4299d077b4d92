"""The one place where lossnet builds torchvision models and cuts them into feature extractors.

:func:`build_backbone` returns the bare torchvision classifier (random init, eval mode, lossnet's
builder arguments); :func:`build_feature_extractor` cuts it with
``torchvision.models.feature_extraction.create_feature_extractor``, which prunes the FX graph to
the nodes the requested outputs depend on. Weights are loaded afterwards by the caller (see
:mod:`lossnet.weights`), into the cut network, so trimmed weight files fit.

Nothing here downloads: torchvision's builders are always called with ``weights=None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from lossnet.models.registry import get_spec

if TYPE_CHECKING:
    from torch import fx, nn

__all__ = [
    "TRANSFORM_INPUT_ARCHS",
    "POOLINGS",
    "builder_kwargs",
    "build_backbone",
    "build_feature_extractor",
    "truncate",
]

#: ``pooling`` choices: the architecture's own, or DISTS's L2 pooling instead of every max pooling.
POOLINGS = ("max", "l2", "blur")

#: Architectures whose torchvision builder takes ``transform_input`` (re-normalisation of
#: ImageNet-normalised input to the [-1, 1] scaling of the original Google weights).
TRANSFORM_INPUT_ARCHS = ("googlenet", "inception_v3")


def builder_kwargs(arch: str, *, transform_input: bool | None = None) -> dict:
    """Keyword arguments lossnet passes to ``torchvision.models.get_model(arch, weights=None, ...)``.

    Args:
        transform_input: googlenet / inception_v3 only; ``None`` keeps torchvision's default
            (False when built without weights).

    Raises:
        ValueError: ``transform_input`` is true for an architecture that has no such option.
    """
    kwargs: dict = {}
    # googlenet/inception_v3 warn (and build an unused aux head) unless told it is not wanted.
    if arch in TRANSFORM_INPUT_ARCHS:
        kwargs.update(aux_logits=False, init_weights=False)
        if transform_input is not None:
            kwargs["transform_input"] = bool(transform_input)
    elif transform_input:
        raise ValueError(f"transform_input applies only to {', '.join(TRANSFORM_INPUT_ARCHS)}, not {arch}")
    return kwargs


def build_backbone(arch: str, *, transform_input: bool | None = None, pooling: str = "max") -> "nn.Module":
    """The full torchvision classifier ``arch`` with random weights, in eval mode.

    Vision transformers (``vit_*``) are made size-flexible (:func:`lossnet.models.adapters.make_flexible_vit`:
    any input divisible by the patch size; identical to torchvision's at the training size).

    Args:
        arch: torchvision classification model name.
        transform_input: see :func:`builder_kwargs`.
        pooling: ``"max"`` (the architecture as defined) or ``"l2"`` (every ``MaxPool2d``
            replaced by DISTS's L2 pooling, :class:`lossnet.models.adapters.L2Pool`).

    Raises:
        UnknownNetworkError: ``arch`` is not a torchvision classification model.
        ValueError: unknown ``pooling``, or ``"l2"`` for a model without max pooling.
    """
    from torchvision.models import get_model

    get_spec(arch)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    kwargs = builder_kwargs(arch, transform_input=transform_input)
    if arch.startswith("timm:"):
        from lossnet.models.timm import create

        model = create(arch, pretrained=False)
    else:
        model = get_model(arch, weights=None, **kwargs).eval()
    if arch.startswith("vit_"):
        from lossnet.models.adapters import make_flexible_vit

        model = make_flexible_vit(model)
    if pooling == "l2":
        from lossnet.models.adapters import replace_max_pooling

        if not replace_max_pooling(model):
            raise ValueError(f"pooling='l2' replaces max pooling, and {arch} has none")
    elif pooling == "blur":  # ST-LPIPS's anti-aliased AlexNet / VGG16
        from lossnet.models.adapters import make_shift_tolerant

        make_shift_tolerant(model, arch)
    return model


def build_feature_extractor(
    arch: str,
    return_nodes: Sequence[str] | Mapping[str, str],
    *,
    transform_input: bool | None = None,
    model: "nn.Module | None" = None,
    pooling: str = "max",
) -> "fx.GraphModule":
    """``arch`` truncated after ``return_nodes``: a module returning ``{name: feature map}``.

    Args:
        arch: torchvision classification model name.
        return_nodes: FX node / module names (duplicates dropped, order kept; outputs keyed by
            node name), or a ``{node: output name}`` mapping as ``create_feature_extractor`` takes.
        transform_input: see :func:`builder_kwargs` (ignored when ``model`` is given).
        model: cut this already built backbone (from :func:`build_backbone`) instead of a new one.
        pooling: see :func:`build_backbone` (ignored when ``model`` is given).

    Returns:
        An eval-mode ``torch.fx.GraphModule`` with random weights (unless ``model`` had others).
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    if model is None:
        model = build_backbone(arch, transform_input=transform_input, pooling=pooling)
    if arch.startswith("timm:"):
        # FX where the timm model traces (ResNet, ConvNeXt, EfficientNet), forward hooks otherwise (ViTs)
        return truncate(model, list(return_nodes))[0]
    if not isinstance(return_nodes, Mapping):
        return_nodes = {n: n for n in dict.fromkeys(return_nodes)}
    kwargs = {}
    if pooling in ("l2", "blur") or any(
        type(m).__name__ in ("L2Pool", "MaxBlurPool", "ConvBlur") for m in model.modules()
    ):
        from lossnet.models.adapters import BlurPool, ConvBlur, L2Pool, MaxBlurPool

        # leaves: their filters stay non-persistent buffers (plain VGG16 weight files load), and
        # the tiler (lossnet.loss.tiled) reads their window from the module
        kwargs["tracer_kwargs"] = {"leaf_modules": [L2Pool, BlurPool, MaxBlurPool, ConvBlur]}
    return create_feature_extractor(model, return_nodes=dict(return_nodes), **kwargs).eval()


def truncate(model: nn.Module, nodes: Sequence[str], *, method: str = "auto") -> tuple[nn.Module, str]:
    """Any module (a user's, a timm model) cut after ``nodes`` (:mod:`lossnet.models.extract`): ``(body, "fx" | "hooks")``; ``body(x)`` returns ``{node: output}``.

    Args:
        method: ``"auto"`` (FX if the module traces, hooks otherwise), ``"fx"`` or ``"hooks"``.
    """
    from lossnet.errors import UnknownLayerError

    nodes = list(dict.fromkeys(nodes))
    if method in ("auto", "fx"):
        from torchvision.models.feature_extraction import create_feature_extractor

        try:
            body = create_feature_extractor(model, return_nodes={n: n for n in nodes}).eval()
            # tensors FX lifted out of the code (e.g. timm DINOv3's RoPE periods) become buffers named
            # _tensor_constant<i>: not part of the model's state, so kept out of the state dict (weight
            # files of the model load, signatures digest the model's own tensors)
            for gm in [body, *body.children()]:
                for name in list(getattr(gm, "_buffers", {})):
                    if name.startswith("_tensor_constant"):
                        gm._non_persistent_buffers_set.add(name)
            return body, "fx"
        except ValueError as exc:  # a node name FX does not know: may still be a module path
            if method == "fx" or not all(n in dict(model.named_modules()) for n in nodes):
                raise UnknownLayerError(f"{exc}".splitlines()[0]) from None
        except Exception:  # not traceable (control flow on the input, untraceable calls)
            if method == "fx":
                raise
    from lossnet.models.extract import HookExtractor

    return HookExtractor(model, nodes).eval(), "hooks"

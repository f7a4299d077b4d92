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

from lossnet.registry import get_spec

if TYPE_CHECKING:
    from torch import fx, nn

__all__ = ["TRANSFORM_INPUT_ARCHS", "builder_kwargs", "build_backbone", "build_feature_extractor"]

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


def build_backbone(arch: str, *, transform_input: bool | None = None) -> "nn.Module":
    """The full torchvision classifier ``arch`` with random weights, in eval mode.

    Args:
        arch: torchvision classification model name.
        transform_input: see :func:`builder_kwargs`.

    Raises:
        UnknownNetworkError: ``arch`` is not a torchvision classification model.
    """
    from torchvision.models import get_model

    get_spec(arch)
    kwargs = builder_kwargs(arch, transform_input=transform_input)
    return get_model(arch, weights=None, **kwargs).eval()


def build_feature_extractor(
    arch: str,
    return_nodes: Sequence[str] | Mapping[str, str],
    *,
    transform_input: bool | None = None,
    model: "nn.Module | None" = None,
) -> "fx.GraphModule":
    """``arch`` truncated after ``return_nodes``: a module returning ``{name: feature map}``.

    Args:
        arch: torchvision classification model name.
        return_nodes: FX node / module names (duplicates dropped, order kept; outputs keyed by
            node name), or a ``{node: output name}`` mapping as ``create_feature_extractor`` takes.
        transform_input: see :func:`builder_kwargs` (ignored when ``model`` is given).
        model: cut this already built backbone (from :func:`build_backbone`) instead of a new one.

    Returns:
        An eval-mode ``torch.fx.GraphModule`` with random weights (unless ``model`` had others).
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    if model is None:
        model = build_backbone(arch, transform_input=transform_input)
    if not isinstance(return_nodes, Mapping):
        return_nodes = {n: n for n in dict.fromkeys(return_nodes)}
    return create_feature_extractor(model, return_nodes=dict(return_nodes)).eval()

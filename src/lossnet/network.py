"""``LossNetwork``: a frozen, truncated torchvision classifier that returns feature maps.

The model is built with ``torchvision.models.get_model`` and cut with
``torchvision.models.feature_extraction.create_feature_extractor``: the FX graph is pruned to the
nodes the requested outputs depend on, so nothing past the deepest requested node executes (and
its parameters are not even kept).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import torch
from torch import nn

from lossnet.errors import InputError
from lossnet.registry import _builder_kwargs, get_spec, resolve_layers

__all__ = ["LossNetwork", "IMAGENET_MEAN", "IMAGENET_STD"]

#: Input normalisation of torchvision's IMAGENET1K_V1 weights, for RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TRANSFORM_INPUT_ARCHS = ("googlenet", "inception_v3")


class LossNetwork(nn.Module):
    """Feature maps of a pretrained (or random) classifier at one or more extraction layers.

    Args:
        arch: torchvision classification model name (the paper's 14, or any other).
        layers: layer names: ``"E"``/``"S"``/``"M"``/``"L"`` (the paper's extraction points),
            readable aliases (``"relu2_2"``), or FX node / module names (``"features.8"``);
            a comma-separated string is split.
        weights: ``"imagenet"`` (local file per :mod:`lossnet.weights` naming rule, else
            torchvision's IMAGENET1K_V1 download), ``None``/``"none"`` (random init), or a path
            to a ``.safetensors`` / ``.pth`` state dict (may be trimmed to the needed layers).
        weights_dir: folder searched for local ImageNet weights before downloading.
        transform_input: googlenet / inception_v3 only. torchvision's pretrained builders
            set ``transform_input=True``: the model re-normalises ImageNet-normalised input to
            the [-1, 1] scaling the original Google weights were trained with. ``None`` keeps
            torchvision's semantics (True with pretrained weights, False with random init);
            ``False`` reproduces the paper's repository, which built the models without it.

    Input: ``(N, C, H, W)`` (or ``(C, H, W)``) float tensor, RGB in [0, 1] (C = 1 is repeated to 3);
    float32/float16/bfloat16. ImageNet normalisation is applied inside.

    Returns:
        ``dict`` of requested layer name -> feature map ``(N, C_l, H_l, W_l)``, in request order.

    The network is frozen (``requires_grad=False``) and always in eval mode, even after a parent
    module calls ``.train()``; gradients flow to the input.
    """

    def __init__(
        self,
        arch: str,
        layers: Sequence[str] | str = ("relu2_2",),
        weights: str | os.PathLike | None = "imagenet",
        weights_dir: str | os.PathLike | None = None,
        transform_input: bool | None = None,
    ) -> None:
        super().__init__()
        from torchvision.models import get_model
        from torchvision.models.feature_extraction import create_feature_extractor

        from lossnet import weights as W

        spec = get_spec(arch)
        if isinstance(layers, str):
            layers = [n.strip() for n in layers.split(",") if n.strip()]
        self.arch = spec.name
        self.layers: tuple[str, ...] = tuple(layers)
        self.nodes: tuple[str, ...] = tuple(resolve_layers(arch, list(self.layers)))

        if isinstance(weights, str) and weights.lower() == "none":
            weights = None
        pretrained = weights is not None
        kwargs = dict(_builder_kwargs(arch))
        if arch in _TRANSFORM_INPUT_ARCHS:
            kwargs["transform_input"] = pretrained if transform_input is None else bool(transform_input)
        elif transform_input:
            raise ValueError(f"transform_input applies only to {', '.join(_TRANSFORM_INPUT_ARCHS)}, not {arch}")
        self.transform_input = kwargs.get("transform_input", False)

        model = get_model(arch, weights=None, **kwargs).eval()
        unique = list(dict.fromkeys(self.nodes))
        self.body = create_feature_extractor(model, return_nodes={n: n for n in unique})
        del model

        if weights is None:
            self.weights_source = "random"
        elif isinstance(weights, str) and weights.lower() == "imagenet":
            state, self.weights_source = W.imagenet_state_dict(arch, weights_dir)
            W.load_into(self.body, state, self.weights_source)
        else:
            self.weights_source = str(weights)
            W.load_into(self.body, W.load_state_dict_file(weights), self.weights_source)

        self.body.eval()
        self.body.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "LossNetwork":
        # A loss network must never update BN statistics or use dropout, whatever the parent does.
        super().train(mode)
        self.body.eval()
        return self

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, layers={self.layers}, nodes={self.nodes}, weights={self.weights_source!r}"

    @property
    def _param_dtype(self) -> torch.dtype:
        for p in self.body.parameters():
            return p.dtype
        return torch.float32

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Check shape/dtype, repeat grey to RGB, cast, and apply the ImageNet normalisation."""
        if not isinstance(x, torch.Tensor):
            raise InputError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise InputError(f"expected input of shape (N, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"expected a float tensor in [0, 1], got dtype {x.dtype} (convert with x.float() / 255)")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise InputError(f"expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self._param_dtype)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.normalize(x)
        try:
            out = self.body(z)
        except RuntimeError as exc:
            msg = str(exc)
            if any(s in msg for s in ("too small", "can't be greater than", "Padding size should be less")):
                smallest = _minimum_size(self.arch, self.nodes, self.transform_input)
                raise InputError(
                    f"input {tuple(x.shape[-2:])} is too small for {self.arch} up to {', '.join(self.layers)}: "
                    f"the minimum is {smallest}x{smallest} pixels"
                ) from exc
            raise
        return {name: out[node] for name, node in zip(self.layers, self.nodes)}


@lru_cache(maxsize=None)
def _minimum_size(arch: str, nodes: tuple[str, ...], transform_input: bool) -> int:
    """Smallest square input the truncated network accepts (bisection over forward passes)."""
    from torchvision.models import get_model
    from torchvision.models.feature_extraction import create_feature_extractor

    kwargs = dict(_builder_kwargs(arch))
    if arch in _TRANSFORM_INPUT_ARCHS:
        kwargs["transform_input"] = transform_input
    body = create_feature_extractor(get_model(arch, weights=None, **kwargs).eval(), return_nodes=list(dict.fromkeys(nodes)))

    def ok(size: int) -> bool:
        try:
            with torch.no_grad():
                body(torch.zeros(1, 3, size, size))
            return True
        except RuntimeError:
            return False

    lo, hi = 1, 1024
    if not ok(hi):
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo

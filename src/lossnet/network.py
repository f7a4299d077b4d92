"""``LossNetwork``: a frozen, truncated classifier that returns feature maps -- a torchvision model
of the registry, a timm model (``"timm:<name>"``, :mod:`lossnet.models.timm`) or any ``nn.Module``
(``model=``, truncated by :func:`lossnet.models.builder.truncate`; see docs/backbones.md).

The model is built and cut by :func:`lossnet.models.builder.build_feature_extractor`
(``torchvision.models.get_model`` + ``create_feature_extractor``): the FX graph is pruned to the
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
from lossnet.models.adapters import feature_layout, to_nchw, token_grid
from lossnet.models.builder import POOLINGS, TRANSFORM_INPUT_ARCHS, build_feature_extractor
from lossnet.models.layers import resolve_layers
from lossnet.models.registry import INPUT_LAYER, get_spec
from lossnet.weights import WeightsSpec, load_weights

__all__ = ["LossNetwork", "IMAGENET_MEAN", "IMAGENET_STD", "NORMALIZATIONS", "LOSS_NET_MODES"]

#: Input normalisation of torchvision's IMAGENET1K_V1 weights, for RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``normalize`` choices: ImageNet mean/std (what the weights were trained with) or none.
NORMALIZATIONS = ("imagenet", "none")

_TIMM = "timm:"


def _norm_label(mean, std) -> str:
    """``"imagenet"`` for the ImageNet statistics, else ``"custom:m0,m1,m2/s0,s1,s2"`` (the signature's field)."""
    if all(abs(a - b) < 1e-9 for a, b in zip(tuple(mean) + tuple(std), IMAGENET_MEAN + IMAGENET_STD)):
        return "imagenet"
    # repr: the label parses back to the same floats (heads files store it, _parse_normalize reads it)
    return "custom:" + ",".join(repr(float(v)) for v in mean) + "/" + ",".join(repr(float(v)) for v in std)


def _parse_normalize(normalize) -> tuple[tuple, tuple, str]:
    """``(mean, std, label)`` of a ``normalize`` argument: ``"imagenet"``, ``"none"``/None, or ``(mean, std)``."""
    if normalize is None or normalize == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "none"
    if normalize == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD, "imagenet"
    if isinstance(normalize, str) and normalize.startswith("custom:") and normalize.count("/") == 1:
        normalize = tuple(part.split(",") for part in normalize[len("custom:") :].split("/"))
    if isinstance(normalize, str) or not hasattr(normalize, "__len__") or len(normalize) != 2:
        raise InputError(
            f"normalize must be one of {', '.join(NORMALIZATIONS)} or a (mean, std) pair, got {normalize!r}"
        )
    try:
        mean, std = (tuple(float(v) for v in part) for part in normalize)
    except (TypeError, ValueError):
        raise InputError(f"normalize=(mean, std) needs numbers, got {normalize!r}") from None
    if len(mean) != 3 or len(std) != 3 or any(v <= 0 for v in std):
        raise InputError(f"normalize=(mean, std) needs 3 means and 3 positive stds, got {normalize!r}")
    return mean, std, _norm_label(mean, std)


#: ``loss_net_mode`` choices: the frozen network in eval mode (default) or kept in train mode.
LOSS_NET_MODES = ("eval", "train")


class LossNetwork(nn.Module):
    """Feature maps of a pretrained (or random) classifier at one or more extraction layers.

    Args:
        arch: torchvision classification model name (the paper's 14, or any other), or
            ``"timm:<model name>"`` (needs ``lossnet[timm]``; E/S/M/L, weights and normalisation
            as in docs/backbones.md). None when ``model`` is given.
        layers: layer names: ``"E"``/``"S"``/``"M"``/``"L"`` (the paper's extraction points),
            readable aliases (``"relu2_2"``), or FX node / module names (``"features.8"``);
            a comma-separated string is split.
        weights: ``"imagenet"`` (local file per :mod:`lossnet.weights` naming rule, else
            torchvision's IMAGENET1K_V1 download), ``None``/``"none"`` (random init), or a path
            to a ``.safetensors`` / ``.pth`` state dict (may be trimmed to the needed layers);
            anything :meth:`lossnet.weights.WeightsSpec.parse` accepts.
        weights_dir: folder searched for local ImageNet weights before downloading.
        transform_input: googlenet / inception_v3 only. torchvision's pretrained builders
            set ``transform_input=True``: the model re-normalises ImageNet-normalised input to
            the [-1, 1] scaling the original Google weights were trained with. ``None`` keeps
            torchvision's semantics (True with pretrained weights, False with random init);
            ``False`` reproduces the paper's repository, which built the models without it.
        normalize: ``"imagenet"`` (default): ``(x - mean) / std`` with the ImageNet statistics
            every torchvision ImageNet model expects; ``"none"``: the [0, 1] image goes in as is.
        loss_net_mode: ``"eval"`` (default): the network stays in eval mode whatever its parent
            does (BatchNorm uses its running statistics, dropout is off). ``"train"``: it stays
            in train mode (BatchNorm normalises with batch statistics and updates its running
            statistics, dropout is active), as in code that never calls ``.eval()`` on it.
            The parameters are frozen either way.
        pooling: ``"max"`` (default) or ``"l2"``: every max pooling replaced by DISTS's L2 pooling.
        model: your own ``nn.Module`` (its forward takes the image batch) instead of ``arch``:
            frozen and kept in eval mode in place, truncated after the deepest of ``layers`` (FX
            node names or module paths; FX where it traces, forward hooks otherwise:
            :attr:`extraction`); token outputs ``(N, L, C)`` become maps. ``weights`` applies only
            when it is a file. ``normalize`` may also be ``None`` or a ``(mean, std)`` pair.

    Layers may include ``"input"``: the image itself in [0, 1] (after the grey-to-RGB repeat,
    before normalisation), as DISTS uses it. Transformer outputs are converted to feature maps:
    ViT tokens to ``(N, C, H/p, W/p)`` (class token dropped) and Swin's NHWC to NCHW
    (:func:`lossnet.models.adapters.to_nchw`).

    Input: ``(N, C, H, W)`` (or ``(C, H, W)``) float tensor, RGB in [0, 1] (C = 1 is repeated to 3);
    float32/float16/bfloat16. ImageNet normalisation is applied inside.

    Returns:
        ``dict`` of requested layer name -> feature map ``(N, C_l, H_l, W_l)``, in request order.

    The network is frozen (``requires_grad=False``) and always in eval mode, even after a parent
    module calls ``.train()``; gradients flow to the input.
    """

    def __init__(
        self,
        arch: str | None = None,
        layers: Sequence[str] | str | None = None,
        weights: WeightsSpec | str | os.PathLike | None = "imagenet",
        weights_dir: str | os.PathLike | None = None,
        transform_input: bool | None = None,
        *,
        model: nn.Module | None = None,
        normalize: str | tuple | None = "imagenet",
        loss_net_mode: str = "eval",
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if model is not None:
            if not isinstance(model, nn.Module):
                raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
            if arch is not None:
                raise InputError(
                    f"pass either a network name or model=, not both (got {arch!r} and a {type(model).__name__})"
                )
            if layers is None:
                raise InputError("model= needs layers=: FX node names or module paths of the module")
            arch = f"module:{type(model).__name__}"
        elif arch is None:
            raise InputError("pass a network name (e.g. 'vgg16', 'timm:resnet50') or model=")
        if layers is None:
            layers = ("relu2_2",)
        if isinstance(layers, str):
            layers = [n.strip() for n in layers.split(",") if n.strip()]
        mean, std, label = _parse_normalize(normalize)
        if loss_net_mode not in LOSS_NET_MODES:
            raise InputError(f"loss_net_mode must be one of {', '.join(LOSS_NET_MODES)}, got {loss_net_mode!r}")
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if transform_input and arch not in TRANSFORM_INPUT_ARCHS:
            raise InputError(f"transform_input applies only to {', '.join(TRANSFORM_INPUT_ARCHS)}, not {arch}")
        self.layers: tuple[str, ...] = tuple(layers)
        self.loss_net_mode = loss_net_mode
        self.pooling = pooling
        self._patch = 0  # torchvision ViT: inputs must be multiples of it
        self._token_patch = 0  # timm ViT / user module: the patch size used to lay tokens out (0: inferred)
        self._token_prefix: int | None = None
        self.extraction = "fx"
        wspec = WeightsSpec.parse(weights)
        self.weights_spec = wspec
        self.transform_input = False
        if model is not None:
            self._init_module(arch, model, wspec)
        elif arch.startswith(_TIMM):
            mean, std, label = self._init_timm(arch, wspec, normalize, mean, std, label)
        else:
            self._init_torchvision(arch, wspec, weights_dir, transform_input)
        self.normalization = label

        if self.body is not None:
            self.body.train(loss_net_mode == "train")
            self.body.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _net_nodes(self) -> list[str]:
        return [n for n in self.nodes if n != INPUT_LAYER]

    def _init_torchvision(self, arch: str, wspec: WeightsSpec, weights_dir, transform_input) -> None:
        spec = get_spec(arch)
        self.arch = spec.name
        self.nodes: tuple[str, ...] = tuple(resolve_layers(arch, list(self.layers)))
        self._layouts = tuple(feature_layout(self.arch, n) for n in self.nodes)
        net_nodes = self._net_nodes()
        if arch in TRANSFORM_INPUT_ARCHS:
            # torchvision's pretrained builders default to transform_input=True, random init to False.
            transform_input = wspec.pretrained if transform_input is None else bool(transform_input)
        self.transform_input = bool(transform_input) if arch in TRANSFORM_INPUT_ARCHS else False
        if net_nodes:
            try:
                self.body = build_feature_extractor(
                    arch, net_nodes, transform_input=transform_input, pooling=self.pooling
                )
            except ValueError as exc:  # pooling="l2" on a network without max pooling
                raise InputError(str(exc)) from None
            if "tokens" in self._layouts:
                self._patch = int(arch.rsplit("_", 1)[1])  # vit_b_16 -> 16
            self.weights_source = load_weights(self.body, arch, wspec, weights_dir)
        else:  # only the input image: nothing to build or load
            self.body = None
            self.weights_source = "none needed"

    def _init_timm(self, arch: str, wspec: WeightsSpec, normalize, mean, std, label):
        from lossnet.models.builder import truncate
        from lossnet.models.timm import create, describe

        spec = get_spec(arch)  # UnknownNetworkError / MissingExtraError
        info = describe(arch)
        self.arch = spec.name
        self.nodes = tuple(resolve_layers(arch, list(self.layers)))
        if info.kind == "vit":
            # patch_embed (dynamic size) gives NHWC; blocks give tokens with prefix tokens first
            self._layouts = tuple("nhwc" if n.startswith("patch_embed") else "auto" for n in self.nodes)
            self._token_patch, self._token_prefix = info.patch, info.prefix
        else:
            self._layouts = tuple("nhwc" if info.nhwc else "auto" for n in self.nodes)
        if normalize == "imagenet":
            # the statistics the weights were trained with, from timm's pretrained config
            mean, std, label = info.mean, info.std, _norm_label(info.mean, info.std)
        if self._net_nodes():
            model = create(arch, pretrained=wspec.kind == "imagenet")
            if self.pooling == "l2":
                from lossnet.models.adapters import replace_max_pooling

                if not replace_max_pooling(model):
                    raise InputError(f"pooling='l2' replaces max pooling, and {arch} has none")
            if info.kind == "vit":
                _prune_vit(model, self._net_nodes())
            self.body, self.extraction = truncate(model, self._net_nodes())
            if wspec.kind == "file":
                from lossnet.weights import load_into, load_state_dict_file

                load_into(self.body, load_state_dict_file(wspec.path), wspec.path)
                self.weights_source = wspec.path
            else:
                cfg = getattr(model, "pretrained_cfg", None) or {}
                hub = cfg.get("hf_hub_id") or f"{info.name}"
                self.weights_source = "random" if wspec.kind == "none" else f"timm pretrained: {hub}"
        else:
            self.body, self.weights_source = None, "none needed"
        return mean, std, label

    def _init_module(self, arch: str, model: nn.Module, wspec: WeightsSpec) -> None:
        from lossnet.models.builder import truncate

        self.arch = arch
        self.nodes = tuple(INPUT_LAYER if n.strip().lower() == INPUT_LAYER else n.strip() for n in self.layers)
        self._layouts = tuple("auto" for _ in self.nodes)
        pe = getattr(model, "patch_embed", None)
        ps = getattr(pe, "patch_size", None) or getattr(model, "patch_size", None)
        if ps:
            self._token_patch = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        if self.pooling == "l2":
            import copy

            from lossnet.models.adapters import replace_max_pooling

            model = copy.deepcopy(model)  # the user's module is not changed
            if not replace_max_pooling(model):
                raise InputError(f"pooling='l2' replaces max pooling, and the {type(model).__name__} has none")
        if self._net_nodes():
            self.body, self.extraction = truncate(model, self._net_nodes())
            if wspec.kind == "file":
                from lossnet.weights import load_into, load_state_dict_file

                load_into(self.body, load_state_dict_file(wspec.path), wspec.path)
                self.weights_source = wspec.path
            else:  # the module's own parameters, as given
                self.weights_source = "module"
        else:
            self.body, self.weights_source = None, "none needed"

    def train(self, mode: bool = True) -> "LossNetwork":
        # A loss network never follows its parent's mode: eval (no BN statistics updates, no
        # dropout) unless built with loss_net_mode="train".
        super().train(mode)
        if self.body is not None:
            self.body.train(self.loss_net_mode == "train")
        return self

    def extra_repr(self) -> str:
        extra = "".join(
            f", {k}={v!r}"
            for k, v, d in (
                ("normalize", self.normalization, "imagenet"),
                ("loss_net_mode", self.loss_net_mode, "eval"),
                ("pooling", self.pooling, "max"),
            )
            if v != d
        )
        return f"arch={self.arch!r}, layers={self.layers}, nodes={self.nodes}, weights={self.weights_source!r}{extra}"

    @property
    def _param_dtype(self) -> torch.dtype:
        if self.body is not None:
            for p in self.body.parameters():
                return p.dtype
        return self.mean.dtype

    @staticmethod
    def prepare(x: torch.Tensor, *, dtype_checked: bool = False) -> torch.Tensor:
        """Validate an image batch and bring it to ``(N, 3, H, W)``: the one input check.

        ``(C, H, W)`` gets a batch dimension and grey (C = 1) is repeated to RGB (a view).
        ``dtype_checked=True`` skips the tensor/float checks a caller has already made (as
        :class:`~lossnet.loss.PerceptualLoss` does with its range check).

        Raises:
            InputError: not a float tensor, not 3-D/4-D, or not 1 or 3 channels.
        """
        if not dtype_checked and not isinstance(x, torch.Tensor):
            raise InputError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise InputError(f"expected input of shape (N, C, H, W), got {tuple(x.shape)}")
        if not dtype_checked and not x.is_floating_point():
            raise InputError(f"expected a float tensor in [0, 1], got dtype {x.dtype} (convert with x.float() / 255)")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise InputError(f"expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        return x

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        if not _autocast(x):
            x = x.to(self._param_dtype)
        if self.normalization == "none":
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Check shape/dtype, repeat grey to RGB, cast, and apply the input normalisation."""
        return self._standardize(self.prepare(x))

    def forward(
        self, x: torch.Tensor, *, prepared: bool = False, memory_format: torch.memory_format | None = None
    ) -> dict[str, torch.Tensor]:
        """Feature maps of ``x``; ``prepared=True``: ``x`` already went through :meth:`prepare`
        (as in :class:`~lossnet.loss.PerceptualLoss`), so it is not checked a second time.
        ``memory_format``: the layout the body runs in (e.g. ``torch.channels_last``)."""
        if not prepared:
            x = self.prepare(x)
        z = self._standardize(x)
        if memory_format is not None:
            # after the standardisation: its (1, 3, 1, 1) broadcast runs ~2x slower over an
            # NHWC tensor (innermost dimension of 3) than over NCHW; the values are the same
            z = z.contiguous(memory_format=memory_format)
        out: dict[str, torch.Tensor] = {}
        if self.body is not None:
            if self._patch and (x.shape[-2] % self._patch or x.shape[-1] % self._patch):
                raise InputError(
                    f"{self.arch} needs input sides that are multiples of its patch size {self._patch}, "
                    f"got {tuple(x.shape[-2:])}"
                )
            try:
                out = self.body(z)
            except AssertionError as exc:
                if not self.arch.startswith("timm:"):
                    raise
                # timm's size checks (e.g. Swin's window layout): one line naming the input
                first = (str(exc).strip().splitlines() or [""])[0]
                raise InputError(
                    f"{self.arch} rejects input {tuple(x.shape[-2:])}: {first} (use the model's pretrained "
                    f"input size, lossnet nets show {self.arch})"
                ) from exc
            except RuntimeError as exc:
                msg = str(exc)
                if not self.arch.startswith("module:") and any(
                    s in msg for s in ("too small", "can't be greater than", "Padding size should be less")
                ):
                    smallest = _minimum_size(
                        self.arch, tuple(n for n in self.nodes if n != INPUT_LAYER), self.transform_input, self.pooling
                    )
                    raise InputError(
                        f"input {tuple(x.shape[-2:])} is too small for {self.arch} up to {', '.join(self.layers)}: "
                        f"the minimum is {smallest}x{smallest} pixels"
                    ) from exc
                raise
        result = {}
        for name, node, layout in zip(self.layers, self.nodes, self._layouts):
            if node == INPUT_LAYER:
                f = x if _autocast(x) else x.to(self._param_dtype)
            else:
                f = out[node]
                if isinstance(f, (tuple, list)):
                    raise InputError(
                        f"layer {name!r} of {self.arch} returns a {type(f).__name__}, not a tensor; pick "
                        f"a module whose output is the feature map"
                    )
                if layout == "tokens":
                    f = to_nchw(f, layout, (x.shape[-2] // self._patch, x.shape[-1] // self._patch))
                elif layout == "auto" and f.ndim == 3:
                    grid = token_grid(f.shape[1], x.shape[-2], x.shape[-1], self._token_patch)
                    if grid is None:
                        raise InputError(
                            f"layer {name!r} of {self.arch} gives {f.shape[1]} tokens, which do not fill a "
                            f"patch grid for input {tuple(x.shape[-2:])}"
                        )
                    f = to_nchw(f, "tokens", grid, f.shape[1] - grid[0] * grid[1])
                elif layout != "nchw":
                    f = to_nchw(f, layout)
                if f.ndim != 4:
                    raise InputError(
                        f"layer {name!r} ({node}) of {self.arch} gives a {tuple(f.shape)} tensor, not a "
                        f"(N, C, H, W) feature map; pick an earlier node (lossnet nets show {self.arch} --nodes)"
                    )
            result[name] = f
        return result


def _prune_vit(model: nn.Module, nodes: list[str]) -> None:
    """Drop the blocks after the deepest requested one, the final norm and the head of a timm ViT
    (``prune_intermediate_layers``): the hooks stop the forward there anyway, and so the truncated
    network holds only what it uses (trimmed weight files load; the signature digests those tensors).
    Nothing is pruned when a layer lies outside ``patch_embed``/``blocks``."""
    import re

    blocks = []
    for n in nodes:
        m = re.match(r"blocks\.(\d+)(\.|$)", n)
        if m:
            blocks.append(int(m.group(1)))
        elif not (n == "patch_embed" or n.startswith("patch_embed.")):
            return
    prune = getattr(model, "prune_intermediate_layers", None)
    if prune is not None:
        prune([max(blocks, default=0)], prune_norm=True, prune_head=True)


def _autocast(x: torch.Tensor) -> bool:
    return not x.is_meta and torch.is_autocast_enabled(x.device.type)


@lru_cache(maxsize=None)
def _minimum_size(arch: str, nodes: tuple[str, ...], transform_input: bool, pooling: str = "max") -> int:
    """Smallest square input the truncated network accepts (bisection over forward passes)."""
    body = build_feature_extractor(arch, nodes, transform_input=transform_input, pooling=pooling)

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

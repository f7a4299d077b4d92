"""The functional form :func:`perceptual_distance`, on a small cache of built metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from lossnet.loss.modules import PerceptualMetric, _check_pair, _layer_weight_values, _Perceptual
from lossnet.weights import WeightsSpec

__all__ = ["perceptual_distance"]

_CACHE: dict[tuple, _Perceptual] = {}
_CACHE_SIZE = 4


def _file_identity(path: str | os.PathLike | None) -> tuple | None:
    """``(resolved path, size, mtime_ns)`` of a file, so a cache keyed on it misses when the file
    changes; a missing file keys by its path alone (building the metric then reports it)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        return (str(p),)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def _cached_metric(key: tuple, **kwargs) -> PerceptualMetric:
    m = _CACHE.pop(key, None)
    if m is None:
        m = PerceptualMetric(**kwargs)
        while len(_CACHE) >= _CACHE_SIZE:  # least recently used goes first
            _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = m
    return m


def perceptual_distance(
    a: torch.Tensor,
    b: torch.Tensor,
    net: str | None = None,
    layers: Sequence[str] | str | None = None,
    distance: str | None = None,
    preset: str | None = None,
    weights: WeightsSpec | str | os.PathLike | None = "imagenet",
    weights_dir: str | os.PathLike | None = None,
    input_range: Sequence[float] = (0, 1),
    layer_weights: Sequence[float] | None = None,
    *,
    range_check: str = "error",
    mask: torch.Tensor | None = None,
    per_layer: bool = False,
    spatial: bool = False,
    heads: str | os.PathLike | None = None,
    model: "torch.nn.Module | None" = None,
) -> torch.Tensor:
    """Perceptual distance between image batches ``a`` and ``b``: ``(N,)``.

    The network is built once per argument combination and cached (the last few are kept).
    Gradients flow to ``a`` and ``b`` when autograd is enabled.

    Args:
        a, b: ``(N, C, H, W)`` images in ``input_range``.
        net, layers, distance, preset, weights, weights_dir, input_range, layer_weights,
            range_check: as :class:`PerceptualMetric`.
        mask: spatial weights ``(N, 1, H, W)`` (masked mean over space).
        per_layer: return the ``(N, L)`` per-layer terms.
        spatial: return the ``(N, 1, H, W)`` map (``(N, L, H, W)`` with ``per_layer``) instead.
        heads: a heads file (:mod:`lossnet.heads`), as :class:`PerceptualMetric`; a file rewritten
            in place is read again (its size and modification time are part of the cache key).
        model: your own ``nn.Module`` instead of ``net`` (cached per module object), as :class:`PerceptualMetric`.

    Returns:
        ``(N,)`` distances (or as above).
    """
    _check_pair(a, b)  # before a.device is read and before a network is built
    layers_key = tuple(layers.split(",")) if isinstance(layers, str) else (None if layers is None else tuple(layers))
    weights = WeightsSpec.parse(weights, check=False)  # the file is checked when the network is built
    layer_weights = _layer_weight_values(
        layer_weights
    )  # floats: hashable for the cache key (checked in full when built)
    key = (
        net,
        layers_key,
        distance,
        preset,
        weights.label,
        str(weights_dir),
        tuple(input_range),
        None if layer_weights is None else tuple(layer_weights),
        range_check,
        _file_identity(heads),
        model,
    )  # the module object itself (identity hash): kept alive while cached, so its id is not reused
    m = _cached_metric(
        key,
        net=net,
        layers=layers_key,
        distance=distance,
        preset=preset,
        weights=weights,
        weights_dir=weights_dir,
        input_range=input_range,
        layer_weights=layer_weights,
        range_check=range_check,
        heads=heads,
        model=model,
    )
    m = m.to(a.device)
    fa, fb = m._features(a, "a"), m._features(b, "b")
    if spatial:
        return _Perceptual.compare_map(m, fa, fb, tuple(a.shape[-2:]), per_layer=per_layer)
    return _Perceptual.compare(m, fa, fb, mask=mask, per_layer=per_layer)

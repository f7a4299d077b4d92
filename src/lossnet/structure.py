"""Structural attributes measured on the models themselves (Table I's yes/no columns and more).

Definitions (on the FX graph of the eval-mode model, random init):

- ``skip_connections``: some ``add``/``cat`` merges a tensor with one computed from it (one input
  is a graph ancestor of another): ResNet/EfficientNet residual adds, DenseNet concatenations.
- ``branching``: some tensor feeds two or more convolutions directly (Inception/Fire-module
  parallel paths; ResNet's projection shortcuts count too).
- ``conv1x1`` / ``batch_norm``: the model contains a 1x1 ``Conv2d`` / a ``BatchNorm2d``.
- ``depth`` up to a layer: the longest path counted in convolution/linear layers (VGG16 = 16).
- ``mflops`` up to a layer: ``torch.utils.flop_counter`` on a ``size``x``size`` input, /1e6.

Results are cached in memory and in ``$LOSSNET_CACHE`` (default ``~/.cache/lossnet``).
"""

from __future__ import annotations

import json
import operator
import os
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["arch_attributes", "layer_stats"]


def _cache_file() -> Path:
    from lossnet._version import __version__

    root = Path(os.environ.get("LOSSNET_CACHE", Path.home() / ".cache" / "lossnet"))
    return root / f"structure-{__version__}-torch{torch.__version__.split('+')[0]}.json"


def _cached(key: str, compute):
    path = _cache_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    if key not in data:
        data[key] = compute()
        try:
            from lossnet.atomic import atomic_write_json

            atomic_write_json(path, data)
        except OSError:
            pass  # a read-only home must not stop the analysis
    return data[key]


def _traced(arch: str):
    from lossnet.models.builder import build_backbone, build_feature_extractor
    from lossnet.models.layers import list_nodes

    model = build_backbone(arch)
    return model, build_feature_extractor(arch, [list_nodes(arch)[-1]], model=model)


def _attributes(arch: str) -> dict:
    model, gm = _traced(arch)
    modules = dict(gm.named_modules())

    def is_conv(node) -> bool:
        return node.op == "call_module" and isinstance(modules.get(node.target), torch.nn.Conv2d)

    ancestors: dict = {}
    skip = branching = False
    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes]
        ancestors[node] = set().union(*(ancestors[a] | {a} for a in inputs)) if inputs else set()
        if node.op == "call_function" and node.target in (operator.add, torch.add, torch.cat, operator.iadd):
            flat = [a for a in node.all_input_nodes]
            skip = skip or any(a in ancestors[b] for a in flat for b in flat if a is not b)
        if sum(is_conv(u) for u in node.users) >= 2:
            branching = True
    return {
        "skip_connections": skip,
        "branching": branching,
        "conv1x1": any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules()),
        "batch_norm": any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()),
        "params": sum(p.numel() for p in model.parameters()),
    }


@lru_cache(maxsize=None)
def arch_attributes(arch: str) -> dict:
    """``{"skip_connections", "branching", "conv1x1", "batch_norm", "params"}`` of ``arch``."""
    return _cached(f"attributes/{arch}", lambda: _attributes(arch))


def _layer_stats(arch: str, layer: str, size: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from lossnet.network import LossNetwork

    net = LossNetwork(arch, layers=(layer,), weights=None)
    modules = dict(net.body.named_modules())
    depth: dict = {}
    for node in net.body.graph.nodes:
        own = node.op == "call_module" and isinstance(modules.get(node.target), (torch.nn.Conv2d, torch.nn.Linear))
        depth[node] = max((depth[a] for a in node.all_input_nodes), default=0) + int(own)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = net(torch.rand(1, 3, size, size))[layer]
    _, c, h, w = out.shape
    return {
        "params": sum(p.numel() for p in net.body.parameters()),
        "depth": max(depth.values()),
        "mflops": counter.get_total_flops() / 1e6,
        "channels": c,
        "height": h,
        "width": w,
        "features": c * h * w,
    }


@lru_cache(maxsize=None)
def layer_stats(arch: str, layer: str, size: int = 64) -> dict:
    """Parameters, depth, MFLOPs up to ``layer`` and the output shape there, at ``size`` px input."""
    return _cached(f"layer/{arch}/{layer}/{size}", lambda: _layer_stats(arch, layer, size))

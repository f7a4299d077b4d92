"""The heads file: calibrated per-channel weights of a spatial (Eq. 1 / LPIPS) distance.

A heads file is a ``.safetensors`` file holding one non-negative float32 tensor ``head.<l>`` of
shape ``(C_l,)`` per extraction layer, plus JSON metadata under the safetensors metadata key
``lossnet_heads``::

    {"format": "lossnet-heads/1", "net": "alexnet", "layers": ["features.1", ...],
     "channels": [64, ...], "normalize": "imagenet", "distance": "spatial",
     "data": "...", "epochs": 10, "val_2afc": 0.71, "lossnet_version": "0.1.0", ...}

Reading it never executes code (safetensors holds raw tensors; the metadata is JSON).
:class:`lossnet.loss.PerceptualMetric` (``heads=FILE``), ``lossnet similarity --heads FILE`` and
``lossnet bench similarity --heads FILE`` use it; :func:`export_lpips_heads` writes the LPIPS
v0.1 heads of the ``lpips`` package in this format (they load back bit-identically).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lossnet.errors import InputError, WeightsError

__all__ = ["HEADS_FORMAT", "Heads", "save_heads", "load_heads", "export_lpips_heads", "heads_digest"]

HEADS_FORMAT = "lossnet-heads/1"
_META_KEY = "lossnet_heads"


@dataclass
class Heads:
    """Channel weights of one layer set, and where they came from.

    Attributes:
        net: torchvision architecture.
        layers: extraction layers (as given to :class:`~lossnet.network.LossNetwork`).
        weights: one non-negative ``(C_l,)`` float32 tensor per layer.
        normalize: the loss network's input normalisation (``"imagenet"`` or ``"none"``).
        meta: everything else (data, epochs, val_2afc, lossnet_version, ...).
    """

    net: str
    layers: list[str]
    weights: list[torch.Tensor]
    normalize: str = "imagenet"
    meta: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The full JSON metadata as written to the file."""
        from lossnet._version import __version__

        out = {
            "format": HEADS_FORMAT,
            "net": self.net,
            "layers": list(self.layers),
            "channels": [int(w.numel()) for w in self.weights],
            "normalize": self.normalize,
            "distance": "spatial",
            "lossnet_version": __version__,
        }
        out.update({k: v for k, v in self.meta.items() if k not in out or k == "lossnet_version"})
        return out


def _check(heads: Heads, where: str) -> None:
    if not heads.layers or len(heads.layers) != len(heads.weights):
        raise WeightsError(f"{where}: {len(heads.weights)} head tensors for {len(heads.layers)} layers")
    for i, w in enumerate(heads.weights):
        if w.ndim != 1 or w.numel() == 0:
            raise WeightsError(
                f"{where}: head of layer {heads.layers[i]!r} must be a 1-D tensor, got shape {tuple(w.shape)}"
            )
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise WeightsError(f"{where}: head of layer {heads.layers[i]!r} must be finite and non-negative")
    if heads.normalize not in ("imagenet", "none"):
        raise WeightsError(f"{where}: unknown normalize {heads.normalize!r} (imagenet or none)")


def save_heads(path: str | os.PathLike, heads: Heads) -> Path:
    """Write ``heads`` to ``path`` (``.safetensors``), atomically. Returns the path."""
    from lossnet.weights import save_safetensors

    path = Path(path)
    _check(heads, str(path))
    tensors = {
        f"head.{i}": w.detach().to(torch.float32).reshape(-1).contiguous().cpu() for i, w in enumerate(heads.weights)
    }
    save_safetensors(path, tensors, metadata={_META_KEY: json.dumps(heads.metadata(), sort_keys=True)})
    return path


def load_heads(path: str | os.PathLike) -> Heads:
    """Read a heads file (no code is executed).

    Raises:
        WeightsError: missing, unreadable or not a lossnet heads file; heads not 1-D/non-negative.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"heads file not found: {p}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise WeightsError(f"cannot read heads file {p}: not a safetensors file ({type(exc).__name__})") from None
    if raw is None:
        raise WeightsError(f"{p} is not a lossnet heads file (no '{_META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise WeightsError(f"{p}: its '{_META_KEY}' metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != HEADS_FORMAT:
        raise WeightsError(
            f"{p}: unsupported heads format {meta.get('format') if isinstance(meta, dict) else meta!r} "
            f"(this lossnet reads {HEADS_FORMAT})"
        )
    layers = meta.get("layers")
    if (
        not isinstance(meta.get("net"), str)
        or not isinstance(layers, list)
        or not all(isinstance(x, str) for x in layers)
    ):
        raise WeightsError(f"{p}: metadata lacks 'net' or 'layers'")
    keys = [f"head.{i}" for i in range(len(layers))]
    if sorted(tensors) != sorted(keys):
        raise WeightsError(f"{p}: expected tensors {', '.join(keys)}, found {', '.join(sorted(tensors)) or 'none'}")
    distance = meta.get("distance", "spatial")
    if distance != "spatial":
        raise WeightsError(
            f"{p}: its heads calibrate the {distance!r} distance; lossnet heads files hold weights of the "
            "'spatial' (Eq. 1 / LPIPS) distance only"
        )
    for k in keys:
        if not tensors[k].is_floating_point():
            raise WeightsError(
                f"{p}: tensor {k} has dtype {str(tensors[k].dtype).removeprefix('torch.')}; heads are "
                "floating-point channel weights"
            )
    rest = {k: v for k, v in meta.items() if k not in ("format", "net", "layers", "normalize", "channels", "distance")}
    heads = Heads(meta["net"], list(layers), [tensors[k] for k in keys], str(meta.get("normalize", "imagenet")), rest)
    _check(heads, str(p))
    if meta.get("channels") is not None and [int(c) for c in meta["channels"]] != [w.numel() for w in heads.weights]:
        raise WeightsError(f"{p}: metadata channels {meta['channels']} do not match the tensors")
    return heads


def heads_digest(path: str | os.PathLike) -> str:
    """sha256 of a heads file's bytes (run keys and signatures change when the content does)."""
    from lossnet.weights import sha256_file

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"heads file not found: {p}")
    return sha256_file(p)


def export_lpips_heads(net: str, path: str | os.PathLike) -> Path:
    """Write the ``lpips`` package's v0.1 heads of ``net`` (``alex``, ``vgg``, ``squeeze`` or a
    preset name ``lpips-alex`` ...) as a heads file."""
    from lossnet.lpips_presets import PRESETS, get_preset, lpips_heads, lpips_version

    name = net if net in PRESETS else f"lpips-{net}"
    if name not in PRESETS:
        raise InputError(f"unknown LPIPS net {net!r}; choose one of alex, vgg, squeeze")
    preset = get_preset(name)
    heads = Heads(
        preset.arch,
        list(preset.layers),
        lpips_heads(preset),
        "imagenet",
        {
            "data": f"BAPPS 2afc/train (lpips {lpips_version()} v0.1 weights: {preset.lpips_net}.pth)",
            "source": f"lpips-v0.1:{preset.lpips_net}",
            "epochs": 10,
        },
    )
    return save_heads(path, heads)

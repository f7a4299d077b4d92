"""LPIPS v0.1 presets: the layer sets and calibrated linear heads of the ``lpips`` package.

LPIPS (Zhang et al., 2018) is the ``spatial`` distance (:func:`lossnet.distances.spatial`) over a
fixed layer set with non-negative per-channel weights :math:`w_{l,c}` learned on BAPPS 2AFC:

.. math::
    d(x, x_0) = \\sum_l \\frac{1}{H_l W_l} \\sum_{h,w}
        \\lVert w_l \\odot (\\hat y^l_{hw} - \\hat y^l_{0,hw}) \\rVert_2^2

The heads ship inside lossnet (``lossnet/data/presets/lpips-v0.1-<net>.safetensors``, converted
unchanged from the ``lpips`` 0.1.4 wheel's ``lpips/weights/v0.1/<net>.pth`` by
``scripts/convert_presets.py``; BSD-2-Clause, notice in ``data/presets/LICENSES.md``), so the
presets need neither ``lpips`` nor a download. lpips scales [-1, 1] input with
``ScalingLayer`` (shift ``[-.030, -.088, -.188]``, scale ``[.458, .448, .450]``), which is exactly
the ImageNet mean/std normalisation of [0, 1] input that :class:`lossnet.network.LossNetwork`
applies: ``(2x - 1 - shift) / scale = (x - (1 + shift)/2) / (scale/2)`` and
``(1 + shift)/2 = (.485, .456, .406)``, ``scale/2 = (.229, .224, .225)``.

References:
    Zhang, Isola, Efros, Shechtman, Wang. "The Unreasonable Effectiveness of Deep Features as a
    Perceptual Metric", CVPR 2018. https://github.com/richzhang/PerceptualSimilarity
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lossnet.errors import InputError, WeightsError

if TYPE_CHECKING:  # torch is imported where the heads are read: PRESETS stays cheap to import (CLI --help)
    import torch

__all__ = ["LpipsPreset", "PRESETS", "get_preset", "lpips_version", "lpips_heads", "lpips_head_path"]


@dataclass(frozen=True)
class LpipsPreset:
    """One LPIPS v0.1 configuration.

    Attributes:
        name: preset name (``"lpips-alex"`` ...).
        arch: torchvision architecture of the backbone.
        lpips_net: the ``net=`` name of ``lpips.LPIPS``.
        layers: the backbone nodes after which lpips taps features (its ``sliceK`` ends).
        channels: channels at each layer (lpips's ``chns``).
    """

    name: str
    arch: str
    lpips_net: str
    layers: tuple[str, ...]
    channels: tuple[int, ...]


#: LPIPS v0.1 presets. Layers are the last module of each of lpips's ``slice1..sliceK``.
PRESETS: dict[str, LpipsPreset] = {
    "lpips-alex": LpipsPreset(
        "lpips-alex",
        "alexnet",
        "alex",
        ("features.1", "features.4", "features.7", "features.9", "features.11"),
        (64, 192, 384, 256, 256),
    ),
    "lpips-vgg": LpipsPreset(
        "lpips-vgg",
        "vgg16",
        "vgg",
        ("features.3", "features.8", "features.15", "features.22", "features.29"),  # relu1_2 .. relu5_3
        (64, 128, 256, 512, 512),
    ),
    "lpips-squeeze": LpipsPreset(
        "lpips-squeeze",
        "squeezenet1_1",
        "squeeze",
        ("features.1", "features.4", "features.7", "features.9", "features.10", "features.11", "features.12"),
        (64, 128, 256, 384, 384, 512, 512),
    ),
}


def get_preset(name: str) -> LpipsPreset:
    """The :class:`LpipsPreset` called ``name`` (raises :class:`InputError` naming the choices)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


#: Folder of the preset weights shipped inside lossnet (``scripts/convert_presets.py``).
PRESETS_DIR = Path(__file__).resolve().parent / "data" / "presets"


def lpips_head_path(lpips_net: str, version: str = "0.1") -> Path:
    """The shipped heads file ``lossnet/data/presets/lpips-v<version>-<lpips_net>.safetensors``
    (the ``lpips`` wheel's ``lpips/weights/v<version>/<lpips_net>.pth``, converted unchanged)."""
    path = PRESETS_DIR / f"lpips-v{version}-{lpips_net}.safetensors"
    if not path.is_file():
        raise WeightsError(f"LPIPS linear-head file not found: {path} (a broken lossnet install? reinstall lossnet)")
    return path


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # corrupt / truncated file
        raise WeightsError(f"cannot read {path}: {exc}") from exc


def lpips_version() -> str:
    """Version of the ``lpips`` package the shipped heads were converted from (``0.1.4``): the
    heads' provenance, recorded in signatures whether or not ``lpips`` is installed."""
    return _metadata(lpips_head_path("alex")).get("source_version", "unknown")


@lru_cache(maxsize=None)
def _load_heads(path: str) -> tuple[torch.Tensor, ...]:
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except Exception as exc:  # corrupt / truncated file
        raise WeightsError(f"cannot read LPIPS linear heads {path}: {exc}") from exc
    heads = []
    i = 0
    while f"lin{i}.model.1.weight" in state:
        heads.append(state[f"lin{i}.model.1.weight"].detach().float().reshape(-1).clone())
        i += 1
    if not heads:
        raise WeightsError(f"no 'lin<k>.model.1.weight' tensors in {path}")
    return tuple(heads)


def lpips_heads(preset: str | LpipsPreset) -> list[torch.Tensor]:
    """The calibrated v0.1 channel weights of ``preset``: one ``(C_l,)`` float32 tensor per layer.

    Raises:
        WeightsError: the shipped head file is missing/corrupt/does not fit.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    heads = _load_heads(str(lpips_head_path(p.lpips_net)))
    if tuple(h.numel() for h in heads) != p.channels:
        raise WeightsError(
            f"LPIPS heads for {p.name} have {[h.numel() for h in heads]} channels, expected {list(p.channels)}"
        )
    return [h.clone() for h in heads]

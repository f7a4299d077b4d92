"""Finding, loading, checking and trimming loss-network weights.

Sources, in the order ``weights="imagenet"`` tries them:

1. a local file in ``weights_dir`` (argument / ``--weights-dir``) or in one of the folders of the
   ``LOSSNET_WEIGHTS_DIR`` environment variable (``os.pathsep``-separated). **Naming rule:** the
   file name starts with ``<arch>-imagenet1k-v1`` followed by ``.`` or ``-`` and ends in
   ``.safetensors``, ``.pth`` or ``.pt`` (case-insensitive), e.g.
   ``vgg16-imagenet1k-v1-features.safetensors`` or ``vgg16-imagenet1k-v1.pth``; ``.safetensors``
   is preferred when several match;
2. torchvision's ``IMAGENET1K_V1`` weights enum: the normal download into the torch hub cache
   (``$TORCH_HOME``), or the cached copy.

A file may be *trimmed*: only the parameters the truncated network needs must be present.
``.pth`` files are read with ``torch.load(..., weights_only=True)`` (never plain pickle).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from lossnet.errors import WeightsError
from lossnet.registry import WEIGHTS_TAG

__all__ = [
    "WEIGHT_SUFFIXES",
    "weights_dirs",
    "find_local_weights",
    "load_state_dict_file",
    "imagenet_state_dict",
    "load_into",
    "save_safetensors",
    "sha256_file",
]

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
ENV_VAR = "LOSSNET_WEIGHTS_DIR"


def weights_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for local weight files: ``weights_dir`` first, then ``$LOSSNET_WEIGHTS_DIR``."""
    dirs = []
    if weights_dir:
        d = Path(weights_dir)
        if not d.is_dir():
            raise WeightsError(f"weights folder not found: {d}")
        dirs.append(d)
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part and Path(part).is_dir():
            dirs.append(Path(part))
    return dirs


def find_local_weights(arch: str, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The local ImageNet weight file for ``arch`` following the naming rule, or None."""
    prefix = f"{arch}-imagenet1k-v1"
    for d in weights_dirs(weights_dir):
        matches = []
        for p in d.iterdir():
            name = p.name.lower()
            if not p.is_file() or not name.endswith(WEIGHT_SUFFIXES) or not name.startswith(prefix):
                continue
            if name[len(prefix)] in ".-":
                matches.append(p)
        if matches:
            matches.sort(key=lambda p: (not p.name.lower().endswith(".safetensors"), p.name))
            return matches[0]
    return None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth``/``.pt`` state dict onto the CPU.

    A ``.pth`` holding ``{"state_dict": ...}`` or ``{"model": ...}`` (a training checkpoint) is
    unwrapped. Raises :class:`WeightsError` naming the file if it is missing or unreadable.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        elif suffix in (".pth", ".pt"):
            state = torch.load(p, map_location="cpu", weights_only=True)
        else:
            raise WeightsError(f"unsupported weights file type {p.suffix!r} for {p}: use .safetensors, .pth or .pt")
    except WeightsError:
        raise
    except Exception as exc:  # safetensors/pickle errors have many types; all mean "unreadable"
        raise WeightsError(f"cannot read weights file {p}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {p} does not hold a state dict of tensors")
    return state


def imagenet_state_dict(arch: str, weights_dir: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights of ``arch``: a local file if one follows the naming rule, else torchvision's.

    Returns:
        ``(state_dict, source)`` where source names the file or the torchvision enum.
    """
    local = find_local_weights(arch, weights_dir)
    if local is not None:
        return load_state_dict_file(local), str(local)
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)[WEIGHTS_TAG]
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"torchvision has no {WEIGHTS_TAG} weights for {arch}; pass a weights file") from exc
    try:
        state = enum.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch...
        raise WeightsError(
            f"no local weights for {arch} and the download of torchvision's {arch} {WEIGHTS_TAG} failed "
            f"({type(exc).__name__}: {exc}). Either connect to the internet once (the file is cached in "
            f"{torch.hub.get_dir()}), or put a file named '{arch}-imagenet1k-v1<anything>.safetensors' (or .pth) "
            f"into a folder and pass --weights-dir FOLDER / weights_dir= / set {ENV_VAR}, or use weights=None "
            f"for random initialisation."
        ) from exc
    return state, f"torchvision:{arch}.{WEIGHTS_TAG}"


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load the entries of ``state`` that ``module`` needs; extra keys are ignored.

    Raises:
        WeightsError: a needed parameter/buffer is missing or has the wrong shape (all are named).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise WeightsError(f"weights from {source} lack {len(missing)} tensor(s) the network needs: {shown}")
    bad = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if bad:
        raise WeightsError(f"weights from {source} have wrong shapes: {'; '.join(bad[:5])}")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)


def save_safetensors(path: str | os.PathLike, state: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    from lossnet.atomic import atomic_path

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

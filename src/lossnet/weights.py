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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from lossnet.errors import WeightsError
from lossnet.models.registry import WEIGHTS_TAG

if TYPE_CHECKING:  # torch is imported where it is used, so WeightsSpec stays cheap to import
    import torch
    from torch import nn

__all__ = [
    "WeightsSpec",
    "load_weights",
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

WEIGHTS_KINDS = ("imagenet", "none", "file")


@dataclass(frozen=True)
class WeightsSpec:
    """Which weights a loss network gets: ``"imagenet"``, ``"none"`` (random init) or a ``"file"``.

    Build it with :meth:`parse`, the one interpretation of a user's / config's ``weights`` value.
    ``str(spec)`` and :attr:`label` give the canonical config string: ``"imagenet"``, ``"none"``,
    or the file path as given.

    Attributes:
        kind: ``"imagenet"``, ``"none"`` or ``"file"``.
        path: the file path (as given, not resolved) for ``kind == "file"``, else None.
    """

    kind: str
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in WEIGHTS_KINDS:
            raise ValueError(f"WeightsSpec.kind must be one of {', '.join(WEIGHTS_KINDS)}, got {self.kind!r}")
        if (self.kind == "file") != (self.path is not None):
            raise ValueError("WeightsSpec.path is required for kind 'file' and only for it")

    @classmethod
    def parse(cls, value: "WeightsSpec | str | os.PathLike | None", *, check: bool = True) -> "WeightsSpec":
        """Interpret a ``weights`` value.

        Args:
            value: ``None`` / ``"none"`` (any case) -> random init; ``"imagenet"`` (any case) ->
                ImageNet weights; any other string or ``os.PathLike`` -> a weights file; a
                :class:`WeightsSpec` is returned as is (re-checked when ``check``).
            check: require a file to exist.

        Raises:
            WeightsError: the file does not exist (``check=True``; the message names it), or the
                value is neither None, a string nor a path.
        """
        if isinstance(value, WeightsSpec):
            spec = value
        elif value is None:
            spec = cls("none")
        elif isinstance(value, (str, os.PathLike)):
            text = os.fspath(value)
            if not isinstance(text, str):  # bytes path
                raise WeightsError(f"weights: expected 'imagenet', 'none' or a file path, got {value!r}")
            key = text.strip().lower() if isinstance(value, str) else None
            if key == "none":
                spec = cls("none")
            elif key == "imagenet":
                spec = cls("imagenet")
            elif not text.strip():
                raise WeightsError("weights: expected 'imagenet', 'none' or a file path, got an empty string")
            else:
                spec = cls("file", text)
        else:
            raise WeightsError(
                f"weights: expected 'imagenet', 'none' or a file path, got {type(value).__name__} {value!r}"
            )
        if check and spec.kind == "file" and not Path(spec.path).is_file():
            raise WeightsError(f"weights file not found: {Path(spec.path)}")
        return spec

    @property
    def label(self) -> str:
        """The canonical config string: ``"imagenet"``, ``"none"`` or the file path."""
        return self.path if self.kind == "file" else self.kind

    def __str__(self) -> str:
        return self.label

    @property
    def pretrained(self) -> bool:
        """True unless random init (``kind == "none"``)."""
        return self.kind != "none"

    def sha256(self) -> str | None:
        """sha256 of the weights file (``kind == "file"``); None for ``"imagenet"`` / ``"none"``."""
        if self.kind != "file":
            return None
        if not Path(self.path).is_file():
            raise WeightsError(f"weights file not found: {Path(self.path)}")
        return sha256_file(self.path)


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
    import torch

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
        raise WeightsError(f"cannot read weights file {p}: {_load_error(exc)}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {p} does not hold a state dict of tensors")
    return state


def _load_error(exc: Exception) -> str:
    """One line for a failed load. torch's weights_only refusal is several lines that end in
    advice to load with ``weights_only=False`` -- the unpickling lossnet refuses on principle -- so
    only its reason is kept."""
    import pickle

    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        reason = (
            text.rsplit("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0]
            if "WeightsUnpickler error:" in text
            else ""
        )
        return (
            "not a PyTorch file of tensors only (lossnet reads .pth/.pt with weights_only=True and never unpickles "
            f"other objects{': ' + reason if reason else ''}); re-save it with torch.save(model.state_dict(), ...) "
            "or as .safetensors"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"


def imagenet_state_dict(arch: str, weights_dir: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights of ``arch``: a local file if one follows the naming rule, else torchvision's.

    Returns:
        ``(state_dict, source)`` where source names the file or the torchvision enum.
    """
    local = find_local_weights(arch, weights_dir)
    if local is not None:
        return load_state_dict_file(local), str(local)
    import torch
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
            f"into a folder and pass --weights-dir FOLDER (weights_dir= in Python) or set {ENV_VAR}, or use "
            f"--weights none (weights=None) for random initialisation."
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
    bad = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if bad:
        raise WeightsError(f"weights from {source} have wrong shapes: {'; '.join(bad[:5])}")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)


def load_weights(
    module: nn.Module,
    arch: str,
    weights: WeightsSpec | str | os.PathLike | None,
    weights_dir: str | os.PathLike | None = None,
) -> str:
    """Load ``weights`` (anything :meth:`WeightsSpec.parse` takes) into ``module``, a network of ``arch``.

    Returns:
        Where the weights came from: ``"random"`` (nothing loaded), the local file, or
        ``"torchvision:<arch>.IMAGENET1K_V1"``.
    """
    spec = WeightsSpec.parse(weights)
    if spec.kind == "none":
        return "random"
    if spec.kind == "imagenet":
        state, source = imagenet_state_dict(arch, weights_dir)
    else:
        state, source = load_state_dict_file(spec.path), spec.path
    load_into(module, state, source)
    return source


def save_safetensors(
    path: str | os.PathLike, state: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
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

"""Device names: what a user may pass as ``device`` / ``--device``, and the device a run gets."""

from __future__ import annotations

from typing import Any

from lossnet.errors import LossnetError

__all__ = ["check_device", "resolve_device"]


def check_device(device: str) -> None:
    """A device string torch understands (availability is checked when the run starts).

    Raises:
        LossnetError: not a device name.
    """
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise LossnetError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from exc


def resolve_device(config: Any):
    """The run's torch device: ``config`` is a device name, a run config (object with a ``device``
    attribute, or a dict with a ``"device"`` key) or None; no device means CUDA when available, else CPU.

    Raises:
        LossnetError: an unknown device, or CUDA/MPS asked for but not available here.
    """
    import torch

    if config is None or isinstance(config, str):
        name = config
    elif isinstance(config, dict):
        name = config.get("device")
    else:
        name = getattr(config, "device", None)
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LossnetError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LossnetError(
                f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise LossnetError(f"device {name!r} requested but MPS is not available on this machine")
    return device

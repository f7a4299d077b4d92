"""Exception types. Every error a user can cause derives from :class:`LossnetError`; the CLI prints
its message as a one-line reason and exits non-zero."""

from __future__ import annotations


class LossnetError(Exception):
    """Base class for errors caused by bad input, configuration or missing files."""


class InputError(LossnetError, ValueError):
    """A tensor or image has the wrong shape, dtype, size or value range."""


class UnknownLayerError(LossnetError, KeyError):
    """A layer name is neither E/S/M/L, a readable alias, nor an FX node of the network."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class UnknownNetworkError(LossnetError, KeyError):
    """An architecture name is not a torchvision classification model."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WeightsError(LossnetError):
    """Weights could not be found, downloaded, or do not fit the network."""


class DataError(LossnetError):
    """A dataset folder or file is missing, corrupt or inconsistent."""


class CheckpointError(LossnetError):
    """A checkpoint is unsafe to load (needs code execution), corrupt, or from another configuration."""

"""Truncate any ``nn.Module`` after the deepest requested layer: the loss network of a user's own
module (``LossNetwork(model=...)``) and of timm models.

Two ways, tried in this order:

1. **FX** (``torchvision.models.feature_extraction.create_feature_extractor``), when the module is
   symbolically traceable: the graph is pruned to what the requested nodes depend on, so nothing past
   the deepest one executes and its parameters are not kept. Layers may be FX node names or module paths.
2. **Forward hooks** on module paths otherwise (e.g. timm ViTs with dynamic image sizes, whose
   forward branches on the input shape): each requested module's output is recorded, and once all
   are recorded the forward pass is stopped by an exception (nothing past the deepest requested
   module executes; its parameters stay in the module).

:func:`lossnet.models.builder.truncate` (the one place that calls torchvision's builders) returns
the body and which way was taken (``"fx"`` or ``"hooks"``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lossnet.errors import UnknownLayerError

__all__ = ["HookExtractor", "module_paths", "node_names"]


class _Done(Exception):
    """Raised by the last hook: every requested output is recorded, the rest of the forward is skipped."""


class HookExtractor(nn.Module):
    """``model`` returning ``{module path: output}`` for ``paths``, stopped after the last one.

    The extractor shares ``model``'s parameter, buffer and submodule dictionaries, so its state dict
    has the model's own keys (weight files of the model load as they are) and ``.to()``/``.half()``
    act on the model itself.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        super().__init__()
        modules = dict(model.named_modules())
        unknown = [p for p in paths if p not in modules or not p]
        if unknown:
            raise UnknownLayerError(f"no module {unknown[0]!r} in {type(model).__name__}")
        self.paths = tuple(dict.fromkeys(paths))
        # share the model's dictionaries: one set of tensors, the model's state-dict keys
        self._parameters = model._parameters
        self._buffers = model._buffers
        self._non_persistent_buffers_set = model._non_persistent_buffers_set
        self._modules = model._modules
        object.__setattr__(self, "_model", model)
        self._out: dict[str, torch.Tensor] = {}
        self._register()

    def _register(self) -> None:
        modules = dict(self._model.named_modules())
        object.__setattr__(self, "_handles", [modules[p].register_forward_hook(self._hook(p)) for p in self.paths])

    def __deepcopy__(self, memo):
        # the hooks are closures over this extractor: copy the module without them, hook the copy anew
        import copy

        for h in self._handles:
            h.remove()
        try:
            model = copy.deepcopy(self._model, memo)
        finally:
            self._register()
        new = HookExtractor(model, self.paths)
        new.train(self.training)
        return new

    def _hook(self, path: str):
        def hook(module, args, output):
            if path in self._out or not self._recording:
                return
            self._out[path] = output
            if len(self._out) == len(self.paths):
                raise _Done

        return hook

    _recording = False

    def train(self, mode: bool = True) -> "HookExtractor":
        super().train(mode)
        self._model.training = mode
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._out = {}
        object.__setattr__(self, "_recording", True)
        try:
            self._model(x)
        except _Done:
            pass
        finally:
            object.__setattr__(self, "_recording", False)
        out, self._out = self._out, {}
        missing = [p for p in self.paths if p not in out]
        if missing:
            raise UnknownLayerError(f"module {missing[0]!r} of {type(self._model).__name__} never ran in its forward")
        return {p: out[p] for p in self.paths}


def module_paths(model: nn.Module) -> tuple[str, ...]:
    """Every submodule path of ``model`` (what hooks accept), in definition order."""
    return tuple(n for n, _ in model.named_modules() if n)


def node_names(model: nn.Module) -> tuple[str, ...]:
    """FX node names of ``model`` in eval mode if it traces, else its module paths."""
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        _, nodes = get_graph_node_names(model)
    except Exception:  # not traceable: hooks take module paths
        return module_paths(model)
    return tuple(n for n in nodes if n != "x")

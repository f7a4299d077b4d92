"""Make ``import torchvision`` work when torchvision's C++ extension cannot be loaded.

Why this exists: some torchvision wheels (e.g. the CUDA build of 0.28.0 paired with a CPU build
of torch 2.13.0) ship a ``_C.so`` that fails to load. torchvision then still registers *fake*
(meta) kernels for its detection ops at import time, and ``torch.library.register_fake`` raises
``RuntimeError: operator torchvision::nms does not exist`` because the schemas were never defined.
Nothing lossnet uses (classification models, transforms v2, FX feature extraction) needs those
ops, so we define the two missing schemas -- and only the schemas, no kernels -- before
torchvision is imported. Calling ``torchvision.ops.nms`` still fails, loudly, as it should.

This module is imported first by ``lossnet/__init__.py``; no other lossnet module imports
torchvision before the package is initialised. It does nothing when:

- torchvision is already imported (too late to matter, or it imported fine),
- torchvision's extension loads (the normal case on a user's machine),
- torchvision is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

__all__ = ["ensure_torchvision_importable", "PATCHED"]

# Schemas copied from torchvision's csrc/ops/nms.cpp and quantized/qnms.cpp (the two ops that
# torchvision/_meta_registrations.py registers fake kernels for at import time).
_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

#: True when this module had to define the schemas (the extension did not load).
PATCHED = False
_LIBRARY = None  # keeps the torch.library.Library alive; dropping it would undefine the ops


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: nothing to patch, let the real ImportError surface later
    for folder in spec.submodule_search_locations:
        for name in os.listdir(folder):
            if name.startswith("_C.") and name.endswith((".so", ".pyd")):
                try:
                    torch.ops.load_library(os.path.join(folder, name))
                    return True
                except (OSError, RuntimeError):
                    return False
    return False


def ensure_torchvision_importable() -> bool:
    """Define the missing ``torchvision::nms``/``qnms`` schemas if, and only if, needed.

    Returns:
        True if the schemas were defined by this call or an earlier one.
    """
    global PATCHED, _LIBRARY
    if PATCHED or "torchvision" in sys.modules:
        return PATCHED
    if _extension_loads():
        return False
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _MISSING_SCHEMAS:
        _LIBRARY.define(schema)
    PATCHED = True
    return True


ensure_torchvision_importable()

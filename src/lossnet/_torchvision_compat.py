"""Make ``import torchvision`` work when torchvision's C++ extension cannot be loaded.

Why this exists: some torchvision wheels (e.g. the CUDA build of 0.28.0 paired with a CPU build
of torch 2.13.0) ship a ``_C.so`` that fails to load. torchvision then still registers *fake*
(meta) kernels for its detection ops at import time, and ``torch.library.register_fake`` raises
``RuntimeError: operator torchvision::nms does not exist`` because the schemas were never defined.
Nothing lossnet uses (classification models, transforms v2, FX feature extraction) needs those
ops, so we define the two missing schemas -- and only the schemas, no kernels -- before
torchvision is imported. Calling ``torchvision.ops.nms`` still fails, loudly, as it should.

When it runs: ``import lossnet`` does *not* import torch (the package is lazy, so ``lossnet
--help`` stays fast). Instead ``lossnet/__init__.py`` calls :func:`install_import_hook`, which puts
a tiny finder at the front of ``sys.meta_path``. The first time anything imports ``torchvision``
(top-level), the finder removes itself, calls :func:`ensure_torchvision_importable` (this imports
torch and defines the schemas if needed) and returns ``None``, so the normal import machinery then
imports torchvision as usual. So "import ``lossnet`` before torchvision / lpips / piq" keeps
guaranteeing the schemas exist, without paying for torch at ``import lossnet``.

:func:`ensure_torchvision_importable` does nothing when:

- torchvision is already imported (too late to matter, or it imported fine),
- torchvision's extension loads (the normal case on a user's machine),
- torchvision is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["ensure_torchvision_importable", "extension_loads", "install_import_hook", "remove_import_hook", "PATCHED"]

# Schemas copied from torchvision's csrc/ops/nms.cpp and quantized/qnms.cpp (the two ops that
# torchvision/_meta_registrations.py registers fake kernels for at import time).
_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

#: True when this module had to define the schemas (the extension did not load).
PATCHED = False
_LIBRARY = None  # keeps the torch.library.Library alive; dropping it would undefine the ops


def extension_loads() -> bool:
    """Whether torchvision's compiled extension (``_C.so``) loads into this torch (imports torch).

    True as well when torchvision is not installed (nothing to patch; the real ImportError
    surfaces later).
    """
    import torch

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


_extension_loads = extension_loads  # the name used before it was public


def ensure_torchvision_importable() -> bool:
    """Define the missing ``torchvision::nms``/``qnms`` schemas if, and only if, needed.

    Imports torch (not torchvision). Safe to call any number of times.

    Returns:
        True if the schemas were defined by this call or an earlier one.
    """
    global PATCHED, _LIBRARY
    if PATCHED or "torchvision" in sys.modules:
        return PATCHED
    if extension_loads():
        return False
    import torch

    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _MISSING_SCHEMAS:
        _LIBRARY.define(schema)
    PATCHED = True
    return True


class _TorchvisionImportHook:
    """``sys.meta_path`` finder that runs the shim just before torchvision's first import.

    It never finds anything itself: :meth:`find_spec` steps aside (removes itself from
    ``sys.meta_path``), runs :func:`ensure_torchvision_importable` and returns None, so the
    regular finders import torchvision.
    """

    lossnet_torchvision_hook = True  # marker, so a re-imported lossnet does not install a second one

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        remove_import_hook()
        try:
            ensure_torchvision_importable()
        except ImportError:
            pass  # torch missing: the import of torchvision fails on its own, with the real reason
        return None

    def invalidate_caches(self) -> None:  # part of the finder protocol; nothing cached
        pass


def _hooks() -> list:
    return [f for f in sys.meta_path if getattr(f, "lossnet_torchvision_hook", False)]


def install_import_hook() -> bool:
    """Arrange for :func:`ensure_torchvision_importable` to run right before torchvision is first
    imported, without importing torch now.

    Returns:
        True if the hook was installed; False if torchvision is already imported (then the shim
        can no longer help) or a hook is already in place.
    """
    if "torchvision" in sys.modules or _hooks():
        return False
    sys.meta_path.insert(0, _TorchvisionImportHook())
    return True


def remove_import_hook() -> None:
    """Take the hook out of ``sys.meta_path`` (idempotent)."""
    for hook in _hooks():
        try:
            sys.meta_path.remove(hook)
        except ValueError:  # removed concurrently
            pass

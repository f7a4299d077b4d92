"""The ST-LPIPS presets ``stlpips-alex`` and ``stlpips-vgg`` (shift-tolerant LPIPS, Ghildyal & Liu 2022).

ST-LPIPS is LPIPS v0.1 (ImageNet-style input scaling, unit-normalised features of five layers,
channel-weighted squared differences averaged over positions, summed over layers; lossnet's
``spatial`` distance with the heads as channel weights) on an *anti-aliased* backbone: every strided
max pooling becomes a stride-1 max pooling followed by a reflect-padded binomial blur with stride 2
(BlurPool, Zhang 2019), and AlexNet's stride-4 conv1 becomes stride 1 + BlurPool. lossnet builds
that backbone itself (``LossNetwork(..., pooling="blur")``,
:func:`lossnet.models.adapters.make_shift_tolerant`) with torchvision's module indices, so the
layers are the LPIPS presets' (``features.1/4/7/9/11`` of AlexNet, relu1_2..relu5_3 of VGG16).

The weights -- the whole trained backbone and the five linear heads -- are read from the
``stlpips-pytorch`` wheel's ``stlpips_pytorch/weights/vST0.0/{alex,vgg}_shift_tolerant.pth``
(BSD-2-Clause, Ghildyal & Liu; ``pip install "lossnet[stlpips]"``), with ``torch.load(weights_only=True)``;
lossnet never imports ``stlpips_pytorch`` itself (its ``__init__`` imports IPython and
torchsummary). ``PerceptualMetric(preset="stlpips-alex")`` equals
``stlpips_pytorch.stlpips.LPIPS(net="alex", variant="shift_tolerant")`` (``tests/presets/test_stlpips.py``).

References:
    Ghildyal, Liu. "Shift-tolerant Perceptual Similarity Metric", ECCV 2022.
    https://github.com/abhijay9/ShiftTolerant-LPIPS
    Zhang. "Making Convolutional Networks Shift-Invariant Again", ICML 2019.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from lossnet.errors import WeightsError

__all__ = ["STLPIPS_PRESETS", "stlpips_weights_path", "stlpips_version", "stlpips_state"]

#: preset -> (torchvision arch, the wheel's net name, LPIPS preset whose layers it taps)
STLPIPS_PRESETS: dict[str, tuple[str, str, str]] = {
    "stlpips-alex": ("alexnet", "alex", "lpips-alex"),
    "stlpips-vgg": ("vgg16", "vgg", "lpips-vgg"),
}

#: torchvision's indices of the convolutions in ``features`` (the wheel numbers them differently:
#: its extra BlurPool modules shift the indices); the k-th convolution of one is the k-th of the other
_TV_CONVS = {"alexnet": (0, 3, 6, 8, 10), "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}


def stlpips_weights_path(preset: str) -> Path:
    """The weight file of ``preset`` inside the installed ``stlpips-pytorch`` wheel."""
    from lossnet.extras import require

    require("stlpips", f"preset {preset!r}")
    spec = importlib.util.find_spec("stlpips_pytorch")  # finds the package without running its __init__
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "weights" / "vST0.0" / f"{STLPIPS_PRESETS[preset][1]}_shift_tolerant.pth"
    if not path.is_file():
        raise WeightsError(f"ST-LPIPS weights not found: {path} (reinstall stlpips-pytorch)")
    return path


def stlpips_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stlpips-pytorch")
    except PackageNotFoundError:
        return "unknown"


def stlpips_state(preset: str) -> tuple[dict, list, str]:
    """``(backbone state dict with torchvision keys, heads [(C_l,), ...], source path)`` of ``preset``."""
    from lossnet.weights import load_state_dict_file

    arch = STLPIPS_PRESETS[preset][0]
    path = stlpips_weights_path(preset)
    state = load_state_dict_file(path)
    convs: dict[int, dict[str, object]] = {}
    heads: dict[int, object] = {}
    for key, value in state.items():
        m = re.fullmatch(r"net\.slice\d+\.(\d+)\.(weight|bias)", key)
        if m:
            convs.setdefault(int(m.group(1)), {})[m.group(2)] = value
            continue
        m = re.fullmatch(r"lin(\d+)\.model\.\d+\.weight", key)
        if m:
            heads[int(m.group(1))] = value.reshape(-1)
    tv = _TV_CONVS[arch]
    found = [convs[i] for i in sorted(convs)]
    n_layers = 5
    # the five tapped layers need the first 5 (alexnet) / 13 (vgg16) convolutions
    if len(found) != len(tv) or sorted(heads) != list(range(n_layers)):
        raise WeightsError(
            f"{path}: expected {len(tv)} convolutions and {n_layers} heads, found {len(found)} and {len(heads)}"
        )
    backbone = {}
    for idx, conv in zip(tv, found):
        backbone[f"features.{idx}.weight"] = conv["weight"]
        backbone[f"features.{idx}.bias"] = conv["bias"]
    return backbone, [heads[i] for i in range(n_layers)], str(path)

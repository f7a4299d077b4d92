"""Test-set evaluation: Y-PSNR / Y-SSIM of the model and of bicubic upsampling, plus a PNG grid."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lossnet.errors import DataError
from lossnet.imageio import list_images, load_image, save_image

from .degrade import bicubic_upsample, crop_to_multiple, degrade
from .metrics import quantize, y_psnr, y_ssim

__all__ = ["check_test_set", "evaluate_set", "comparison_grid"]


def comparison_grid(rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], pad: int = 4) -> torch.Tensor:
    """One row per image: bicubic | model | HR (each ``(3, H, W)``), white padding, rows left-aligned."""
    from torchvision.utils import make_grid

    strips = [make_grid(list(r), nrow=3, padding=pad, pad_value=1.0) for r in rows]
    width = max(s.shape[-1] for s in strips)
    strips = [F.pad(s, (0, width - s.shape[-1], 0, 0), value=1.0) for s in strips]
    return torch.cat(strips, dim=-2)


@torch.no_grad()
def check_test_set(folder: str | Path, name: str, scale: int) -> int:
    """Decode every image of a test folder once, before training: a corrupt or too small test image
    is reported now, not after hours of training. Returns the number of images.

    Raises:
        DataError: no images, an undecodable file (named), or an image smaller than ``scale`` pixels.
    """
    from lossnet.imageio import load_image_array

    paths = list_images(folder)
    if not paths:
        raise DataError(f"test set {name!r}: no images in {folder}")
    for path in paths:
        arr = load_image_array(path, "RGB")  # DataError names the file
        if min(arr.shape[:2]) < scale:
            raise DataError(
                f"test set {name!r}: {path} is {arr.shape[1]}x{arr.shape[0]}, smaller than the scale factor {scale}"
            )
    return len(paths)


@torch.no_grad()  # without it every test image's forward keeps its graph: ~5 GB peak RSS on a quick run
def evaluate_set(
    model: nn.Module | None,
    folder: str | Path,
    scale: int,
    *,
    name: str,
    device: torch.device | str = "cpu",
    grid_path: Path | None = None,
    grid_images: int = 3,
    progress: bool = True,
    protocol: str = "full",
) -> dict[str, float]:
    """Mean Y-PSNR/SSIM over the images of ``folder``, of the model and of bicubic upsampling.

    ``protocol="full"`` (the paper's prose): each whole HR image (greyscale read as RGB by
    repetition) is cropped to a multiple of ``scale``, degraded (:func:`degrade`), upscaled (eval
    mode, output quantised to 8 bit); BT.601 Y, ``scale`` border pixels cropped, Gaussian SSIM.
    ``protocol="reference"`` (the reference code): the 288 px centre crop and PIL degradation of
    :func:`~lossnet.bench.superres.reference.reference_pair`, scored by
    :func:`~lossnet.bench.superres.reference.reference_metrics`.

    Returns:
        ``{"<name>/psnr", "<name>/ssim", "<name>/psnr_bicubic", "<name>/ssim_bicubic"}``
        (model keys absent when ``model`` is None); under ``reference`` also
        ``<name>/psnr_torchmetrics`` and ``<name>/ssim_torchmetrics`` (and their ``_bicubic``): the
        reference's four printed numbers, see :mod:`~lossnet.bench.superres.reference`
        (``psnr`` = its "PSNR_2", ``ssim`` = "Test MSSIM", ``psnr_torchmetrics`` = "Test PSNR",
        ``ssim_torchmetrics`` = "Tensor MSSIM").
    """
    from tqdm.auto import tqdm

    if model is not None:
        model.eval()
    sums: dict[str, float] = {}
    rows = []
    paths = list_images(folder)
    if not paths:
        raise DataError(f"test set {name!r}: no images in {folder}")
    if protocol not in ("full", "reference"):
        raise ValueError(f"unknown test protocol {protocol!r}; use full or reference")
    from .reference import reference_metrics_all, reference_pair

    for i, path in enumerate(tqdm(paths, desc=f"test {name}", disable=not progress, leave=False)):
        if protocol == "reference":
            hr, lr = reference_pair(path, scale)
        else:
            hr = crop_to_multiple(load_image(path, "RGB"), scale)
            lr = degrade(hr, scale)
        raws = {"_bicubic": bicubic_upsample(lr, scale).clamp(0, 1)}
        if model is not None:
            raws[""] = model(lr[None].to(device))[0].cpu()
        outs = {suffix: quantize(raw) for suffix, raw in raws.items()}
        for suffix, sr in outs.items():
            if protocol == "reference":
                scores = reference_metrics_all(sr, hr, raws[suffix])
            else:
                scores = {"psnr": y_psnr(sr, hr, border=scale), "ssim": y_ssim(sr, hr, border=scale)}
            for metric, value in scores.items():
                key = f"{name}/{metric}{suffix}"
                sums[key] = sums.get(key, 0.0) + value
        if grid_path is not None and i < grid_images:
            rows.append((outs["_bicubic"], outs.get("", outs["_bicubic"]), hr))
    if grid_path is not None and rows:
        save_image(grid_path, comparison_grid(rows))
    return {k: v / len(paths) for k, v in sorted(sums.items(), key=lambda kv: (kv[0].endswith("_bicubic"), kv[0]))}

"""Readers for the autoencoder benchmark's datasets in their distributed on-disk formats.

Every loader returns uint8 tensors ``(N, 3, S, S)`` at the dataset's native resolution plus int64
labels in 0..9; :func:`to_input` turns a batch into the autoencoder's float input (padding/resizing
happens per batch so the 604k SVHN images never exist as 64x64 floats in memory).

Formats:
  SVHN cropped digits (Netzer et al. 2011): MATLAB v5 ``{train,test,extra}_32x32.mat`` with ``X``
  of shape (32, 32, 3, N) uint8 (H, W, C, N) and ``y`` of shape (N, 1) with label 10 for digit 0.
  STL-10 binary (Coates et al. 2011): ``*_X.bin`` is raw uint8, 3x96x96 per image, each channel
  stored column-major (Fortran order, as written by MATLAB), so ``reshape(N, 3, 96, 96)`` must be
  followed by swapping the last two axes; ``*_y.bin`` is uint8 labels 1..10.
  digits: scikit-learn's ``load_digits`` (8x8, values 0..16), a real labelled stand-in for SVHN.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lossnet.errors import DataError, LossnetError

__all__ = [
    "DATASETS",
    "AEData",
    "load_svhn_mat",
    "load_stl10_images",
    "load_stl10_labels",
    "load_digits_split",
    "load_dataset",
    "to_input",
]

DATASETS = ("svhn", "stl10", "digits")
STL10_SIZE = 96


@dataclass
class AEData:
    """The three parts the benchmark needs (uint8 images ``(N, 3, S, S)``, int64 labels 0..9)."""

    unlabeled: torch.Tensor  # autoencoder training images
    train_x: torch.Tensor  # labelled train set (embedded, split 80/20 for the MLPs)
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    name: str


def _need(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"dataset file not found: {p}")
    return p


def load_svhn_mat(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an SVHN cropped-digits ``.mat`` file.

    Args:
        path: ``train_32x32.mat``, ``test_32x32.mat`` or ``extra_32x32.mat``.

    Returns:
        ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)`` in 0..9 (10 -> 0).

    Raises:
        DataError: the file is missing, not a MATLAB file, or ``X``/``y`` have the wrong shape.
    """
    import scipy.io

    p = _need(path)
    try:
        mat = scipy.io.loadmat(str(p), variable_names=("X", "y"))
    except Exception as exc:  # scipy raises several types for non-MAT input
        raise DataError(f"{p}: not a readable MATLAB .mat file ({exc})") from exc
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{p}: expected variables 'X' and 'y' (SVHN cropped-digits format)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{p}: X has shape {x.shape}, expected (32, 32, 3, N)")
    if x.shape[3] != y.shape[0]:
        raise DataError(f"{p}: X holds {x.shape[3]} images but y holds {y.shape[0]} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{p}: labels must be 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    labels = torch.from_numpy((y.astype(np.int64) % 10))
    return images, labels


def load_stl10_images(path: str | os.PathLike) -> torch.Tensor:
    """Read an STL-10 ``*_X.bin`` file as uint8 ``(N, 3, 96, 96)``, upright.

    Raises:
        DataError: missing file, or a size that is not a multiple of 3*96*96 bytes.
    """
    p = _need(path)
    per = 3 * STL10_SIZE * STL10_SIZE
    size = p.stat().st_size
    if size == 0 or size % per:
        raise DataError(f"{p}: {size} bytes is not a positive multiple of {per} (3x96x96 uint8 STL-10 images)")
    data = np.fromfile(p, dtype=np.uint8).reshape(-1, 3, STL10_SIZE, STL10_SIZE)
    # Stored column-major per channel: the file's fast axis is the image row index.
    return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 1, 3, 2)))


def load_stl10_labels(path: str | os.PathLike, count: int | None = None) -> torch.Tensor:
    """Read an STL-10 ``*_y.bin`` file: uint8 labels 1..10 -> int64 0..9.

    Raises:
        DataError: missing file, labels outside 1..10, or a count differing from ``count``.
    """
    p = _need(path)
    y = np.fromfile(p, dtype=np.uint8).astype(np.int64)
    if y.size == 0 or y.min() < 1 or y.max() > 10:
        raise DataError(f"{p}: STL-10 labels must be bytes 1..10")
    if count is not None and y.size != count:
        raise DataError(f"{p}: {y.size} labels but the image file holds {count} images")
    return torch.from_numpy(y - 1)


def _digits_to_uint8(images: np.ndarray) -> torch.Tensor:
    """(N, 8, 8) values 0..16 -> uint8 (N, 3, 32, 32): bilinear x4 upsampling, grey -> RGB."""
    t = torch.from_numpy(images.astype(np.float32) / 16.0)[:, None]
    t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False).clamp_(0, 1)
    return (t * 255.0 + 0.5).to(torch.uint8).repeat(1, 3, 1, 1)


def load_digits_split(
    seed: int = 0, test_fraction: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(train_x, train_y, test_x, test_y)``, stratified seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=d.target)
    x = _digits_to_uint8(d.images)
    y = torch.from_numpy(d.target.astype(np.int64))
    return x[tr], y[tr], x[te], y[te]


def _limit(
    x: torch.Tensor, y: torch.Tensor | None, n: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if n is None or n >= len(x):
        return x, y
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n].sort().values
    return x[idx], (None if y is None else y[idx])


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None,
    *,
    seed: int = 0,
    ae_images: int | None = None,
    train_images: int | None = None,
    test_images: int | None = None,
) -> AEData:
    """Load one dataset's AE-training, labelled-train and test parts.

    Args:
        name: ``"svhn"`` (AE on ``extra``), ``"stl10"`` (AE on ``unlabeled``) or ``"digits"``
            (AE on the train part of a seeded 75/25 split).
        data_dir: folder with the dataset files (ignored for digits).
        seed: seed of the digits split and of the optional subsets.
        ae_images, train_images, test_images: optional seeded subset sizes (None: all).
    """
    if name == "digits":
        trx, tr_y, tex, te_y = load_digits_split(seed)
        unl = trx
    elif name in ("svhn", "stl10"):
        if data_dir is None:
            raise LossnetError(f"autoencoder: --data DIR is required for dataset {name}")
        d = Path(data_dir)
        if not d.is_dir():
            raise DataError(f"autoencoder: data folder not found: {d}")
        if name == "svhn":
            unl, _ = load_svhn_mat(d / "extra_32x32.mat")
            trx, tr_y = load_svhn_mat(d / "train_32x32.mat")
            tex, te_y = load_svhn_mat(d / "test_32x32.mat")
        else:
            unl = load_stl10_images(d / "unlabeled_X.bin")
            trx = load_stl10_images(d / "train_X.bin")
            tr_y = load_stl10_labels(d / "train_y.bin", len(trx))
            tex = load_stl10_images(d / "test_X.bin")
            te_y = load_stl10_labels(d / "test_y.bin", len(tex))
    else:
        raise LossnetError(f"autoencoder: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    unl, _ = _limit(unl, None, ae_images, seed)
    trx, tr_y = _limit(trx, tr_y, train_images, seed + 1)
    tex, te_y = _limit(tex, te_y, test_images, seed + 2)
    return AEData(unl, trx, tr_y, tex, te_y, name)


def to_input(batch: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 ``(N, 3, S, S)`` -> float ``(N, 3, image_size, image_size)`` in [0, 1].

    Smaller images (SVHN/digits 32x32) are reflect-padded to ``image_size`` as in the paper, which
    keeps the digits at native scale; larger ones (STL-10 96 -> 64) are resized (bilinear,
    antialiased). Equal sizes pass through.
    """
    x = batch.float().div_(255.0)
    s = x.shape[-1]
    if s < image_size:
        total = image_size - s
        lo, hi = total // 2, total - total // 2
        if lo >= s or hi >= s:
            raise LossnetError(f"autoencoder: cannot reflect-pad {s}x{s} images to {image_size}x{image_size}")
        x = F.pad(x, (lo, hi, lo, hi), mode="reflect")
    elif s > image_size:
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        ).clamp_(0, 1)
    return x

"""Tiny synthetic folders in the exact BAPPS on-disk format, for tests and the performance script.

Layout written (what the LPIPS authors' ``scripts/download_dataset.sh`` unpacks)::

    ROOT/2afc/<split>/<subset>/{ref,p0,p1}/NNNNNN.png   judge/NNNNNN.npy  (float, shape (1,))
    ROOT/jnd/val/<subset>/{p0,p1}/NNNNNN.png            same/NNNNNN.npy   (float, shape (1,))

Content: each reference is a 64x64 crop of a natural image (BSD100 from ``../shared`` when a source
folder is given, else a procedural texture). One distortion is *mild* (Gaussian blur, sigma 0.8),
the other *strong* (additive Gaussian noise, sigma 0.25); which one lands in ``p0`` is random, and
the judgment ``h`` (fraction of humans preferring ``p1``) is drawn so that humans mostly prefer the
mild one. For JND, ``p0`` is the reference and ``p1`` a mild (``same`` high) or strong (``same``
low) distortion. Any sensible perceptual distance therefore scores clearly above chance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_synthetic_bapps", "save_png", "save_scalar"]

_SIZE = 64


def _natural_sources(source_dir: str | os.PathLike | None) -> list[np.ndarray]:
    if source_dir is None or not Path(source_dir).is_dir():
        return []
    from lossnet.imageio import list_images, load_image_array

    return [load_image_array(p, "RGB") for p in list_images(source_dir)[:20]]


def _procedural(rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture: a few oriented sinusoids plus a colour gradient."""
    y, x = np.mgrid[0:_SIZE, 0:_SIZE].astype(np.float64) / _SIZE
    img = np.zeros((_SIZE, _SIZE, 3))
    for c in range(3):
        for _ in range(3):
            fx, fy, ph = rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(0, 2 * np.pi)
            img[:, :, c] += np.sin(2 * np.pi * (fx * x + fy * y) + ph)
        img[:, :, c] += rng.uniform(-2, 2) * x + rng.uniform(-2, 2) * y
    img -= img.min()
    img /= max(img.max(), 1e-8)
    return (img * 255).astype(np.uint8)


def _reference(rng: np.random.Generator, sources: list[np.ndarray]) -> np.ndarray:
    if not sources:
        return _procedural(rng)
    src = sources[rng.integers(len(sources))]
    h, w = src.shape[:2]
    top, left = rng.integers(0, h - _SIZE + 1), rng.integers(0, w - _SIZE + 1)
    return src[top : top + _SIZE, left : left + _SIZE].copy()


def _mild(ref: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.clip(gaussian_filter(ref.astype(np.float64), sigma=(0.8, 0.8, 0)), 0, 255).round().astype(np.uint8)


def _strong(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = ref.astype(np.float64) + rng.normal(0.0, 0.25 * 255, ref.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def save_scalar(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.save(fh, np.array([value], dtype=np.float64))


def write_synthetic_bapps(
    root: str | os.PathLike,
    n_2afc: int = 8,
    n_jnd: int = 8,
    subsets_2afc: Sequence[str] = ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
    subsets_jnd: Sequence[str] = ("traditional", "cnn"),
    split: str = "val",
    source_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> Path:
    """Write a BAPPS-format folder with ``n_2afc`` triplets / ``n_jnd`` pairs per subset.

    Args:
        root: output folder (created).
        n_2afc: triplets per 2AFC subset.
        n_jnd: pairs per JND subset (JND is only written for ``split="val"``, as in BAPPS).
        subsets_2afc: 2AFC subset names.
        subsets_jnd: JND subset names.
        split: ``"val"`` or ``"train"``.
        source_dir: folder of natural images to crop references from (e.g. ``../shared/data/sr/bsd100``);
            procedural textures when None or absent.
        seed: random seed; the same seed writes identical files.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    sources = _natural_sources(source_dir)
    for subset in subsets_2afc:
        d = root / "2afc" / split / subset
        for i in range(n_2afc):
            ref = _reference(rng, sources)
            mild, strong = _mild(ref), _strong(ref, rng)
            mild_is_p1 = bool(rng.integers(2))
            # h = fraction of humans preferring p1; humans mostly prefer the mild distortion.
            prefer_mild = rng.uniform(0.7, 1.0)
            h = prefer_mild if mild_is_p1 else 1.0 - prefer_mild
            p0, p1 = (strong, mild) if mild_is_p1 else (mild, strong)
            name = f"{i:06d}"
            save_png(d / "ref" / f"{name}.png", ref)
            save_png(d / "p0" / f"{name}.png", p0)
            save_png(d / "p1" / f"{name}.png", p1)
            save_scalar(d / "judge" / f"{name}.npy", float(h))
    if split == "val":
        for subset in subsets_jnd:
            d = root / "jnd" / "val" / subset
            for i in range(n_jnd):
                ref = _reference(rng, sources)
                is_mild = bool(rng.integers(2))
                other = _mild(ref) if is_mild else _strong(ref, rng)
                same = rng.uniform(0.6, 1.0) if is_mild else rng.uniform(0.0, 0.4)
                name = f"{i:06d}"
                save_png(d / "p0" / f"{name}.png", ref)
                save_png(d / "p1" / f"{name}.png", other)
                save_scalar(d / "same" / f"{name}.npy", float(same))
    return root

"""Trivial road extractors the trained models must beat.

* :func:`all_background` -- predicts no road anywhere.
* :func:`intensity_baseline` -- roads are bright, unsaturated (grey asphalt) pixels: a pixel is
  road when its greyscale intensity is in ``[low, high]`` and its saturation is below ``max_sat``.
* :func:`edge_baseline` -- Canny edges of the greyscale image (``skimage.feature.canny``).

Thresholds are chosen on the training split by :func:`fit_intensity_baseline` (a small grid
search maximising quality as the evaluation protocol scores it), never on the test split.
Images are ``uint8`` or float in [0, 1] (the ``reference`` protocol's resized tiles).
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_background", "intensity_baseline", "edge_baseline", "fit_intensity_baseline"]


def all_background(image: np.ndarray) -> np.ndarray:
    """An all-``False`` mask of the image's size."""
    return np.zeros(image.shape[:2], dtype=bool)


def _grey_sat(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else np.asarray(image, np.float32)
    mx, mn = f.max(-1), f.min(-1)
    return f.mean(-1), (mx - mn) / np.maximum(mx, 1e-6)


def intensity_baseline(image: np.ndarray, low: float = 0.45, high: float = 0.85, max_sat: float = 0.15) -> np.ndarray:
    """Road where greyscale intensity is in ``[low, high]`` and saturation < ``max_sat``.

    White no-data pixels (intensity > ``high``) are excluded by the upper bound.
    """
    grey, sat = _grey_sat(image)
    return (grey >= low) & (grey <= high) & (sat < max_sat)


def edge_baseline(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Canny edges of the greyscale image (road borders are strong straight edges)."""
    from skimage.feature import canny

    grey, _ = _grey_sat(image)
    return canny(grey, sigma=sigma)


def fit_intensity_baseline(
    tiles: list[tuple[np.ndarray, np.ndarray]], rho: float = 3, macro: bool = False
) -> dict[str, float]:
    """Grid-search ``low``/``high``/``max_sat`` of :func:`intensity_baseline` maximising quality at
    ``rho`` (counts summed over the tiles), or with ``macro`` the pixel-exact per-tile quality
    averaged over the tiles (the ``reference`` protocol)."""
    from lossnet.bench.roads.evaluate import macro_scores
    from lossnet.bench.roads.metrics import road_scores

    best, best_q = {"low": 0.45, "high": 0.85, "max_sat": 0.15}, -1.0
    for low in (0.35, 0.5, 0.65):
        for high in (0.8, 0.95):
            for max_sat in (0.15, 1.0):
                params = {"low": low, "high": high, "max_sat": max_sat}
                pairs = ((intensity_baseline(im, **params), m) for im, m in tiles)
                q = macro_scores(pairs)["quality"] if macro else road_scores(pairs, (rho,))[rho].scores()["quality"]
                if q > best_q:
                    best, best_q = params, q
    return best

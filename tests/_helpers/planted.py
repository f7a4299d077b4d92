"""Planted-truth 2AFC data: judgments generated from a known non-negative head on real patches.

:func:`write_planted_bapps` crops 64x64 references from natural images, distorts each twice with
randomly chosen distortions of random strength (Gaussian blur, Gaussian noise, colour shift,
contrast, JPEG, a small translation), computes the *true* distances
:math:`d_i = \\sum_l \\frac{1}{H_lW_l}\\sum_{hw}\\sum_c w^*_{l,c}(\\hat y^l - \\hat y^l_i)^2` with the
planted heads :math:`w^*` (the spatial distance of :mod:`lossnet.distances`) on the PNG-decoded
patches, and writes the judgment :math:`h = \\sigma((d_0 - d_1)/T)` (the fraction preferring p1)
in the BAPPS layout ``ROOT/2afc/{train,val}/planted/{ref,p0,p1,judge}``. A fit that recovers
:math:`w^*` (up to scale) must reach the judgments' own 2AFC ceiling on the held-out items.

``python tests/_helpers/planted.py --weights-dir ../shared/weights --images ../shared/data/sr/bsd100``
prints the 2AFC table (unweighted vs fitted heads vs the lpips preset) for alexnet and vgg16.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["DISTORTIONS", "distort", "planted_heads", "write_planted_bapps"]

DISTORTIONS = ("blur", "noise", "color", "contrast", "jpeg", "shift")


def distort(ref: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One random-strength distortion of a uint8 HxWx3 patch."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    x = ref.astype(np.float64)
    if kind == "blur":
        y = gaussian_filter(x, sigma=(rng.uniform(0.4, 2.5),) * 2 + (0,))
    elif kind == "noise":
        y = x + rng.normal(0, rng.uniform(4, 40), x.shape)
    elif kind == "color":
        y = x + rng.uniform(-40, 40, (1, 1, 3))
    elif kind == "contrast":
        m = x.mean((0, 1), keepdims=True)
        y = m + (x - m) * rng.uniform(0.4, 1.6)
    elif kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(ref).save(buf, format="JPEG", quality=int(rng.integers(5, 60)))
        y = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64)
    elif kind == "shift":
        y = np.roll(x, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
    else:
        raise ValueError(kind)
    return np.clip(y, 0, 255).round().astype(np.uint8)


def planted_heads(channels: Sequence[int], seed: int = 0, density: float = 1.0) -> list[torch.Tensor]:
    """A known non-negative head per layer: ``u**2`` with ``u ~ U(0, 1)`` (heavy-tailed), each
    channel kept with probability ``density`` (the rest zero)."""
    g = np.random.default_rng(seed)
    return [
        torch.tensor(g.uniform(0, 1, c) ** 2 * (g.uniform(0, 1, c) < density), dtype=torch.float32) for c in channels
    ]


def _sources(image_dir) -> list[np.ndarray]:
    from lossnet.imageio import list_images, load_image_array

    return [load_image_array(p, "RGB") for p in list_images(image_dir)]


def write_planted_bapps(
    root: str | os.PathLike,
    metric,
    *,
    image_dir: str | os.PathLike,
    n_train: int,
    n_val: int,
    seed: int = 0,
    sharpness: float = 2.0,
    subset: str = "planted",
) -> dict:
    """Write train and val 2AFC folders whose judgments come from ``metric`` (a
    :class:`lossnet.loss.PerceptualMetric` with the planted heads as channel weights).

    ``sharpness``: :math:`1/T` in units of the median :math:`|d_0 - d_1|` (2, the default: soft
    judgments that carry the margins, needed to identify the weights; 10: nearly
    deterministic judgments except for close pairs).

    Returns:
        ``{"root", "temperature", "ceiling_val"}`` (the best achievable 2AFC on val: mean max(h, 1-h)).
    """
    from lossnet.bench.similarity.synthetic import save_png, save_scalar

    root = Path(root)
    rng = np.random.default_rng(seed)
    sources = [s for s in _sources(image_dir) if min(s.shape[:2]) >= 64]
    n = n_train + n_val
    refs, p0s, p1s = [], [], []
    for _ in range(n):
        src = sources[rng.integers(len(sources))]
        top, left = rng.integers(0, src.shape[0] - 63), rng.integers(0, src.shape[1] - 63)
        ref = np.ascontiguousarray(src[top : top + 64, left : left + 64])
        refs.append(ref)
        p0s.append(distort(ref, DISTORTIONS[rng.integers(len(DISTORTIONS))], rng))
        p1s.append(distort(ref, DISTORTIONS[rng.integers(len(DISTORTIONS))], rng))

    def batch(arrs, s, e):
        return torch.from_numpy(np.stack(arrs[s:e]).transpose(0, 3, 1, 2).copy()).float() / 255.0

    d0, d1 = [], []
    with torch.inference_mode():
        for s in range(0, n, 64):
            r = batch(refs, s, s + 64)
            d0.append(metric(r, batch(p0s, s, s + 64)).double())
            d1.append(metric(r, batch(p1s, s, s + 64)).double())
    d0, d1 = torch.cat(d0).numpy(), torch.cat(d1).numpy()
    temperature = float(np.median(np.abs(d0 - d1))) / sharpness
    h = 1.0 / (1.0 + np.exp(-(d0 - d1) / temperature))
    for i in range(n):
        split, j = ("train", i) if i < n_train else ("val", i - n_train)
        d = root / "2afc" / split / subset
        name = f"{j:06d}"
        save_png(d / "ref" / f"{name}.png", refs[i])
        save_png(d / "p0" / f"{name}.png", p0s[i])
        save_png(d / "p1" / f"{name}.png", p1s[i])
        save_scalar(d / "judge" / f"{name}.npy", float(h[i]))
    hv = h[n_train:]
    return {"root": root, "temperature": temperature, "ceiling_val": float(np.mean(np.maximum(hv, 1 - hv))), "h": h}


def _main() -> None:  # pragma: no cover - the report's table
    import argparse
    import json
    import tempfile
    import time

    import lossnet  # noqa: F401
    from lossnet.bench.heads.fit import fit_heads
    from lossnet.bench.similarity.bapps import load_subset
    from lossnet.bench.similarity.evaluate import distances_2afc
    from lossnet.bench.similarity.scores import score_2afc
    from lossnet.loss import PerceptualMetric
    from lossnet.lpips_presets import get_preset

    ap = argparse.ArgumentParser()
    ap.add_argument("--weights-dir", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--nets", default="alexnet,vgg16")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--decay-epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    for net in args.nets.split(","):
        preset = {"alexnet": "lpips-alex", "vgg16": "lpips-vgg"}[net]
        layers = list(get_preset(preset).layers)
        w_file = str(Path(args.weights_dir) / f"{net}-imagenet1k-v1-features.safetensors")
        true = planted_heads(get_preset(preset).channels, seed=1)
        truth = PerceptualMetric(net=net, layers=layers, channel_weights=true, weights=w_file)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            info = write_planted_bapps(
                tmp, truth, image_dir=args.images, n_train=args.n_train, n_val=args.n_val, seed=2
            )
            res = fit_heads(
                dict(
                    net=net,
                    layers=",".join(layers),
                    weights=w_file,
                    data=tmp,
                    epochs=args.epochs,
                    decay_epochs=args.decay_epochs,
                    lr=args.lr,
                    val="split",
                ),
                Path(tmp) / "fitted.safetensors",
                progress=False,
            )
            fitted = np.concatenate([h.numpy() for h in res.heads])
            corr = float(np.corrcoef(fitted, np.concatenate([t.numpy() for t in true]))[0, 1])
            data = load_subset(tmp, "2afc", "val", "planted", progress=False)
            scores = {}
            for label, m in (
                ("unweighted", PerceptualMetric(net=net, layers=layers, weights=w_file)),
                ("fitted heads", PerceptualMetric(heads=res.path, weights=w_file)),
                (preset, PerceptualMetric(preset=preset, weights=w_file)),
                ("planted (truth)", truth),
            ):
                d0, d1 = distances_2afc(data, m.features, m.compare, progress=False)
                scores[label] = score_2afc(d0, d1, data.judgments)
            rows.append(
                {
                    "net": net,
                    "n_train": args.n_train,
                    "n_val": args.n_val,
                    "ceiling": info["ceiling_val"],
                    **scores,
                    "corr_heads": corr,
                    "seconds": time.time() - t0,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        from lossnet.atomic import atomic_write_json

        atomic_write_json(args.out, rows)


if __name__ == "__main__":  # pragma: no cover
    _main()

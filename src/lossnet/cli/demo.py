"""``lossnet demo``: perceptual distances on reference / distorted image triplets (the README's first command).

Without a folder the triplets are built from photographs that scikit-image (``lossnet[bench]``)
ships in its wheel: a 64x64 reference crop, a mildly blurred copy
(``p0``) and a noisy copy (``p1``). With a folder it reads ``ex_ref.png``, ``ex_p0.png``,
``ex_p1.png`` (the LPIPS example triplet layout). Weights: ``--weights-dir`` /
``$LOSSNET_WEIGHTS_DIR`` / torchvision's download (``--weights none`` runs offline with random
networks, which demonstrates the API but not the metric).
"""

from __future__ import annotations

#: (name, scikit-image loader, crop rows, crop cols): 128x128 crops downsampled to 64x64.
SAMPLES = (("astronaut", "astronaut", (30, 158), (170, 298)), ("coffee", "coffee", (150, 278), (200, 328)))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="perceptual distances of reference/distorted image triplets with AlexNet, VGG16, LPIPS (and DISTS)"
    )
    p.add_argument(
        "folder",
        nargs="?",
        help="folder with ex_ref.png, ex_p0.png, ex_p1.png (default: triplets built from "
        "scikit-image's sample photographs)",
    )
    p.add_argument("--weights-dir", help="folder with <arch>-imagenet1k-v1*.safetensors (default $LOSSNET_WEIGHTS_DIR)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default) or 'none' (random networks, offline)")
    p.add_argument("--no-signatures", action="store_true", help="do not print the reproducibility signatures")
    p.set_defaults(func=_demo)


def builtin_triplets():
    """``{name: (ref, p0, p1)}``: ``(1, 3, 64, 64)`` tensors in [0, 1] from scikit-image's sample
    photographs; p0 = Gaussian blur (sigma 1 px), p1 = Gaussian noise (sigma 0.08, fixed seed)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lossnet.extras import require

    require("bench", "lossnet demo without a folder (scikit-image's sample photographs)", ["skimage"])
    from skimage import data

    out = {}
    g = torch.Generator().manual_seed(0)
    for name, loader, rows, cols in SAMPLES:
        img = getattr(data, loader)()[rows[0] : rows[1], cols[0] : cols[1], :3]
        ref = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div(255.0)[None]
        ref = F.avg_pool2d(ref, 2)  # 128 -> 64 px
        k = torch.exp(-0.5 * torch.arange(-3, 4, dtype=torch.float32) ** 2)
        k = k / k.sum()
        blur = F.conv2d(
            F.pad(ref, (3, 3, 3, 3), mode="reflect"), (k[:, None] * k[None, :]).expand(3, 1, 7, 7), groups=3
        )
        noise = (ref + 0.08 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
        out[name] = (ref, blur.clamp(0, 1), noise)
    return out


def _folder_triplet(folder: str):
    from pathlib import Path

    from lossnet.imageio import load_image

    d = Path(folder)
    return {d.name or "folder": tuple(load_image(d / f"ex_{n}.png").unsqueeze(0) for n in ("ref", "p0", "p1"))}


def _demo(args) -> int:
    import torch

    from lossnet.cli.common import print_table
    from lossnet.loss import PerceptualMetric

    triplets = _folder_triplet(args.folder) if args.folder else builtin_triplets()
    weights = None if str(args.weights).lower() == "none" else args.weights
    configs = [("alexnet", "spatial", layer, None) for layer in "ESML"]
    configs += [("vgg16", "spatial", layer, None) for layer in "ESML"]
    configs += [(None, None, None, "lpips-alex"), (None, None, None, "lpips-vgg")]
    configs.append((None, None, None, "dists"))  # alpha/beta ship inside lossnet
    rows, signatures = [], {}
    for net, distance, layer, preset in configs:
        if preset:
            metric = PerceptualMetric(preset=preset, weights=weights, weights_dir=args.weights_dir)
        else:
            metric = PerceptualMetric(
                net=net, layers=(layer,), distance=distance, weights=weights, weights_dir=args.weights_dir
            )
        label = preset or f"{net} {layer}"
        signatures[label] = metric.signature
        with torch.inference_mode():
            for name, (ref, p0, p1) in triplets.items():
                fr = metric.features(ref)
                d0 = float(metric.compare(fr, metric.features(p0))[0])
                d1 = float(metric.compare(fr, metric.features(p1))[0])
                rows.append(
                    {
                        "images": name,
                        "loss network": label,
                        "distance": distance or preset.split("-")[0],
                        "d(ref,p0)": d0,
                        "d(ref,p1)": d1,
                        "closer": "p0" if d0 < d1 else "p1",
                    }
                )
    rows.sort(key=lambda r: list(triplets).index(r["images"]))
    if not args.folder:
        print("triplets from scikit-image's sample photographs: p0 = blurred (sigma 1 px), p1 = noisy (sigma 0.08)")
    print_table(rows)
    if not args.no_signatures:
        print("signatures:")
        for label, sig in signatures.items():
            print(f"  {label}: {sig}")
    return 0

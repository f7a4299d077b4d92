"""``lossnet demo``: perceptual distances on the LPIPS example triplet (the README's first command)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="distances ref-p0 / ref-p1 of the LPIPS example images with AlexNet and VGG16")
    p.add_argument("folder", help="folder with ex_ref.png, ex_p0.png, ex_p1.png")
    p.add_argument("--weights-dir", help="folder with <arch>-imagenet1k-v1*.safetensors (default $LOSSNET_WEIGHTS_DIR)")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from pathlib import Path

    import torch

    from lossnet.cli.common import print_table
    from lossnet.imageio import load_image
    from lossnet.loss import PerceptualMetric

    folder = Path(args.folder)
    ref, p0, p1 = (load_image(folder / f"ex_{n}.png").unsqueeze(0) for n in ("ref", "p0", "p1"))
    rows = []
    configs = [("alexnet", "spatial", layer, None) for layer in "ESML"]
    configs += [("vgg16", "spatial", layer, None) for layer in "ESML"]
    configs += [(None, None, None, "lpips-alex"), (None, None, None, "lpips-vgg")]
    for net, distance, layer, preset in configs:
        if preset:
            metric = PerceptualMetric(preset=preset, weights_dir=args.weights_dir)
        else:
            metric = PerceptualMetric(net=net, layers=(layer,), distance=distance, weights_dir=args.weights_dir)
        with torch.inference_mode():
            fr = metric.features(ref)
            d0 = float(metric.compare(fr, metric.features(p0))[0])
            d1 = float(metric.compare(fr, metric.features(p1))[0])
        rows.append({"loss network": preset or f"{net} {layer}", "distance": distance or "lpips", "d(ref,p0)": d0, "d(ref,p1)": d1,
                     "closer": "p0" if d0 < d1 else "p1"})
    print_table(rows)
    return 0

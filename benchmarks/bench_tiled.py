"""Exact tiled evaluation: value and peak memory of ``PerceptualMetric(..., tile=T)`` vs the whole image.

For each configuration (lpips-vgg, VGG16 layer L with the spatial distance, DISTS) the same seeded
1024x1024 pair (a random image and a 70/30 blend of it with another) is scored twice, each in a
fresh subprocess so that the peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
the whole process: Python, torch, the weights, the activations) of one evaluation is not hidden by
the other's: once on the whole image, once in T x T tiles. The values must agree to 1e-5.

The backbone weights are ../shared/weights (``LOSSNET_WEIGHTS_DIR``; ImageNet VGG16) when present,
else a seeded random init (``--weights none``).

Usage:  OMP_NUM_THREADS=1 python benchmarks/bench_tiled.py [--size 1024] [--tile 256] [--weights-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {
    "lpips-vgg": dict(preset="lpips-vgg"),
    "vgg16-L-spatial": dict(net="vgg16", layers="L", distance="spatial"),
    "dists": dict(preset="dists"),
}


def _child(config: str, size: int, tile: int | None, weights_dir: str | None) -> dict:
    import torch

    import lossnet  # noqa: F401  (before torchvision)
    from lossnet.loss import PerceptualMetric

    torch.manual_seed(0)  # the same random init in every process when there are no weights
    kw = dict(CONFIGS[config])
    kw.update(weights_dir=weights_dir) if weights_dir else kw.update(weights=None)
    metric = PerceptualMetric(tile=tile, **kw)
    g = torch.Generator().manual_seed(6)
    a = torch.rand(1, 3, size, size, generator=g)
    b = 0.7 * a + 0.3 * torch.rand(1, 3, size, size, generator=g)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    value = float(metric(a, b)[0])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "config": config,
        "tile": tile,
        "value": value,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_before_eval_mib": round(rss_before / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--weights-dir", default=os.environ.get("LOSSNET_WEIGHTS_DIR"))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-tile", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.weights_dir and not Path(args.weights_dir).is_dir():
        args.weights_dir = None
    if args.child:
        print(json.dumps(_child(args.child, args.size, args.child_tile or None, args.weights_dir)))
        return 0

    rows, worst = [], 0.0
    for config in args.configs.split(","):
        pair = []
        for tile in (0, args.tile):
            cmd = [sys.executable, __file__, "--child", config, "--child-tile", str(tile), "--size", str(args.size)]
            if args.weights_dir:
                cmd += ["--weights-dir", args.weights_dir]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            pair.append(json.loads(out.strip().splitlines()[-1]))
        whole, tiled = pair
        diff = abs(whole["value"] - tiled["value"])
        worst = max(worst, diff)
        rows.append((config, whole, tiled, diff))
    print(
        f"{args.size}x{args.size}, tile {args.tile}, weights: {args.weights_dir or 'random (seeded)'}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"{'config':18s} {'whole value':>12s} {'tiled value':>12s} {'|diff|':>9s} {'whole peak MiB':>15s} "
        f"{'tiled peak MiB':>15s} {'before eval MiB':>16s} {'whole s':>8s} {'tiled s':>8s}"
    )
    for config, whole, tiled, diff in rows:
        print(
            f"{config:18s} {whole['value']:12.7f} {tiled['value']:12.7f} {diff:9.2e} {whole['peak_rss_mib']:15.1f} "
            f"{tiled['peak_rss_mib']:15.1f} {whole['rss_before_eval_mib']:16.1f} {whole['seconds']:8.2f} {tiled['seconds']:8.2f}"
        )
    print(f"max |diff| = {worst:.2e} ({'<= 1e-5: OK' if worst <= 1e-5 else '> 1e-5: FAIL'})")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

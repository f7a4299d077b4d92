"""Perceptual-loss training-step throughput on CPU (fp32): lossnet vs lpips vs piq.

One "step" = loss forward on (pred, target) + backward to pred, the cost a perceptual loss adds to
a training step. Compared at equal work:

* ``lpips-vgg``: ``lossnet.loss.PerceptualLoss(preset="lpips-vgg")`` vs ``lpips.LPIPS(net="vgg")``
  (same 5 VGG16 layers relu1_2..relu5_3, same backbone weights, same v0.1 linear heads).
* ``content relu2_2``: ``PerceptualLoss("vgg16", ["relu2_2"], distance="mse")`` vs
  ``piq.ContentLoss(layers=("relu2_2",))`` (same VGG16 weights).

Backbone weights: ../shared/weights/vgg16-imagenet1k-v1-features.safetensors when present (else
random, copied into every implementation); nothing is downloaded (``lpips`` is built with
``pnet_rand=True``, piq gets the torchvision ``vgg16().features`` module it would otherwise
download). All implementations are timed interleaved in one process (repeat r: a, b, c, ...),
medians reported. Values are cross-checked before timing.

Run (quiet machine): ``OMP_NUM_THREADS=2 python benchmarks/bench_loss.py``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import lossnet  # noqa: F401  (torchvision shim before lpips/piq import torchvision)
import torch

from lossnet.loss import PerceptualLoss

SHARED_VGG = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16-imagenet1k-v1-features.safetensors"
VGG16_RELU2_2 = "8"  # index of relu2_2 in torchvision vgg16().features


def vgg16_state(path: Path | None) -> dict[str, torch.Tensor]:
    from torchvision.models import vgg16

    if path is not None and path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path))
    torch.manual_seed(0)
    return {k: v for k, v in vgg16(weights=None).state_dict().items() if k.startswith("features.")}


def lpips_vgg(state: dict[str, torch.Tensor]):
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    for slice_name, sl in ref.net.named_children():
        if slice_name.startswith("slice"):
            for idx, module in sl.named_children():
                own = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"features.{idx}.")}
                if own:
                    module.load_state_dict(own)
    return lambda pred, target: ref(pred, target, normalize=True).mean()


def piq_content(state: dict[str, torch.Tensor]):
    import piq
    from torchvision.models import vgg16

    features = vgg16(weights=None).features
    features.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()})
    return piq.ContentLoss(feature_extractor=features.eval(), layers=(VGG16_RELU2_2,), weights=[1.0], distance="mse", reduction="mean")


def step(fn, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = x.clone().requires_grad_()
    t0 = time.perf_counter()
    loss = fn(pred, y)
    loss.backward()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--weights", type=Path, default=SHARED_VGG, help="VGG16 features state dict (safetensors)")
    ap.add_argument("--configs", default="64x32,256x4", help="SIZExBATCH list")
    args = ap.parse_args(argv)

    state = vgg16_state(args.weights)
    wsrc = str(args.weights) if args.weights and args.weights.is_file() else "random (seed 0)"
    wfile = args.weights if args.weights and args.weights.is_file() else None
    if wfile is None:
        import tempfile

        from safetensors.torch import save_file

        wfile = Path(tempfile.mkdtemp()) / "vgg16.safetensors"
        save_file(state, str(wfile))

    ours_lpips = PerceptualLoss(preset="lpips-vgg", weights=wfile)
    ours_lpips_nchw = PerceptualLoss(preset="lpips-vgg", weights=wfile, channels_last=False)
    ours_content = PerceptualLoss("vgg16", ["relu2_2"], distance="mse", weights=wfile)
    ours_content_nchw = PerceptualLoss("vgg16", ["relu2_2"], distance="mse", weights=wfile, channels_last=False)
    # piq sums over channels what we average: scale ours by C = 128 so both compute the same number
    C = 128
    groups = {
        "lpips-vgg (5 layers)": ("lpips", lpips_vgg(state), ours_lpips, ours_lpips_nchw, 1.0),
        "content relu2_2": ("piq", piq_content(state), ours_content, ours_content_nchw, float(C)),
    }

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, weights {wsrc}")
    rows = []
    for cfg in args.configs.split(","):
        size, batch = (int(v) for v in cfg.split("x"))
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 3, size, size, generator=g)
        y = (x + 0.1 * torch.randn(batch, 3, size, size, generator=g)).clamp(0, 1)
        for gname, (anchor, anchor_fn, ours, ours_nchw, scale) in groups.items():
            cached = ours.target_features(y)  # "target features once": a fixed target reused across steps
            impls = {
                anchor: anchor_fn,
                "lossnet": lambda p, t, f=ours, s=scale: f(p, t) * s,
                "lossnet NCHW": lambda p, t, f=ours_nchw, s=scale: f(p, t) * s,
                "lossnet cached target": lambda p, t, f=ours, c=cached, s=scale: f(p, c) * s,
            }
            with torch.no_grad():
                vals = {k: float(fn(x, y)) for k, fn in impls.items()}
            for _ in range(args.warmup):
                for fn in impls.values():
                    step(fn, x, y)
            times: dict[str, list[float]] = {k: [] for k in impls}
            for _ in range(args.repeats):
                for k, fn in impls.items():
                    times[k].append(step(fn, x, y))
            med = {k: statistics.median(v) for k, v in times.items()}
            for k in impls:
                rows.append({
                    "comparison": gname, "input": f"{size}x{size} b{batch}", "impl": k,
                    "img/s": batch / med[k], f"x vs anchor": med[anchor] / med[k],
                    "|value - anchor|": abs(vals[k] - vals[anchor]),
                    "spread": (max(times[k]) - min(times[k])) / med[k],
                })
            print(f"  done {gname} {size}x{size} b{batch}", file=sys.stderr, flush=True)

    cols = ["comparison", "input", "impl", "img/s", "x vs anchor", "|value - anchor|", "spread"]
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(_fmt(r[c]).ljust(widths[c]) for c in cols))
    print(f"(median of {args.repeats} interleaved fwd+bwd steps after {args.warmup} warm-up; "
          "x vs anchor = anchor time / impl time; spread = (max-min)/median of the impl's steps)")
    return 0


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if (v != 0 and abs(v) < 1e-3) else f"{v:.2f}"
    return str(v)


if __name__ == "__main__":
    sys.exit(main())

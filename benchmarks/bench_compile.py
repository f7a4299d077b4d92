"""``torch.compile`` of ``PerceptualLoss``: graph breaks per ``range_check`` mode, compiled vs eager
value and gradient, and training-step time (forward + backward to pred).

For every mode: ``torch._dynamo.explain`` graph-break count on the loss call. For the chosen
configurations (default: VGG16 relu2_2 mse = Johnson et al.'s content loss, and the lpips-vgg
preset): max |compiled - eager| of the loss and of the gradient, then eager and compiled steps
timed interleaved (repeat r: eager, compiled), medians reported. Inductor on CPU by default
(``--device cuda`` on a GPU machine, where ``torch.cuda.set_sync_debug_mode("error")`` also shows
that the clamp/off/error modes make no host sync per step).

Backbone weights: ../shared/weights/vgg16-imagenet1k-v1-features.safetensors when present, else
random (the timing does not depend on the values).

Run (quiet machine): ``OMP_NUM_THREADS=2 python benchmarks/bench_compile.py [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import lossnet  # noqa: F401  (torchvision shim first)
from lossnet.loss import RANGE_CHECKS, PerceptualLoss

SHARED = Path(__file__).resolve().parents[2] / "shared" / "weights"

CONFIGS = {
    "vgg16-relu2_2-mse": dict(net="vgg16", layers=("relu2_2",), distance="mse"),
    "lpips-vgg": dict(preset="lpips-vgg"),
    "alexnet-L-spatial": dict(net="alexnet", layers=("L",), distance="spatial"),
}


def _weights(cfg: dict) -> dict:
    arch = cfg.get("net") or {"lpips-vgg": "vgg16", "lpips-alex": "alexnet"}.get(cfg.get("preset"), "vgg16")
    has = any(SHARED.glob(f"{arch}-imagenet1k-v1*")) if SHARED.is_dir() else False
    return dict(weights="imagenet", weights_dir=SHARED) if has else dict(weights=None)


def graph_breaks(cfg: dict, device: str, size: int) -> dict[str, int]:
    out = {}
    for mode in RANGE_CHECKS:
        torch.manual_seed(0)
        fn = PerceptualLoss(**cfg, **_weights(cfg), range_check=mode).to(device)
        a = torch.rand(2, 3, size, size, device=device)
        b = torch.rand(2, 3, size, size, device=device)
        torch._dynamo.reset()
        out[mode] = torch._dynamo.explain(fn)(a, b).graph_break_count
    return out


def _step(fn, pred, target):
    x = pred.detach().requires_grad_()
    loss = fn(x, target)
    loss.backward()
    return loss.detach(), x.grad


def compare(cfg: dict, device: str, batch: int, size: int, repeats: int, mode: str) -> dict:
    torch.manual_seed(0)
    eager = PerceptualLoss(**cfg, **_weights(cfg), range_check=mode).to(device)
    torch._dynamo.reset()
    compiled = torch.compile(eager)
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(batch, 3, size, size, generator=g).to(device)
    target = torch.rand(batch, 3, size, size, generator=g).to(device)
    t0 = time.perf_counter()
    lc, gc = _step(compiled, pred, target)  # compiles
    compile_s = time.perf_counter() - t0
    le, ge = _step(eager, pred, target)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda") and mode != "warn":
        torch.cuda.set_sync_debug_mode("error")  # any host sync inside the compiled step raises
        try:
            _step(compiled, pred, target)
            host_sync = "none"
        except RuntimeError as exc:
            host_sync = f"sync: {str(exc).splitlines()[0][:80]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    else:
        host_sync = "n/a (cpu)" if not device.startswith("cuda") else "n/a"
    times = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for name, fn in (("eager", eager), ("compiled", compiled)):
            sync()
            t = time.perf_counter()
            _step(fn, pred, target)
            sync()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {
        "loss_eager": float(le),
        "loss_abs_diff": float((lc - le).abs().max()),
        "loss_rel_diff": float((lc - le).abs().max() / le.abs().clamp_min(1e-30)),
        "grad_abs_diff": float((gc - ge).abs().max()),
        "grad_scale": float(ge.abs().max()),
        "eager_ms": med["eager"],
        "compiled_ms": med["compiled"],
        "speedup": med["eager"] / med["compiled"],
        "compile_s": compile_s,
        "host_sync_in_compiled_step": host_sync,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--configs", default="vgg16-relu2_2-mse,lpips-vgg", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--mode", default="clamp", choices=RANGE_CHECKS, help="range_check mode of the timed loss")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    results = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "batch": args.batch,
        "size": args.size,
        "configs": {},
    }
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        breaks = graph_breaks(cfg, args.device, args.size)
        res = compare(cfg, args.device, args.batch, args.size, args.repeats, args.mode)
        results["configs"][name] = {"graph_breaks": breaks, **res}
        print(f"{name}: graph breaks {breaks}")
        print(
            f"  range_check={args.mode}: loss {res['loss_eager']:.6g}  |loss c-e| {res['loss_abs_diff']:.2e} "
            f"(rel {res['loss_rel_diff']:.1e})  |grad c-e| {res['grad_abs_diff']:.2e} "
            f"(max |grad| {res['grad_scale']:.2e})  eager {res['eager_ms']:.1f} ms  compiled {res['compiled_ms']:.1f} ms  "
            f"x{res['speedup']:.2f}  (compile {res['compile_s']:.0f} s; host sync in compiled step: {res['host_sync_in_compiled_step']})"
        )
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""PerceptualLoss training-step cost vs the bare-torchvision limit, lpips and piq.

One "step" = loss forward on (pred, target) + backward to pred: the cost a perceptual loss adds to
a training step (the loss network is frozen, so no weight gradients anywhere). Implementations:

* ``ours``: ``PerceptualLoss("vgg16", ["relu2_2"], distance="mse")`` (Johnson et al.'s content loss;
  ``range_check="clamp"``, the default: one clamp + a NaN/Inf check per image).
* ``limit``: the same truncated network by hand -- torchvision ``vgg16().features[:9]``, ImageNet
  normalisation, ``F.mse_loss``, the target under ``torch.no_grad`` -- the fastest plain-autograd
  form of the same computation. ``limit ms / ours ms`` is the figure of merit (>= 0.95 wanted).
* ``piq``: ``piq.ContentLoss(layers=("relu2_2",))`` on the same VGG16 weights.
* ``ours-lpips``: ``PerceptualLoss(preset="lpips-vgg")`` vs ``lpips``: ``lpips.LPIPS(net="vgg")``
  (5 layers relu1_2..relu5_3, v0.1 heads; ``--anchors`` picks which of lpips/piq run).

Variants (every implementation of a variant runs the same way):

* ``fp32``: NCHW, float32 (ours with ``channels_last=False``).
* ``channels_last``: NHWC, float32 (ours' default; the limit/anchors' modules and inputs converted).
* ``bf16``: NHWC under ``torch.autocast(dtype=torch.bfloat16)``.
* ``compile``: NHWC, float32, ``torch.compile`` of ours and of the limit (anchors are not compiled
  unless ``--compile-anchors``); the compile time is reported separately.

Timing: all implementations of a (case, variant) run interleaved, one step each per round, the
order rotated every round; each round gives the ratio ``other ms / ours ms`` (> 1: ours faster),
and the table shows the median [min-max] of those per-round ratios, plus median step times. Peak
memory of one step per implementation afterwards (untimed): on CUDA ``max_memory_allocated`` above
the allocation before the step; on CPU the peak resident set size above the RSS before the step,
sampled every 0.5 ms by a thread, with glibc's mmap threshold fixed at 64 KiB so freed tensors go
back to the OS (RSS then follows the live tensors). Values are cross-checked before timing.

Backbone weights: ../shared/weights/vgg16-imagenet1k-v1-features.safetensors when present, else
random (seed 0); copied into every implementation (speed does not depend on the values). Nothing
is downloaded (``lpips`` is built with ``pnet_rand=True``, piq gets the torchvision module).

Run (quiet machine)::

    OMP_NUM_THREADS=2 python benchmarks/bench_loss.py --sizes 64x32,256x4,512x1 \\
        --variants fp32,channels_last,bf16,compile --rounds 9 --json bench_loss.json
    python benchmarks/bench_loss.py --device cuda --rounds 20

``--profile CASE:VARIANT`` (e.g. ``256x4:fp32``) prints a torch.profiler table of ours and the limit.
The module's functions are reused by ``benchmarks/gpu_check.py`` (kept to torch >= 2.1 APIs).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import lossnet  # noqa: F401  (torchvision shim before lpips/piq import torchvision)

SHARED_VGG = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16-imagenet1k-v1-features.safetensors"
VGG16_RELU2_2 = 8  # index of relu2_2 in torchvision vgg16().features
VARIANTS = ("fp32", "channels_last", "bf16", "compile")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------- weights


def vgg16_state(path: Path | None = SHARED_VGG) -> tuple[dict[str, torch.Tensor], str]:
    """VGG16 ``features.*`` state dict: the shared file when readable, else random (seed 0)."""
    if path is not None and Path(path).is_file():
        try:
            from safetensors.torch import load_file

            return load_file(str(path)), str(path)
        except Exception:  # noqa: BLE001, S110 -- no safetensors: random weights time the same
            pass
    from torchvision.models import vgg16

    torch.manual_seed(0)
    state = {k: v for k, v in vgg16(weights=None).state_dict().items() if k.startswith("features.")}
    return state, "random (seed 0)"


def _load_features(body: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = body.state_dict()
    body.load_state_dict({k: state[k] for k in own}, strict=True)


# ---------------------------------------------------------------------------------- implementations


class BareContent(nn.Module):
    """The limit: torchvision ``vgg16().features[:9]`` + ImageNet normalisation + ``F.mse_loss``."""

    def __init__(self, state: dict[str, torch.Tensor], depth: int = VGG16_RELU2_2 + 1) -> None:
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features[:depth].eval().requires_grad_(False)
        self.features.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if int(k.split(".")[1]) < depth})
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self.features((target - self.mean) / self.std)
        fp = self.features((pred - self.mean) / self.std)
        return F.mse_loss(fp, ft)


def ours_content(state, channels_last: bool) -> nn.Module:
    from lossnet.loss import PerceptualLoss

    m = PerceptualLoss("vgg16", ["relu2_2"], distance="mse", weights=None, channels_last=channels_last)
    _load_features(m.network.body, state)
    return m


def ours_lpips(state, channels_last: bool) -> nn.Module:
    from lossnet.loss import PerceptualLoss

    m = PerceptualLoss(preset="lpips-vgg", weights=None, channels_last=channels_last)
    _load_features(m.network.body, state)
    return m


def lpips_vgg(state) -> nn.Module:
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval().requires_grad_(False)
    for slice_name, sl in ref.net.named_children():
        if slice_name.startswith("slice"):
            for idx, module in sl.named_children():
                own = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"features.{idx}.")}
                if own:
                    module.load_state_dict(own)

    class LpipsLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.ref = ref

        def forward(self, pred, target):
            return self.ref(pred, target, normalize=True).mean()

    return LpipsLoss()


def piq_content(state) -> nn.Module:
    import piq
    from torchvision.models import vgg16

    features = vgg16(weights=None).features
    features.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()})
    return piq.ContentLoss(
        feature_extractor=features.eval(), layers=(str(VGG16_RELU2_2),), weights=[1.0], distance="mse", reduction="mean"
    )


#: name -> (group, builder(state, channels_last), the implementation it is compared with, value scale vs that)
#: piq sums over channels what we average (C = 128 at relu2_2): its value is ours x 128.
IMPLS = {
    "ours": ("content", lambda s, cl: ours_content(s, cl), None, 1.0),
    "limit": ("content", lambda s, cl: BareContent(s), "ours", 1.0),
    "piq": ("content", lambda s, cl: piq_content(s), "ours", 128.0),
    "ours-lpips": ("lpips", lambda s, cl: ours_lpips(s, cl), None, 1.0),
    "lpips": ("lpips", lambda s, cl: lpips_vgg(s), "ours-lpips", 1.0),
}
ANCHOR_IMPLS = {"lpips": ("ours-lpips", "lpips"), "piq": ("piq",)}


def build_impls(
    state, variant: str, device: str, anchors=("lpips", "piq"), compile_anchors: bool = False, log=print
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """``{name: module}`` of the variant on ``device``; ``{name: why}`` for those that could not be built."""
    channels_last = variant != "fp32"
    names = ["ours", "limit"] + [n for a in anchors for n in ANCHOR_IMPLS.get(a, ())]
    mods, missing = {}, {}
    for name in names:
        try:
            m = IMPLS[name][1](state, channels_last).to(device)
        except ImportError as exc:
            missing[name] = f"absent ({exc.name or exc})"
            continue
        except Exception as exc:  # noqa: BLE001 -- one missing piece must not stop the rest
            missing[name] = f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
            continue
        if channels_last and not name.startswith("ours"):
            m = m.to(memory_format=torch.channels_last)
        mods[name] = m
    if variant == "compile":
        for name in list(mods):
            if name in ("ours", "limit") or compile_anchors:
                try:
                    mods[name] = torch.compile(mods[name])
                except Exception as exc:  # noqa: BLE001 -- compile unavailable on this torch/platform
                    missing[name] = f"compile unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
                    del mods[name]
            else:
                del mods[name]
    return mods, missing


# ---------------------------------------------------------------------------------- timing / memory


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _amp(variant: str, device: str):
    if variant == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step(fn, x: torch.Tensor, y: torch.Tensor, variant: str, device: str) -> float:
    """Seconds of one forward + backward to ``pred``."""
    pred = x.detach().clone().requires_grad_()
    _sync(device)
    t0 = time.perf_counter()
    with _amp(variant, device):
        loss = fn(pred, y)
    loss.backward()
    _sync(device)
    return time.perf_counter() - t0


def _set_mmap_threshold() -> bool:
    """glibc: serve every allocation >= 64 KiB by mmap, so freed tensors leave the RSS at once."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_step_memory(fn, x, y, variant: str, device: str) -> float | None:
    """MiB a step needs above what was allocated before it (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(fn, x, y, variant, device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if not os.path.exists("/proc/self/statm"):
        return None
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    base = _rss()
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        step(fn, x, y, variant, device)
    finally:
        stop.set()
        t.join()
    return max(0, max(peak[0], _rss()) - base) / 2**20


def inputs(size: int, batch: int, device: str, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = (x + 0.1 * torch.randn(batch, 3, size, size, generator=g)).clamp(0, 1)
    x, y = x.to(device), y.to(device)
    if channels_last:
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    return x, y


def run_case(
    state,
    size: int,
    batch: int,
    variant: str,
    device: str,
    rounds: int,
    warmup: int,
    anchors=("lpips", "piq"),
    compile_anchors: bool = False,
    memory: bool = True,
    log=print,
) -> list[dict]:
    """Rows (one per implementation) of one (size, batch, variant)."""
    torch.manual_seed(0)
    if variant == "compile":
        torch._dynamo.reset()
    mods, missing = build_impls(state, variant, device, anchors, compile_anchors)
    x, y = inputs(size, batch, device, variant != "fp32")
    case = f"{size}x{size} b{batch}"
    rows = [{"case": case, "variant": variant, "impl": k, "status": why} for k, why in missing.items()]
    # values (and, for compile, the compile time)
    vals, first = {}, {}
    for name, fn in list(mods.items()):
        try:
            first[name] = step(fn, x, y, variant, device)
            with torch.no_grad(), _amp(variant, device):
                vals[name] = float(fn(x, y))
        except Exception as exc:  # noqa: BLE001
            rows.append(
                {
                    "case": case,
                    "variant": variant,
                    "impl": name,
                    "status": f"failed ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})",
                }
            )
            del mods[name]
    for _ in range(warmup):
        for fn in mods.values():
            step(fn, x, y, variant, device)
    names = list(mods)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no implementation always goes first
        for name in order:
            times[name].append(step(mods[name], x, y, variant, device))
    mem = {}
    if memory:
        for name in names:
            mem[name] = peak_step_memory(mods[name], x, y, variant, device)
    for name in names:
        ref = IMPLS[name][2]
        row = {
            "case": case,
            "variant": variant,
            "impl": name,
            "status": "ok",
            "ms": 1000 * statistics.median(times[name]),
            "times_ms": [1000 * t for t in times[name]],
            "value": vals[name],
            "peak_mib": mem.get(name),
        }
        if variant == "compile":
            row["first_step_s"] = first[name]
        if ref is not None and ref in times:
            ratios = [o / s for o, s in zip(times[name], times[ref])]  # > 1: ours faster
            row.update(
                vs=ref,
                ref_ms=1000 * statistics.median(times[ref]),
                ratio=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                value_diff=abs(vals[name] - IMPLS[name][3] * vals[ref]) / max(abs(vals[name]), 1e-30),
            )
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """case, variant, ours ms, other ms, ratio (other / ours) median [min-max], peak memory."""
    head = [
        "case",
        "variant",
        "ours",
        "ours ms",
        "vs",
        "vs ms",
        "vs/ours median [min-max]",
        "peak MiB ours / vs",
        "rel |dvalue|",
    ]
    lines = []
    by_key = {(r["case"], r["variant"], r["impl"]): r for r in rows}
    for r in rows:
        if r.get("status") != "ok":
            if not r["impl"].startswith("ours"):
                lines.append([r["case"], r["variant"], "", "", r["impl"], r["status"], "", "", ""])
            continue
        if "vs" not in r:
            continue
        o = by_key[(r["case"], r["variant"], r["vs"])]
        mem = "/".join("-" if m is None else f"{m:.0f}" for m in (o.get("peak_mib"), r.get("peak_mib")))
        lines.append(
            [
                r["case"],
                r["variant"],
                r["vs"],
                f"{o['ms']:.1f}",
                r["impl"],
                f"{r['ms']:.1f}",
                f"{r['ratio']:.3f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]",
                mem,
                f"{r['value_diff']:.1e}",
            ]
        )
    widths = [max(len(h), *(len(str(line[i])) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def profile_case(state, size: int, batch: int, variant: str, device: str, steps: int = 5, row_limit: int = 25) -> str:
    """torch.profiler tables (self CPU time) of ours and the limit, for finding our overhead."""
    from torch.profiler import ProfilerActivity, profile

    mods, _ = build_impls(state, variant, device, anchors=())
    x, y = inputs(size, batch, device, variant != "fp32")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    out = []
    for name, fn in mods.items():
        for _ in range(2):
            step(fn, x, y, variant, device)
        with profile(activities=acts) as prof:
            for _ in range(steps):
                step(fn, x, y, variant, device)
        key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
        out.append(
            f"== {name} ({size}x{size} b{batch}, {variant}, {steps} steps)\n"
            + prof.key_averages().table(sort_by=key, row_limit=row_limit)
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64x32,256x4,512x1", help="SIZExBATCH list")
    ap.add_argument(
        "--variants", default="fp32,channels_last,bf16,compile", help=f"comma list of {', '.join(VARIANTS)}"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--anchors", default="lpips,piq", help="lpips,piq or none")
    ap.add_argument(
        "--compile-anchors", action="store_true", help="also torch.compile lpips/piq in the compile variant"
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory steps")
    ap.add_argument("--weights", type=Path, default=SHARED_VGG, help="VGG16 features state dict (safetensors)")
    ap.add_argument(
        "--profile", metavar="SIZExBATCH:VARIANT", help="print a torch.profiler table of ours and the limit and exit"
    )
    ap.add_argument("--json", metavar="OUT", help="write every row (with per-round times) here")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    mmap_fixed = _set_mmap_threshold() if args.device == "cpu" else False
    state, wsrc = vgg16_state(args.weights)
    anchors = tuple(a for a in args.anchors.split(",") if a and a != "none")
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    header = (
        f"torch {torch.__version__}, device {args.device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if args.device.startswith('cuda') else ''}, "
        f"threads {torch.get_num_threads()}, weights {wsrc}, rounds {args.rounds}"
    )
    print(header, flush=True)
    if args.profile:
        cfg, variant = args.profile.split(":")
        size, batch = (int(v) for v in cfg.split("x"))
        print(profile_case(state, size, batch, variant, args.device))
        return 0
    rows: list[dict] = []
    for cfg in args.sizes.split(","):
        size, batch = (int(v) for v in cfg.split("x"))
        for variant in variants:
            t0 = time.perf_counter()
            new = run_case(
                state,
                size,
                batch,
                variant,
                args.device,
                args.rounds,
                args.warmup,
                anchors,
                args.compile_anchors,
                not args.no_memory,
            )
            rows += new
            print(f"  done {cfg} {variant} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(format_table(rows))
    print(
        f"(ratio = other ms / ours ms per interleaved round, median [min-max] of {args.rounds} rounds after "
        f"{args.warmup} warm-up; > 1: ours faster. peak MiB: "
        f"{'CUDA max_memory_allocated' if args.device.startswith('cuda') else 'peak RSS'} above the step's start"
        f"{'' if args.device.startswith('cuda') or mmap_fixed else ' (mmap threshold not set: RSS may underestimate)'}; "
        "rel |dvalue|: value vs the reference implementation)"
    )
    for r in rows:
        if r.get("first_step_s") is not None and r["impl"] in ("ours", "limit"):
            print(f"compile {r['case']}: {r['impl']} first step (compile) {r['first_step_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One prepared device check (<= 10 minutes): loss speed, super-resolution s/step, GPU-hour projection, AMP agreement.

Sections (each runs in its own subprocess with its own time cap, prints its own result and writes
``<section>.json`` as it goes, so a timeout or a missing package costs that section only):

``env``        torch / torchvision / lossnet / lpips / piq versions or 'absent', device name.
``loss``       ``benchmarks/bench_loss.py`` on the device: PerceptualLoss (vgg16 relu2_2 mse, and the
               lpips-vgg preset) vs the bare-torchvision limit, lpips and piq at 64x32, 256x4, 512x1;
               variants fp32, channels_last, bf16 autocast, torch.compile (compile last; cases that do
               not fit in the cap are reported as 'skipped (time cap)').
``superres``   seconds per training step of the super-resolution ``paper`` preset (config resolved
               through ``get_benchmark('superres').resolve_config``: 288x288 HR crops, batch 4,
               TransformNet with 4 blocks, Adam) for vgg16 E, vgg16 L and resnet50 L at fp32 and
               bf16: the step of ``SuperresTask.train_epoch`` (autocast forward, finite check,
               zero_grad/backward/step, ``loss.item()``) on synthetic batches already on the device
               -- data decoding excluded, random loss-network weights (speed does not depend on them).
``estimate``   projected GPU-hours of the paper grid: ``python -m lossnet sweep estimate
               examples/sweeps/paper_full.toml --device DEV --width 1 --json F`` when that command and
               grid exist; always also our own projection of the super-resolution part from the
               measured s/step (112 runs = 56 loss networks x 2 scales, x paper steps per run).
``agreement``  AMP vs fp32: the super-resolution benchmark's own ``train()`` (trainer core, resolved
               paper preset, random loss-network weights, synthetic images in a temp dir), same seed,
               500 steps each at ``amp=off`` and ``amp=bf16``; validation Y-PSNR difference (<= 0.1 dB
               wanted).

``--device cpu --tiny`` runs every section on toy sizes in about a minute (mechanics only: the
numbers mean nothing). Results: stdout, and ``gpu_check.json`` (all sections) under ``--out`` or
``$OUT``. Written for the device machine's older torch (>= 2.1 APIs; compile guarded).

Run: ``benchmarks/gpu_check.sh`` (device) or ``python benchmarks/gpu_check.py --device cpu --tiny``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ("env", "loss", "superres", "estimate", "agreement")
#: per-section wall-clock caps in seconds (full run; --tiny uses TINY_CAPS); sum + start-up < 600
CAPS = {"env": 20, "loss": 200, "superres": 100, "estimate": 45, "agreement": 150}
TINY_CAPS = {
    "env": 60,
    "loss": 120,
    "superres": 90,
    "estimate": 60,
    "agreement": 90,
}  # env/estimate import torch+lpips+piq: 30 s was exceeded on a loaded 2-core CI machine
SR_NETS = (("vgg16", "E"), ("vgg16", "L"), ("resnet50", "L"))
SR_PRECISIONS = ("off", "bf16")
PAPER_RUNS_SUPERRES = 112  # 56 loss networks (14 architectures x E/S/M/L) x scales 4 and 8


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


# ---------------------------------------------------------------------------------- sections


def section_env(args, res: dict, save) -> None:
    import torch

    res["python"] = sys.version.split()[0]
    res["torch"] = torch.__version__
    res["device"] = args.device
    res["cuda_available"] = torch.cuda.is_available()
    if args.device.startswith("cuda") and torch.cuda.is_available():
        res["gpu"] = torch.cuda.get_device_name()
        res["bf16_supported"] = torch.cuda.is_bf16_supported()
    res["threads"] = torch.get_num_threads()
    for mod in (
        "lossnet",
        "torchvision",
        "lpips",
        "piq",
        "safetensors",
        "torchmetrics",
        "tqdm",
        "numpy",
        "PIL",
        "skimage",
    ):
        try:
            if mod != "lossnet":
                import lossnet  # noqa: F401  (torchvision shim first)
            m = __import__(mod)
            res[mod] = getattr(m, "__version__", "present")
        except Exception as exc:  # noqa: BLE001
            res[mod] = f"absent ({_err(exc)})"
    res["compile"] = "present" if hasattr(torch, "compile") else "unavailable"
    save()
    for k, v in res.items():
        if k != "status":
            print(f"  {k}: {v}")


def section_loss(args, res: dict, save) -> None:
    sys.path.insert(0, str(HERE))
    import bench_loss as bl
    import torch

    state, wsrc = bl.vgg16_state(None)  # random weights: timing only
    res["weights"] = wsrc
    if args.tiny:
        sizes, variants, rounds, warmup = [(32, 1)], ["fp32", "bf16"], 1, 0
        res["compile"] = "skipped (--tiny: compiling takes minutes on a CPU)"
    else:
        sizes, variants, rounds, warmup = (
            [(64, 32), (256, 4), (512, 1)],
            ["fp32", "channels_last", "bf16", "compile"],
            15,
            3,
        )
        if not hasattr(torch, "compile"):
            variants.remove("compile")
            res["compile"] = "unavailable (no torch.compile)"
    res["rounds"] = rounds
    rows = res.setdefault("rows", [])
    deadline = time.monotonic() + args.cap - 5
    cases = [(s, b, v) for v in variants for (s, b) in sizes]  # compile last: it is the slowest to start
    for size, batch, variant in cases:
        if time.monotonic() > deadline - (60 if variant == "compile" else 10):
            rows.append(
                {"case": f"{size}x{size} b{batch}", "variant": variant, "impl": "ours", "status": "skipped (time cap)"}
            )
            print(f"  {size}x{size} b{batch} {variant}: skipped (time cap)", flush=True)
            save()
            continue
        t0 = time.monotonic()
        try:
            new = bl.run_case(state, size, batch, variant, args.device, rounds, warmup)
        except Exception as exc:  # noqa: BLE001 -- e.g. compile failing on this torch
            new = [
                {
                    "case": f"{size}x{size} b{batch}",
                    "variant": variant,
                    "impl": "ours",
                    "status": f"failed ({_err(exc)})",
                }
            ]
        for r in new:
            r.pop("times_ms", None)
        rows += new
        save()
        print(f"  {size}x{size} b{batch} {variant}: {time.monotonic() - t0:.0f} s", flush=True)
    print(bl.format_table(rows))
    for r in rows:
        if r.get("impl") in ("ours", "limit") and r.get("first_step_s") is not None:
            print(f"  compile {r['case']}: {r['impl']} first step (compile) {r['first_step_s']:.1f} s")


def _sr_config(args, net: str, layer: str, amp: str, train_dir: str, test_dir: str, **over):
    """The superres benchmark's config object (``SuperresConfig``) of the paper preset with these values."""
    from lossnet.bench.base import get_benchmark

    partial = {
        "preset": "paper",
        "net": net,
        "layer": layer,
        "weights": "none",
        "amp": amp,
        "device": args.device,
        "train": [train_dir],
        "test": {"synthetic": test_dir},
        "allow_stand_in": True,  # synthetic images stand in for COCO: the paper preset refuses them otherwise
        **over,
    }
    if args.tiny:
        partial.update(crop=32, batch_size=2, num_blocks=1, channels=8, pipeline="crops", val_crop=32)
    bench = get_benchmark("superres")
    return bench.config_object(bench.resolve_config(partial))


def _synthetic_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """Smooth coloured sinusoids (as tests/bench/superres/test_superres.py makes them), PNG (torch + PIL only)."""
    import torch
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    for i in range(n):
        f = 1 + 5 * torch.rand(3, generator=g)
        img = torch.stack(
            [0.5 + 0.4 * torch.sin(2 * math.pi * (f[c] * xx + f[(c + 1) % 3] * yy) + i) for c in range(3)], -1
        )
        data = (
            (img * 255).to(torch.uint8).contiguous().numpy().tobytes()
            if _has_numpy()
            else bytes((img * 255).to(torch.uint8).flatten().tolist())
        )
        Image.frombytes("RGB", (size, size), data).save(folder / f"im{i:03d}.png")


def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401

        return True
    except ImportError:
        return False


def time_sr_step(config, steps: int, warmup: int) -> dict:
    """Seconds per super-resolution training step of ``config`` on synthetic batches on the device."""
    import torch

    from lossnet.bench.base import build_training_loss
    from lossnet.bench.superres.model import TransformNet

    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer core sets it
    torch.manual_seed(config.seed)
    model = TransformNet(
        scale=config.scale,
        num_blocks=config.num_blocks,
        channels=config.channels,
        skip=config.skip,
        output_bn=config.output_bn,
    ).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = build_training_loss(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    amp = config.amp
    scaler = torch.cuda.amp.GradScaler() if amp == "fp16" else None
    crop, batch = config.crop, config.batch_size
    hr = torch.rand(batch, 3, crop, crop, device=device)
    lr = torch.nn.functional.avg_pool2d(hr, config.scale)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def one() -> None:
        ctx = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
            if amp != "off"
            else _null()
        )
        with ctx:
            loss = loss_fn(model(lr), hr)
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        loss.item()

    for _ in range(warmup):
        one()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        one()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    out = {"s_per_step": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "steps": steps}
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def section_superres(args, res: dict, save) -> None:
    import torch

    steps, warmup = (1, 1) if args.tiny else (20, 5)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_sr_", dir=args.workdir))
    _synthetic_images(tmp / "img", 3, 64)
    rows = res.setdefault("rows", [])
    deadline = time.monotonic() + args.cap - 5
    for amp in SR_PRECISIONS:
        for net, layer in SR_NETS:
            key = f"{net} {layer} amp={amp}"
            if time.monotonic() > deadline - 10:
                rows.append({"run": key, "status": "skipped (time cap)"})
                continue
            try:
                cfg = _sr_config(args, net, layer, amp, str(tmp / "img"), str(tmp / "img"))
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                r = time_sr_step(cfg, steps, warmup)
                row = {
                    "run": key,
                    "status": "ok",
                    **r,
                    "crop": cfg.crop,
                    "batch": cfg.batch_size,
                    "steps_per_run": cfg.epochs * cfg.iters_per_epoch,
                }
            except Exception as exc:  # noqa: BLE001
                row = {"run": key, "status": f"failed ({_err(exc)})"}
            rows.append(row)
            save()
            if row["status"] == "ok":
                peak = ", peak {:.0f} MiB".format(row["peak_mib"]) if "peak_mib" in row else ""
                print(
                    f"  {key}: {row['s_per_step'] * 1000:.1f} ms/step [{row['min_s'] * 1000:.1f}-{row['max_s'] * 1000:.1f}] "
                    f"({row['crop']}x{row['crop']} b{row['batch']}{peak})",
                    flush=True,
                )
            else:
                print(f"  {key}: {row['status']}", flush=True)


def own_projection(sr_rows: list[dict]) -> dict:
    """GPU-hours of the paper's super-resolution runs from measured s/step (one device, no overlap)."""
    out = {
        "covers": f"super-resolution only: {PAPER_RUNS_SUPERRES} runs (56 loss networks x scales 4, 8) x the paper "
        "preset's steps per run x measured s/step of the training step (data loading, validation, "
        "test and the other 3 benchmarks excluded)"
    }
    for amp in SR_PRECISIONS:
        ok = [r for r in sr_rows if r.get("status") == "ok" and r["run"].endswith(f"amp={amp}")]
        if not ok:
            continue
        steps = ok[0]["steps_per_run"]
        per = [r["s_per_step"] for r in ok]
        hours = [PAPER_RUNS_SUPERRES * steps * s / 3600 for s in per]
        out[f"amp={amp}"] = {
            "steps_per_run": steps,
            "gpu_hours_mean": sum(hours) / len(hours),
            "gpu_hours_min": min(hours),
            "gpu_hours_max": max(hours),
            "from": [r["run"] for r in ok],
        }
    return out


def section_estimate(args, res: dict, save) -> None:
    sr_file = Path(args.workdir) / "superres.json"
    sr_rows = json.loads(sr_file.read_text()).get("rows", []) if sr_file.is_file() else []
    res["own"] = own_projection(sr_rows)
    save()
    grid = ROOT / "examples" / "sweeps" / "paper_full.toml"
    est = ROOT / "src" / "lossnet" / "sweep" / "estimate.py"
    if args.tiny:
        res["sweep_estimate"] = "skipped (--tiny: timing the full grid takes minutes)"
    elif not (grid.is_file() and est.is_file()):
        res["sweep_estimate"] = (
            f"unavailable ({'no ' + str(grid.relative_to(ROOT)) if not grid.is_file() else 'no lossnet sweep estimate'})"
        )
    else:
        out = Path(args.workdir) / "sweep_estimate.json"
        cmd = [
            sys.executable,
            "-m",
            "lossnet",
            "sweep",
            "estimate",
            str(grid),
            "--device",
            args.device.split(":")[0],
            "--width",
            "1",
            "--steps",
            "3",
            "--no-progress",
            "--json",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        try:
            p = subprocess.run(
                cmd, check=False, capture_output=True, text=True, timeout=max(5, args.cap - 10), env=env, cwd=ROOT
            )
            res["sweep_estimate_cmd"] = " ".join(cmd[1:])
            if p.returncode == 0 and out.is_file():
                res["sweep_estimate"] = json.loads(out.read_text())
                res["sweep_estimate_stdout"] = p.stdout[-3000:]
            else:
                res["sweep_estimate"] = (
                    f"failed (rc {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:] or ''})"
                )
        except subprocess.TimeoutExpired:
            res["sweep_estimate"] = "failed (time cap)"
    save()
    for k, v in res["own"].items():
        print(f"  own projection {k}: {v}")
    se = res["sweep_estimate"]
    print(f"  lossnet sweep estimate: {se if isinstance(se, str) else json.dumps(se)[:1500]}")


def _y_psnr(sr, hr, border: int) -> float:
    """BT.601 Y-PSNR (data range 255) of 8-bit-quantised images, ``border`` pixels cropped: the
    benchmark's ``y_psnr`` without torchmetrics."""
    import torch

    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64).view(1, 3, 1, 1)
    q = lambda x: (x.detach().double().clamp(0, 1) * 255).round() / 255
    y = lambda x: (16.0 + (q(x) * w).sum(1))[..., border:-border, border:-border]
    mse = float(((y(sr) - y(hr)) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def agreement_fallback(config, steps: int, val_hr) -> tuple[float, str]:
    """Without the benchmark's trainer (its torchmetrics/tqdm absent): the same model, loss,
    optimiser, autocast and seed in a plain loop on seeded synthetic batches; best-of-one
    validation Y-PSNR after ``steps`` steps."""
    import torch

    from lossnet.bench.base import build_training_loss
    from lossnet.bench.superres.degrade import degrade
    from lossnet.bench.superres.model import TransformNet

    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = TransformNet(
        scale=config.scale,
        num_blocks=config.num_blocks,
        channels=config.channels,
        skip=config.skip,
        output_bn=config.output_bn,
    ).to(device)
    loss_fn = build_training_loss(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(config.seed)
    crop, scale, amp = config.crop, config.scale, config.amp
    for _ in range(steps):
        i = torch.randint(0, len(_POOL), (config.batch_size,), generator=g)
        hr = torch.stack([_POOL[int(k)] for k in i])
        top, left = (int(v) for v in torch.randint(0, hr.shape[-1] - crop + 1, (2,), generator=g))
        hr = hr[..., top : top + crop, left : left + crop]
        lr = degrade(hr, scale)
        ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp == "bf16" else _null()
        with ctx:
            loss = loss_fn(model(lr.to(device)), hr.to(device))
        if not torch.isfinite(loss):
            return float("nan"), "diverged"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        scores = [_y_psnr(model(degrade(h, scale)[None].to(device)).cpu(), h[None], scale) for h in val_hr]
    return sum(scores) / len(scores), "done"


_POOL: list = []


def _load_images(folder: Path):
    import torch
    from PIL import Image

    out = []
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            im = im.convert("RGB")
            out.append(
                torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
                .view(im.size[1], im.size[0], 3)
                .permute(2, 0, 1)
                .float()
                / 255
            )
    return out


def section_agreement(args, res: dict, save) -> None:
    import torch

    try:
        from lossnet.bench.superres.train import train
    except ImportError as exc:  # the device may lack torchmetrics / tqdm: same training, own loop
        train = None
        res["path"] = f"fallback loop ({_err(exc)})"
    else:
        res["path"] = "lossnet.bench.superres.train.train (trainer core)"

    steps = 5 if args.tiny else 500
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_amp_", dir=args.workdir))
    size = 40 if args.tiny else 320
    _synthetic_images(tmp / "train", 4 if args.tiny else 24, size)
    _synthetic_images(tmp / "val", 1 if args.tiny else 4, size, seed=1)
    res.update(steps=steps, net="vgg16 E", seed=42)
    amps = ("off", "bf16")
    if args.device.startswith("cuda") and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        amps = ("off", "fp16")
    psnr = {}
    for amp in amps:
        cfg = _sr_config(
            args,
            "vgg16",
            "E",
            amp,
            str(tmp / "train"),
            str(tmp / "val"),
            val=str(tmp / "val"),
            val_images=1 if args.tiny else 4,
            epochs=1,
            iters_per_epoch=steps,
        )
        t0 = time.monotonic()
        if train is not None:
            _, outcome = train(cfg, tmp / f"w_{amp}", progress=False)
            psnr[amp], status = float(outcome.best_score), outcome.status
        else:
            if not _POOL:
                _POOL.extend(_load_images(tmp / "train"))
            val_hr = [h[:, : cfg.val_crop, : cfg.val_crop] for h in _load_images(tmp / "val")]
            cfg.crop = min(cfg.crop, size)
            psnr[amp], status = agreement_fallback(cfg, steps, val_hr)
        res[f"val_psnr_{amp}"] = psnr[amp]
        res[f"seconds_{amp}"] = time.monotonic() - t0
        res[f"status_{amp}"] = status
        save()
        print(
            f"  amp={amp}: val Y-PSNR {psnr[amp]:.3f} dB after {steps} steps ({status}, {res[f'seconds_{amp}']:.0f} s)",
            flush=True,
        )
    diff = abs(psnr[amps[1]] - psnr["off"])
    res["psnr_diff_db"] = diff
    res["within_0.1_db"] = bool(math.isfinite(diff) and diff <= 0.1)
    save()
    print(
        f"  |PSNR({amps[1]}) - PSNR(fp32)| = {diff:.3f} dB -> {'within' if res['within_0.1_db'] else 'NOT within'} 0.1 dB"
    )


FUNCS = {
    "env": section_env,
    "loss": section_loss,
    "superres": section_superres,
    "estimate": section_estimate,
    "agreement": section_agreement,
}


def run_section(args) -> int:
    """Child process: one section, results saved to ``<workdir>/<section>.json`` after each piece."""
    path = Path(args.workdir) / f"{args.section}.json"
    res: dict = {"status": "running"}
    save = lambda: _write(path, res)
    save()
    warnings_off()
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # mechanics only; keeps a loaded CI machine usable
    try:
        FUNCS[args.section](args, res, save)
        res["status"] = "ok"
    except ImportError as exc:
        res["status"] = f"absent ({_err(exc)})"
        print(f"  {res['status']}")
    except Exception as exc:  # noqa: BLE001
        res["status"] = f"failed ({_err(exc)})"
        res["traceback"] = traceback.format_exc()[-3000:]
        print(f"  {res['status']}\n{res['traceback']}")
    save()
    return 0


def warnings_off() -> None:
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--tiny", action="store_true", help="toy sizes: checks the mechanics in about a minute")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json (default $OUT)")
    ap.add_argument("--section", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--cap", type=float, default=60, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.section:
        import lossnet  # noqa: F401  (torchvision shim first)

        return run_section(args)

    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    caps = TINY_CAPS if args.tiny else CAPS
    report = {"device": args.device, "tiny": args.tiny, "caps_s": caps, "sections": {}}
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH")] if p),
        "TQDM_DISABLE": "1",
    }
    for name in [s for s in args.sections.split(",") if s]:
        if name not in FUNCS:
            ap.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        print(f"== {name} (cap {caps[name]} s)", flush=True)
        t0 = time.monotonic()
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--section",
            name,
            "--workdir",
            str(workdir),
            "--device",
            args.device,
            "--cap",
            str(caps[name]),
        ] + (["--tiny"] if args.tiny else [])
        try:
            p = subprocess.run(cmd, check=False, env=env, timeout=caps[name] + 10, cwd=ROOT)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        path = workdir / f"{name}.json"
        sec = json.loads(path.read_text()) if path.is_file() else {"status": "no result"}
        if rc == "timeout":
            sec["status"] = f"time cap ({caps[name]} s) reached; partial results kept"
        elif rc != 0 and sec.get("status") in ("running", None):
            sec["status"] = f"crashed (exit code {rc})"
        sec["seconds"] = round(time.monotonic() - t0, 1)
        report["sections"][name] = sec
        print(f"-- {name}: {sec['status']} ({sec['seconds']} s)", flush=True)
        report["total_s"] = round(time.monotonic() - t_start, 1)
        if out_dir:
            _write(out_dir / "gpu_check.json", report)
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)  # section JSONs are in the report; images and checkpoints go
    print(f"== total {report['total_s']} s" + (f"; results in {out_dir / 'gpu_check.json'}" if out_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

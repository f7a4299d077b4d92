"""Throughput of the BAPPS 2AFC evaluation: lossnet's loop vs the LPIPS authors' loop.

Both score the same synthetic BAPPS-format folder (all six 2AFC val subsets) with AlexNet
relu1..relu5 and the unweighted ``spatial`` distance (= ``lpips.LPIPS(lpips=False)``, the
"baseline" of the lpips package) and the same backbone weights (../shared AlexNet when present,
else one random init copied into both), so nothing downloads and the 2AFC scores must agree.

Anchor ("lpips"): the LPIPS authors' evaluation -- their ``TwoAFCDataset`` (PIL decode,
``transforms.Resize(64)``, ``ToTensor``, ``Normalize`` to [-1, 1]; the pip package does not ship
``lpips.data``, so the class is reproduced here line for line from
github.com/richzhang/PerceptualSimilarity ``data/dataset/twoafc_dataset.py``) in a DataLoader with
batch 50 (``test_dataset_model.py``'s default), and ``lpips.trainer.score_2afc_dataset`` calling
the model twice per triplet (4 backbone passes).

Ours ("lossnet"): ``bapps.load_subsets`` (PNG decode straight into uint8 NHWC arrays -- libpng
through imagecodecs when installed, ``lossnet[fast-png]``, else Pillow; ``LOSSNET_PNG_DECODER=pillow``
forces Pillow --, judgment .npy headers parsed once, the next subset decoded in a background thread
while the current one is scored; ``--workers`` decoding threads) + ``distances_2afc`` (3 backbone
passes per triplet, ``torch.inference_mode``) + ``scores.score_2afc``; "cold" includes decoding the
files, "warm" reuses the in-process decoded cache (what a 56-configuration sweep sees after the
first run).

Usage:  OMP_NUM_THREADS=2 python benchmarks/bench_bapps.py [--n 200] [--repeats 3] [--batch 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lossnet  # noqa: F401  (torchvision shim before lpips)
from lossnet.bench.similarity import bapps, scores
from lossnet.bench.similarity.evaluate import build_metric, distances_2afc
from lossnet.bench.similarity.synthetic import write_synthetic_bapps

SHARED = Path(os.environ.get("LOSSNET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5")


class TwoAFCDataset(torch.utils.data.Dataset):
    """The LPIPS authors' TwoAFCDataset (PerceptualSimilarity ``data/dataset/twoafc_dataset.py``)."""

    def __init__(self, dataroot: str, load_size: int = 64) -> None:
        import torchvision.transforms as transforms

        def make_dataset(d, exts):
            return sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(exts))

        img = (".png", ".jpg", ".jpeg", ".bmp")
        self.ref_paths = make_dataset(os.path.join(dataroot, "ref"), img)
        self.p0_paths = make_dataset(os.path.join(dataroot, "p0"), img)
        self.p1_paths = make_dataset(os.path.join(dataroot, "p1"), img)
        self.judge_paths = make_dataset(os.path.join(dataroot, "judge"), (".npy",))
        self.transform = transforms.Compose(
            [
                transforms.Resize(load_size),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        )

    def __getitem__(self, index):
        from PIL import Image

        p0 = self.transform(Image.open(self.p0_paths[index]).convert("RGB"))
        p1 = self.transform(Image.open(self.p1_paths[index]).convert("RGB"))
        ref = self.transform(Image.open(self.ref_paths[index]).convert("RGB"))
        judge = torch.FloatTensor(np.load(self.judge_paths[index]).reshape((1, 1, 1)))
        return {"p0": p0, "p1": p1, "ref": ref, "judge": judge}

    def __len__(self) -> int:
        return len(self.p0_paths)


class CustomDatasetDataLoader:
    """The authors' loader wrapper: ``load_data()`` returns a serial DataLoader."""

    def __init__(self, dataroot: str, batch_size: int, n_threads: int) -> None:
        self.dataloader = torch.utils.data.DataLoader(
            TwoAFCDataset(dataroot), batch_size=batch_size, shuffle=False, num_workers=n_threads
        )

    def load_data(self):
        return self.dataloader


def lpips_model(weights_file: Path | None):
    import lpips

    model = lpips.LPIPS(net="alex", lpips=False, pnet_rand=True, verbose=False).eval()
    if weights_file is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
        for k in range(1, 6):
            for name, module in getattr(model.net, f"slice{k}").named_children():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.data.copy_(state[f"features.{name}.weight"])
                    module.bias.data.copy_(state[f"features.{name}.bias"])
    return model


def alexnet_weights_file(tmp: Path) -> Path:
    shared = SHARED / "weights" / "alexnet-imagenet1k-v1-features.safetensors"
    if shared.exists():
        return shared
    from lossnet.network import LossNetwork
    from lossnet.weights import save_safetensors

    torch.manual_seed(0)
    path = tmp / "alexnet-random.safetensors"
    save_safetensors(path, {k: v for k, v in LossNetwork("alexnet", "relu5", weights=None).body.state_dict().items()})
    return path


def run_lpips(root: Path, model, batch: int, workers: int) -> tuple[float, dict[str, float]]:
    import lpips.trainer
    from lpips.trainer import score_2afc_dataset

    lpips.trainer.tqdm = lambda it, **kw: it  # no progress bar in the timed anchor (a tiny saving for it)
    t = time.perf_counter()
    out = {}
    for subset in bapps.SUBSETS_2AFC_VAL:
        loader = CustomDatasetDataLoader(str(root / "2afc" / "val" / subset), batch, workers)
        out[subset], _ = score_2afc_dataset(loader, model.forward, name=subset)
    return time.perf_counter() - t, out


def run_ours(root: Path, metric, batch: int, workers: int, cold: bool) -> tuple[float, dict[str, float]]:
    if cold:
        bapps.clear_cache()
    t = time.perf_counter()
    out = {}
    requests = [("2afc", "val", subset) for subset in bapps.SUBSETS_2AFC_VAL]
    for data in bapps.load_subsets(root, requests, num_workers=workers, progress=False):
        d0, d1 = distances_2afc(data, metric.features, metric.compare, batch_size=batch, progress=False)
        out[data.subset] = scores.score_2afc(d0, d1, data.judgments)
    return time.perf_counter() - t, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="triplets per subset (6 subsets)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader worker processes of the lpips loop = decoding threads of ours",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: OMP_NUM_THREADS)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        source = SHARED / "data" / "sr" / "bsd100"
        root = write_synthetic_bapps(
            tmp / "BAPPS", n_2afc=args.n, n_jnd=0, subsets_jnd=(), source_dir=source if source.is_dir() else None
        )
        wfile = alexnet_weights_file(tmp)
        theirs = lpips_model(wfile)
        ours = build_metric("alexnet", LAYERS, "spatial", weights=str(wfile))
        n = args.n * len(bapps.SUBSETS_2AFC_VAL)

        # warm-up (thread pools, allocator), not timed
        run_lpips(root, theirs, args.batch, args.workers)
        run_ours(root, ours, args.batch, args.workers, cold=True)

        times = {"lpips": [], "lossnet cold": [], "lossnet warm": []}
        results = {}
        for _ in range(args.repeats):  # interleaved so load changes hit all variants alike
            t, results["lpips"] = run_lpips(root, theirs, args.batch, args.workers)
            times["lpips"].append(t)
            t, results["lossnet cold"] = run_ours(root, ours, args.batch, args.workers, cold=True)
            times["lossnet cold"].append(t)
            t, results["lossnet warm"] = run_ours(root, ours, args.batch, args.workers, cold=False)
            times["lossnet warm"].append(t)

    print(
        f"BAPPS 2AFC evaluation, synthetic val set: {n} triplets (6 subsets x {args.n}), 64x64, alexnet relu1-5 spatial,"
    )
    print(
        f"batch {args.batch}, workers {args.workers}, torch threads {torch.get_num_threads()}, "
        f"weights {wfile.name}, {args.repeats} interleaved repeats"
    )
    print(f"lossnet PNG decoder: {'libpng (imagecodecs)' if bapps.png_codec() else 'Pillow'}")
    print("speed-up = median over repeats of t(lpips) / t(loop) within the repeat [min-max]")
    print()
    print(f"{'loop':<14} {'median s':>8} {'triplets/s':>11} {'speed-up':>9} {'range':>13} {'mean 2AFC':>10}")
    for name, ts in times.items():
        t = statistics.median(ts)
        ratios = [a / b for a, b in zip(times["lpips"], ts)]
        span = f"[{min(ratios):.2f}-{max(ratios):.2f}]"
        print(
            f"{name:<14} {t:>8.3f} {n / t:>11.1f} {statistics.median(ratios):>8.2f}x {span:>13} "
            f"{np.mean(list(results[name].values())):>10.6f}"
        )
    diff = max(abs(results["lpips"][s] - results["lossnet cold"][s]) for s in results["lpips"])
    print()
    print(f"max |2AFC(lossnet) - 2AFC(lpips)| over subsets: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

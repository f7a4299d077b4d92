"""Cost of lossnet's wrapper around a timm backbone: ``PerceptualLoss(net="timm:convnext_tiny")``
vs the same timm model called bare (issue #28).

One "step" = loss forward on (pred, target) + backward to pred (the network is frozen):

* ``ours``: ``PerceptualLoss("timm:convnext_tiny", layers="S,M,L", distance="mse", weights=None)``
  (S/M/L = stages.0/1/3; the default ``channels_last=True`` unless ``--nchw``).
* ``bare``: ``timm.create_model("convnext_tiny", features_only=True, out_indices=(0, 1, 3))`` with
  the same weights, ImageNet normalisation, the target's features under ``torch.no_grad``, and the
  sum of ``F.mse_loss`` per stage -- the plain-autograd form of the same computation.

Timing: the two run interleaved, one step each per round, the order alternating; each round gives
``bare ms / ours ms`` (>= 0.95 wanted: ours at most ~5% slower), reported as the median [min-max]
over rounds with the median step times. Values (loss and input gradient) are cross-checked first.

Run (CPU)::

    OMP_NUM_THREADS=1 python benchmarks/bench_timm.py --cases 64x32,224x4 --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import lossnet  # noqa: E402,F401  (before torchvision/timm: see DEVELOPERS.md)

ARCH = "convnext_tiny"
OUT_INDICES = (0, 1, 3)  # stages.0, stages.1, stages.3 = lossnet's S, M, L for ConvNeXt


def _bare_key(key: str, own: set[str]) -> str:
    # FeatureListNet names top-level modules "stem_0", "stages_1" where the model has "stem.0", "stages.1"
    if key in own:
        return key
    head, _, rest = key.partition(".")
    return head.replace("_", ".", 1) + ("." + rest if rest else "")


def build(nchw: bool):
    import timm

    from lossnet import PerceptualLoss

    torch.manual_seed(0)
    ours = PerceptualLoss(
        f"timm:{ARCH}", layers="S,M,L", distance="mse", weights=None, channels_last=False if nchw else None
    )
    bare = timm.create_model(ARCH, features_only=True, out_indices=OUT_INDICES).eval().requires_grad_(False)
    own = ours.network.body.state_dict()
    state = {k: own[_bare_key(k, set(own))] for k in bare.state_dict()}
    bare.load_state_dict(state)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)

    def bare_loss(pred, target):
        with torch.no_grad():
            ft = bare((target - mean) / std)
        fp = bare((pred - mean) / std)
        return sum(F.mse_loss(a, b) for a, b in zip(fp, ft))

    return ours, bare_loss


def step(fn, pred, target) -> float:
    p = pred.clone().requires_grad_(True)
    t0 = time.perf_counter()
    fn(p, target).backward()
    return time.perf_counter() - t0


def run_case(size: int, batch: int, rounds: int, nchw: bool) -> dict:
    ours, bare = build(nchw)
    torch.manual_seed(1)
    pred, target = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)
    # cross-check: the same loss and input gradient
    pa, pb = pred.clone().requires_grad_(True), pred.clone().requires_grad_(True)
    la, lb = ours(pa, target), bare(pb, target)
    la.backward()
    lb.backward()
    loss_rel = abs(la.item() - lb.item()) / abs(lb.item())
    grad_rel = ((pa.grad - pb.grad).norm() / pb.grad.norm()).item()
    assert loss_rel < 1e-4 and grad_rel < 1e-3, (loss_rel, grad_rel)
    for _ in range(2):  # warm-up
        step(ours, pred, target), step(bare, pred, target)
    t_ours, t_bare, ratios = [], [], []
    for r in range(rounds):
        order = (ours, bare) if r % 2 == 0 else (bare, ours)
        times = {id(fn): step(fn, pred, target) for fn in order}
        t_ours.append(times[id(ours)])
        t_bare.append(times[id(bare)])
        ratios.append(times[id(bare)] / times[id(ours)])
    return {
        "case": f"{size}x{batch}",
        "ours_ms": 1e3 * statistics.median(t_ours),
        "bare_ms": 1e3 * statistics.median(t_bare),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "loss_rel_diff": loss_rel,
        "grad_rel_diff": grad_rel,
        "rounds": rounds,
        "layout": "nchw" if nchw else "channels_last",
        "extraction": ours.network.extraction,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="64x32,224x4", help="SIZExBATCH list")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--nchw", action="store_true", help="ours with channels_last=False (NCHW, as bare)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    rows = []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for case in args.cases.split(","):
        size, batch = (int(v) for v in case.split("x"))
        row = run_case(size, batch, args.rounds, args.nchw)
        rows.append(row)
        print(
            f"{row['case']:>7} {row['layout']:>13} ours {row['ours_ms']:8.1f} ms  bare {row['bare_ms']:8.1f} ms  "
            f"bare/ours {row['ratio_median']:.3f} [{row['ratio_min']:.3f}-{row['ratio_max']:.3f}]  "
            f"(loss rel diff {row['loss_rel_diff']:.1e}, grad rel diff {row['grad_rel_diff']:.1e}, {row['extraction']})",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

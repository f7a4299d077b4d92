"""``lossnet heads``: fit, export and inspect calibrated LPIPS-style heads (:mod:`lossnet.heads`).

lossnet heads fit --net resnet18 --layers E,S,M,L --data BAPPS -o resnet18-heads.safetensors
lossnet heads fit --net vgg16 --layers E,S,M,L --judgments mine.csv -o vgg16-mine.safetensors
lossnet heads export-lpips --net alex -o lpips-alex.safetensors
lossnet heads show resnet18-heads.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "heads",
        help="fit / export / show calibrated LPIPS-style channel heads",
        description="Calibrated per-channel heads of the spatial distance (LPIPS's 'lin' layers) for any backbone.",
    )
    sub = p.add_subparsers(dest="heads_command", metavar="ACTION")

    f = sub.add_parser(
        "fit",
        help="fit heads on 2AFC judgments (BAPPS or a CSV), Zhang et al.'s protocol",
        description="Fit non-negative channel heads and a ranking network on 2AFC judgments (lpips's trainer "
        "protocol) with checkpoint/resume; writes a heads file.",
    )
    f.add_argument("--net", required=True, help="backbone architecture (any torchvision classification model)")
    f.add_argument(
        "--layers", "--layer", dest="layers", default="E,S,M,L", help="comma-separated layers (default E,S,M,L)"
    )
    src = f.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="BAPPS folder (ROOT/2afc/<split>/<subset>/{ref,p0,p1,judge})")
    src.add_argument("--judgments", help="CSV with columns ref,p0,p1,judgment (image paths relative to the CSV)")
    f.add_argument("-o", "--out", required=True, help="heads file to write (.safetensors)")
    f.add_argument("--split", default="train", help="BAPPS split to train on (default train)")
    f.add_argument("--subsets", help="comma-separated 2AFC subsets (default: every folder of the split)")
    f.add_argument("--epochs", type=int, default=5, help="epochs at the full learning rate (default 5)")
    f.add_argument(
        "--decay-epochs", type=int, default=5, help="epochs of linear learning-rate decay after them (default 5)"
    )
    f.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    f.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (default 0.5, as lpips)")
    f.add_argument("--batch-size", type=int, default=50, help="triplets per step (default 50)")
    f.add_argument("--dropout", type=float, default=0.5, help="dropout before the heads (default 0.5, as lpips)")
    f.add_argument("--size", type=int, default=64, help="patch side length (default 64)")
    f.add_argument("--weights", default="imagenet", help="'imagenet' (default), 'none' (random) or a state-dict file")
    f.add_argument(
        "--weights-dir", help="folder with local ImageNet weights (else $LOSSNET_WEIGHTS_DIR, then download)"
    )
    f.add_argument("--normalize", default="imagenet", choices=("imagenet", "none"), help="backbone input normalisation")
    f.add_argument(
        "--val",
        default="auto",
        choices=("auto", "split", "holdout", "none"),
        help="validation per epoch: auto (BAPPS 2afc/val if present, else holdout), split, holdout, none",
    )
    f.add_argument(
        "--val-fraction", type=float, default=0.05, help="held-out fraction with --val holdout (default 0.05)"
    )
    f.add_argument("--val-max-items", type=int, help="at most this many val triplets per subset (seeded choice)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--skip-bad", action="store_true", help="skip undecodable triplets instead of failing")
    f.add_argument("--workdir", help="checkpoint folder (default OUT.run/); a killed fit resumes from it")
    f.add_argument("--device", help="torch device (default cpu)")
    f.add_argument("--num-workers", type=int, help="DataLoader worker processes (default 0)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.add_argument(
        "--amp",
        default="off",
        choices=("off", "bf16", "fp16"),
        help="mixed precision of the training passes (fp16 with a gradient scaler; default off)",
    )
    f.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format for the backbone (default on)",
    )
    f.set_defaults(func=_fit)

    e = sub.add_parser("export-lpips", help="write the lpips package's v0.1 heads as a heads file")
    e.add_argument("--net", required=True, choices=("alex", "vgg", "squeeze"), help="lpips trunk")
    e.add_argument("-o", "--out", required=True, help="heads file to write (.safetensors)")
    e.set_defaults(func=_export)

    s = sub.add_parser("show", help="print a heads file's metadata (and per-layer head statistics)")
    s.add_argument("file", help="heads file")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lossnet.extras import require

    require("bench", "lossnet heads fit")  # fitting is a training task of the application
    from lossnet.bench.heads.fit import fit_heads
    from lossnet.devices import resolve_device
    from lossnet.errors import DataError
    from lossnet.outputs import check_output_dir, check_output_file

    # outputs, device and inputs are checked before any work (weights, decoding, epochs), as lossnet
    # bench does: a bad -o must not cost a finished fit, nor --device end in a raw torch error
    check_output_file(args.out, "-o/--out")
    check_output_dir(args.workdir or f"{args.out}.run", "--workdir" if args.workdir else "checkpoint folder")
    if args.device:  # not given: fit_heads uses the CPU
        resolve_device({"device": args.device})
    if args.judgments is not None and not Path(args.judgments).is_file():
        raise DataError(f"judgments CSV not found: {args.judgments}")
    if args.data is not None and not Path(args.data).is_dir():
        raise DataError(f"BAPPS folder not found: {args.data}")
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()] if args.subsets else None
    result = fit_heads(
        dict(
            net=args.net,
            layers=args.layers,
            weights=args.weights,
            weights_dir=args.weights_dir,
            normalize=args.normalize,
            data=args.data,
            judgments=args.judgments,
            split=args.split,
            subsets=subsets,
            epochs=args.epochs,
            decay_epochs=args.decay_epochs,
            lr=args.lr,
            beta1=args.beta1,
            batch_size=args.batch_size,
            dropout=args.dropout,
            size=args.size,
            seed=args.seed,
            val=args.val,
            val_fraction=args.val_fraction,
            val_max_items=args.val_max_items,
            skip_bad=args.skip_bad,
            device=args.device,
            num_workers=args.num_workers,
            amp=args.amp,
            channels_last=args.channels_last,
        ),
        args.out,
        workdir=args.workdir,
        progress=not args.no_progress,
        log=lambda line: print(f"lossnet heads: {line}", file=sys.stderr),
    )
    val = f", validation 2AFC {result.val_2afc:.4f}" if result.val_2afc is not None else ""
    if result.path is None:
        print(f"lossnet heads: fit {result.status} before any epoch finished; no heads written", file=sys.stderr)
        return 1
    print(f"lossnet heads: wrote {result.path} ({result.status}{val})", file=sys.stderr)
    return 0 if result.status == "done" else 1


def _export(args: argparse.Namespace) -> int:
    from lossnet.heads.file import export_lpips_heads
    from lossnet.outputs import check_output_file

    check_output_file(args.out, "-o/--out")  # before the lpips heads are read, as lossnet bench checks first
    path = export_lpips_heads(args.net, args.out)
    print(f"lossnet heads: wrote {path}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    from lossnet.heads.file import load_heads

    h = load_heads(args.file)
    meta = {
        **h.metadata(),
        "heads": [
            {
                "layer": name,
                "channels": int(w.numel()),
                "mean": float(w.mean()),
                "max": float(w.max()),
                "zeros": int((w == 0).sum()),
            }
            for name, w in zip(h.layers, h.weights)
        ],
    }
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    for k, v in meta.items():
        if k != "heads":
            print(f"{k}: {v}")
    for row in meta["heads"]:
        print(
            f"  {row['layer']}: {row['channels']} channels, mean {row['mean']:.4g}, max {row['max']:.4g}, {row['zeros']} zero"
        )
    return 0

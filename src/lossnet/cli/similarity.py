"""``lossnet similarity``: perceptual distance between two images, or between two folders of images.

    lossnet similarity A.png B.png                       # LPIPS (lpips-alex) by default
    lossnet similarity A.png B.png --net vgg16 --layer relu2_2,relu3_3 --distance mse
    lossnet similarity --dir0 D0 --dir1 D1 -o out.csv    # pairs files by name (stem)
    lossnet similarity A.png B.png --preset dists         # DISTS (needs dists-pytorch)
    lossnet similarity A.png B.png --preset lpips-vgg --tile 256   # a large image, exactly, in tiles

Every score comes with the metric's reproducibility signature (:mod:`lossnet.signature`): on
stderr for a pair, in a ``signature`` column of the folder-mode CSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from lossnet.errors import InputError, LossnetError

__all__ = ["register", "run", "DISTANCE_CHOICES"]

_INPUT_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}

#: The keys of :data:`lossnet.distances.DISTANCES`, spelled out so that building the parser does
#: not import torch (a test checks they agree).
DISTANCE_CHOICES = ("adists", "dists", "gram", "l1", "meanpool", "mse", "spatial")
#: :data:`lossnet.loss.RANGE_CHECKS`, spelled out for the same reason.
RANGE_CHECK_CHOICES = ("error", "warn", "clamp", "off")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from lossnet.dists_preset import DISTS_PRESET
    from lossnet.lpips_presets import PRESETS
    from lossnet.stlpips_preset import STLPIPS_PRESETS

    p = subparsers.add_parser(
        "similarity",
        help="perceptual distance between two images or two folders",
        description=(
            "Perceptual distance between two images (prints the number) or between same-named images "
            "of two folders (writes a CSV). Without --net/--layer/--distance the LPIPS preset lpips-alex is used."
        ),
    )
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="two image files (PNG/JPEG/BMP/TIFF; RGBA and grey are converted to RGB)",
    )
    p.add_argument("--dir0", help="first folder (folder mode)")
    p.add_argument("--dir1", help="second folder (folder mode)")
    p.add_argument("-o", "--out", help="CSV written in folder mode (default: stdout)")
    p.add_argument(
        "--preset",
        choices=sorted([*PRESETS, *STLPIPS_PRESETS, DISTS_PRESET, "adists"]),
        help="LPIPS v0.1 preset (layers + calibrated linear heads), stlpips-alex/-vgg (shift-tolerant LPIPS, "
        "lossnet[stlpips]), dists (DISTS) or adists (A-DISTS)",
    )
    p.add_argument(
        "--heads",
        metavar="FILE",
        help="heads file (lossnet heads fit / export-lpips): calibrated channel weights "
        "with the net, layers and normalisation they were fitted for",
    )
    p.add_argument("--net", help="loss-network architecture (default alexnet when --layer/--distance are given)")
    p.add_argument("--layer", help="comma-separated layers: E/S/M/L, aliases (relu2_2) or FX nodes (default E,S,M,L)")
    p.add_argument("--distance", choices=DISTANCE_CHOICES, help="feature distance (default spatial)")
    p.add_argument(
        "--weights", default="imagenet", help="'imagenet' (default), 'none' (random init) or a state-dict file"
    )
    p.add_argument(
        "--weights-dir", help="folder with local ImageNet weights (else $LOSSNET_WEIGHTS_DIR, then download)"
    )
    p.add_argument(
        "--input-range",
        choices=sorted(_INPUT_RANGES),
        default="0,1",
        help="value range handed to the metric (write --input-range=-1,1); files decode to [0,1] and are rescaled, so results are identical",
    )
    p.add_argument(
        "--range-check",
        choices=RANGE_CHECK_CHOICES,
        default="error",
        help="values outside the input range: error (default), warn, clamp or off; NaN/Inf always fail",
    )
    p.add_argument(
        "--resize", action="store_true", help="resize the second image to the first's size instead of failing"
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--tile",
        type=int,
        metavar="T",
        help="evaluate in T x T tiles with a receptive-field halo: the whole-image value in the memory of one "
        "tile (large images; T a multiple of the network's stride, e.g. 256)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar in folder mode")
    p.set_defaults(func=run)
    return p


def _build_metric(args):
    from lossnet.loss import PerceptualMetric
    from lossnet.weights import WeightsSpec

    heads = getattr(args, "heads", None)
    if heads is not None:
        if args.preset:
            raise InputError(f"give either --preset {args.preset} or --heads, not both")
        return PerceptualMetric(
            net=args.net,
            layers=args.layer,
            distance=args.distance,
            heads=heads,
            weights=WeightsSpec.parse(args.weights),
            weights_dir=args.weights_dir,
            input_range=_INPUT_RANGES[args.input_range],
            range_check=getattr(args, "range_check", "error"),
            tile=getattr(args, "tile", None),
        ).to(args.device)
    custom = any(v is not None for v in (args.net, args.layer, args.distance))
    fixed = args.preset if args.preset in ("dists", "adists") else "spatial"
    if args.preset and custom and (args.distance not in (None, fixed)):
        raise InputError(f"--preset {args.preset} fixes the distance to {fixed}; drop --distance {args.distance}")
    preset = args.preset if (args.preset or custom) else "lpips-alex"
    net = args.net if (args.net or preset) else "alexnet"
    layers = args.layer or (None if preset else "E,S,M,L")
    weights = WeightsSpec.parse(args.weights)
    return PerceptualMetric(
        net=net,
        layers=layers,
        distance=args.distance,
        preset=preset,
        weights=weights,
        weights_dir=args.weights_dir,
        input_range=_INPUT_RANGES[args.input_range],
        range_check=getattr(args, "range_check", "error"),
        tile=getattr(args, "tile", None),
    ).to(args.device)


def _load_pair(path0: Path, path1: Path, resize: bool, input_range: tuple[float, float], device: str):
    import torch

    from lossnet.imageio import load_image

    a, b = load_image(path0), load_image(path1)
    if a.shape[-2:] != b.shape[-2:]:
        if not resize:
            # full paths: in folder mode both files have the same name, only the folders tell them apart
            raise InputError(
                f"images differ in size: {path0} is {a.shape[2]}x{a.shape[1]}, {path1} is "
                f"{b.shape[2]}x{b.shape[1]} (pass --resize to resize the second to the first)"
            )
        b = torch.nn.functional.interpolate(
            b[None], size=a.shape[-2:], mode="bilinear", antialias=True, align_corners=False
        )[0]
        b = b.clamp(0, 1)
    a, b = a[None].to(device), b[None].to(device)
    if input_range[0] == -1.0:
        a, b = a * 2 - 1, b * 2 - 1
    return a, b


def run(args: argparse.Namespace) -> int:
    from lossnet.devices import resolve_device
    from lossnet.outputs import check_output_file

    folder_mode = args.dir0 is not None or args.dir1 is not None
    if folder_mode:
        if args.images:
            raise InputError("give either two IMAGE files or --dir0/--dir1, not both")
        if args.dir0 is None or args.dir1 is None:
            raise InputError("folder mode needs both --dir0 and --dir1")
    else:
        if len(args.images) != 2:
            raise InputError(f"expected two image files (or --dir0/--dir1), got {len(args.images)}")
        if args.out:
            raise InputError("-o/--out applies to folder mode (--dir0/--dir1)")
    # the output path and the device are checked before any work (weights, every pair), as lossnet
    # bench does: a bad -o must not cost a finished comparison, nor --device end in a raw torch error
    if args.out:
        check_output_file(args.out, "-o/--out")
    resolve_device({"device": args.device})
    if folder_mode:
        return _run_folders(args)
    # the images before the metric: a missing file is reported before weights are loaded or downloaded
    a, b = _load_pair(
        Path(args.images[0]), Path(args.images[1]), args.resize, _INPUT_RANGES[args.input_range], args.device
    )
    metric = _build_metric(args)
    print(f"{float(metric(a, b)[0]):.6f}")
    print(f"signature: {metric.signature}", file=sys.stderr)
    return 0


def _by_stem(folder: str) -> dict[str, Path]:
    from lossnet.imageio import list_images

    out: dict[str, Path] = {}
    # unreadable entries (broken symlinks, symlink loops) are listed so that they fail per pair
    for p in list_images(folder, include_unreadable=True):
        if p.stem in out:
            raise InputError(f"two images named {p.stem!r} in {folder}: {out[p.stem].name} and {p.name}")
        out[p.stem] = p
    return out


def _run_folders(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lossnet.atomic import atomic_write_text

    files0, files1 = _by_stem(args.dir0), _by_stem(args.dir1)
    names = sorted(files0.keys() & files1.keys())
    only0, only1 = sorted(files0.keys() - files1.keys()), sorted(files1.keys() - files0.keys())
    if not names:
        raise InputError(
            f"no image names in common between {args.dir0} ({len(files0)} images) and {args.dir1} ({len(files1)} images)"
        )
    metric = _build_metric(args)
    sig = metric.signature

    rows, failures = [], []
    for name in tqdm(names, desc="similarity", unit="pair", disable=args.no_progress):
        try:
            a, b = _load_pair(files0[name], files1[name], args.resize, metric.input_range, args.device)
            rows.append(
                {
                    "name": name,
                    "file0": files0[name].name,
                    "file1": files1[name].name,
                    "distance": f"{float(metric(a, b)[0]):.6f}",
                    "error": "",
                    "signature": sig,
                }
            )
        except LossnetError as exc:  # one bad pair must not lose the others
            msg = " ".join(str(exc).split())
            failures.append((name, msg))
            rows.append(
                {
                    "name": name,
                    "file0": files0[name].name,
                    "file1": files1[name].name,
                    "distance": "",
                    "error": msg,
                    "signature": sig,
                }
            )

    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["name", "file0", "file1", "distance", "error", "signature"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    if args.out:
        atomic_write_text(args.out, buf.getvalue())
    else:
        sys.stdout.write(buf.getvalue())

    err = sys.stderr
    done = len(rows) - len(failures)
    where = f" -> {args.out}" if args.out else ""
    print(f"lossnet similarity: {done} of {len(names)} pairs compared{where}", file=err)
    print(f"lossnet similarity: signature {sig}", file=err)
    for label, only in ((args.dir0, only0), (args.dir1, only1)):
        if only:
            shown = ", ".join(only[:10]) + (f", ... ({len(only) - 10} more)" if len(only) > 10 else "")
            print(f"lossnet similarity: {len(only)} unmatched in {label}: {shown}", file=err)
    for name, msg in failures:
        print(f"lossnet similarity: failed {name}: {msg}", file=err)
    return 1 if failures else 0

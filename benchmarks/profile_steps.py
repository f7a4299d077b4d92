"""Per-phase step profile of the four benchmarks (issue #21 part 2).

Times K training steps (after warm-up) of each benchmark's config through
``Benchmark.time_steps`` (the same hook ``lossnet sweep estimate`` uses) and prints, per phase, the
milliseconds per step and the share of the step: ``data`` (next batch: decoding, crops,
degradation, collate, host->device copy), ``model`` (the trained network's forward), ``loss_net``
(the loss network and the loss), ``backward`` (backward + optimiser step); similarity: ``data``
(decoding a batch of BAPPS PNGs), ``loss_net`` (network + distances), ``metric`` (2AFC score).
Each benchmark is profiled with ``num_workers`` 0 and ``--workers N``.

    python benchmarks/profile_steps.py --steps 10 --workers 2 --json /tmp/profile.json
    python benchmarks/profile_steps.py --bench roads --device cuda --preset paper

Defaults: the quick preset on this project's ../shared data (superres also with the reference
pipeline, whose DataLoader decodes files in workers), vgg16 relu2_2 with ../shared weights; a
missing dataset is replaced by synthetic data of the preset's shapes (as ``sweep estimate`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import lossnet  # noqa: F401  (before torchvision)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOSSNET_SHARED") or ROOT.parent / "shared")


def configs(preset: str, net: str, layer: str) -> dict[str, dict]:
    loss = {"net": net, "layer": layer}
    out = {
        "superres": dict(loss),
        "superres[reference pipeline]": dict(loss, pipeline="reference", crop=288 if preset == "paper" else 96),
        "roads": dict(loss, data=str(SHARED / "data" / "roads")),
        "autoencoder": dict(loss),
        # no BAPPS in ../shared: data None -> the data root's, else synthetic patches
        "similarity": dict(
            loss,
            distance="spatial",
            data=str(SHARED / "data" / "bapps") if (SHARED / "data" / "bapps").is_dir() else None,
        ),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    from lossnet.bench.base import get_benchmark
    from lossnet.bench.profile import format_profile, time_benchmark
    from lossnet.cli.common import print_table
    from lossnet.errors import DataError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", action="append", help="benchmark(s) to profile (default all)")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--net", default="vgg16")
    ap.add_argument("--layer", default="relu2_2")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="num_workers of the second profile (default 2)")
    ap.add_argument("--weights-dir", default=str(SHARED / "weights") if (SHARED / "weights").is_dir() else None)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args(argv)

    results = {}
    synth = Path(tempfile.gettempdir()) / "lossnet-estimate-synthetic"
    for label, partial in configs(args.preset, args.net, args.layer).items():
        name = label.split("[")[0]
        if args.bench and name not in args.bench and label not in args.bench:
            continue
        bench = get_benchmark(name)
        base = dict(partial, preset=args.preset, device=args.device, weights_dir=args.weights_dir)
        sizes = None
        try:
            config = bench.resolve_config(base)
        except DataError as exc:  # the benchmark's synthetic data of the preset's shapes, with the real data's sizes
            synthetic = bench.synthetic_data(synth, bench.defaults(args.preset))
            print(f"{label}: {' '.join(str(exc).split())[:120]} -> {synthetic.note}")
            config = bench.resolve_config({**{k: v for k, v in base.items() if k != "data"}, **synthetic.options})
            sizes = synthetic.sizes
        for workers in (0, args.workers):
            c = dict(config, num_workers=workers)
            t = time_benchmark(bench, c, None, args.steps, warmup=args.warmup, fixed=False, sizes=sizes)
            title = f"{label} ({args.preset}, {c.get('net')} {c.get('layer')}, {c.get('device') or 'default device'}, num_workers {workers})"
            print(f"\n{title}: {t.steps_timed} steps, {t.steps_per_run} steps per run")
            print_table(format_profile(t))
            results[f"{label}|workers={workers}"] = {
                "step_s": t.step_s,
                "phases": t.phases,
                "steps_per_run": t.steps_per_run,
                "data_share": t.phases.get("data", 0.0) / t.step_s if t.step_s else None,
            }
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

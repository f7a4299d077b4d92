"""``lossnet recommend TASK``: which loss network and layer to use, from Pihlgren et al.'s published
tables or from your own results store.

Examples::

    lossnet recommend superres
    lossnet recommend all --top 5
    lossnet recommend similarity --store results.db --preset paper
    lossnet recommend roads --json answer.json
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

TASK_CHOICES = (
    "similarity",
    "superres",
    "roads",
    "autoencoder",
    "all",
)  # = lossnet.recommendation.TASKS (cheap --help)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recommend",
        help="which loss network and layer to use for a task (the paper's tables or your results store)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=TASK_CHOICES, help="the task: " + ", ".join(TASK_CHOICES))
    p.add_argument(
        "--store", help="rank from this results store (lossnet bench --store / lossnet sweep) instead of the paper"
    )
    p.add_argument("--top", type=int, default=None, help="show only the N best architectures")
    p.add_argument("--json", dest="json_out", help="also write the answer as JSON to this file")
    p.add_argument("--preset", help="with --store: use only runs with this preset")
    p.add_argument("--weights", help="with --store: use only runs with these weights (imagenet | none | path)")
    p.add_argument("--distance", help="with --store: use only runs with this distance")
    p.add_argument(
        "--protocol",
        choices=("reference", "full"),
        help="with --store: only super-resolution runs of this test protocol",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from lossnet.atomic import atomic_write_text
    from lossnet.errors import InputError
    from lossnet.recommendation import recommend

    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    rec = recommend(
        args.task,
        store=args.store,
        preset=args.preset,
        weights=args.weights,
        distance=args.distance,
        protocol=args.protocol,
    )
    print(rec.to_text(args.top), end="")
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(dataclasses.asdict(rec), indent=1) + "\n")
        print(f"wrote {args.json_out}")
    return 0

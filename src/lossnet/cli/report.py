"""``lossnet report``: the paper's tables, correlations and figures from a results store or from
the published numbers, optionally side by side with the paper.

Examples::

    lossnet report results.db --compare-paper -o report/
    lossnet report --source paper -o report/
"""

from __future__ import annotations

import argparse

from lossnet.errors import InputError

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="tables, correlations and figures of Pihlgren et al. from a results store or the paper",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", nargs="?", help="SQLite results store (lossnet bench --store / lossnet sweep)")
    p.add_argument(
        "--source",
        choices=("store", "paper"),
        default=None,
        help="analyse the store (default when STORE is given) or the published numbers alone",
    )
    p.add_argument(
        "--compare-paper", action="store_true", help="put the published value and ours - paper beside every cell"
    )
    p.add_argument("-o", "--out", required=True, help="output folder (report.md, report.html, tables/*.csv, figures/)")
    p.add_argument("--preset", help="use only runs with this preset")
    p.add_argument("--weights", help="use only runs with these weights (imagenet | none | path)")
    p.add_argument("--distance", help="use only runs with this distance")
    p.add_argument(
        "--protocol",
        choices=("reference", "full"),
        help="use only super-resolution runs of this test protocol (the paper's numbers are 'reference')",
    )
    p.add_argument(
        "--sr-metric",
        choices=("skimage", "torchmetrics"),
        default="skimage",
        help="super-resolution numbers compared with the paper's: skimage (the reference's PSNR_2 with a 2 px shave "
        "and 7x7 SSIM; default) or torchmetrics (its unshaved torchmetrics PSNR and SSIM)",
    )
    p.add_argument(
        "--roads-split",
        choices=("val", "test"),
        default="val",
        help="roads scores compared with the paper's: val (mrd.val/..., the split the authors' test script scores; "
        "default) or test (mrd/..., the paper text's)",
    )
    p.add_argument(
        "--no-structure",
        action="store_true",
        help="skip parameter counts / layer statistics (no models are built; no Fig. 4, no layer correlations)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lossnet.cli.common import print_table
    from lossnet.outputs import check_output_dir
    from lossnet.report.render import build_report
    from lossnet.report.sources import paper_scores, store_scores_all_nets
    from lossnet.report.tables import ranking_table

    check_output_dir(args.out, "-o/--out")  # before any work (issue #32 L14)
    source = args.source or ("store" if args.store else None)
    if source is None:
        raise InputError("give a results store (lossnet report results.db -o DIR) or --source paper")
    notes = []
    other_rows: list = []
    if source == "paper":
        if args.store:
            raise InputError(
                f"--source paper analyses the published numbers only; drop the store argument {args.store!r}"
            )
        rows, label = paper_scores(), "paper"
    else:
        if not args.store:
            raise InputError("--source store needs a results store path")
        rows, other_rows, info = store_scores_all_nets(
            args.store,
            preset=args.preset,
            weights=args.weights,
            distance=args.distance,
            protocol=args.protocol,
            sr_metric=args.sr_metric,
            roads_split=args.roads_split,
        )
        label = str(args.store)
        notes.append(f"{info.runs} runs used ({info.variant or 'no runs'}).")
        if info.other_runs:
            notes.append(
                f"{info.other_runs} runs of {len(info.other_archs)} network(s) beyond the paper's 14 "
                f"({', '.join(info.other_archs)}): section 'Beyond the paper's networks'."
            )
        notes.extend(info.notes)
        if info.skipped:
            notes.append(
                "Metric rows not used: " + ", ".join(f"{k}: {v}" for k, v in sorted(info.skipped.items())) + "."
            )
        notes.extend(f"{n}." for n in info.skip_notes)
        if not rows and not other_rows:
            raise InputError(f"{args.store}: no paper-comparable results: {_why_none(info)}")
    paths = build_report(
        rows,
        args.out,
        source=label,
        compare_paper=args.compare_paper,
        structure=not args.no_structure,
        make_figures=not args.no_figures,
        notes=notes,
        other_rows=other_rows,
    )
    if rows:
        table = ranking_table(rows)
        print("Table III (average rank; 1 = best):")
        print_table(table, ["arch", "b1", "b2", "b3", "b4", "all", "n_scores"])
    if other_rows:
        from lossnet.report.beyond import beyond_ranking_table

        print("Beyond the paper's networks: average rank among all networks of the store (1 = best):")
        print_table(
            [{**r, "set": "paper" if r["paper_net"] else "beyond"} for r in beyond_ranking_table(rows, other_rows)],
            ["arch", "set", "b1", "b2", "b3", "b4", "all", "n_scores"],
        )
    for note in notes:
        print(note)
    print(f"wrote {paths['md']}, {paths['html']}, {paths['tables']}/*.csv")
    return 0


def _why_none(info) -> str:
    """The loader's skip reasons with counts: the store may hold E/S/M/L runs of paper networks whose
    metrics still match no paper cell (a stand-in dataset, a filter), and only the counts say which."""
    marked = "".join(f" {n}" for n in info.notes if "NOT paper-comparable" in n)
    if not info.skipped:
        return "the store has no finished (done) runs with metrics" + marked
    total = sum(info.skipped.values())
    reasons = [
        f"{reason}: {n}"
        + (f" ({'; '.join(info.skip_notes)})" if reason == "not a paper metric" and info.skip_notes else "")
        for reason, n in sorted(info.skipped.items(), key=lambda kv: -kv[1])
    ]
    return f"{total} metric rows of done runs skipped: {', '.join(reasons)}" + (f";{marked}" if marked else "")

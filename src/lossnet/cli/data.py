"""``lossnet data``: list, fetch, verify and locate the datasets of the four benchmarks.

Module import stays cheap (``lossnet --help``): nothing here imports torch, numpy, pooch or requests
until a handler runs.
"""

from __future__ import annotations

_EPILOG = """\
examples:
  lossnet data list
  lossnet data fetch bapps                      2AFC val + JND val (default parts) into the data root
  lossnet data fetch bapps 2afc-train           the 5.3 GB training split too
  lossnet data fetch coco2014 --subset 10000 --seed 42      10,000 train2014 + 100 val2014 images by range requests
  lossnet data fetch coco2014 train --subset 5000           5,000 train2014 images (seed 42)
  lossnet data fetch svhn --root /data/lossnet --mirror http://my.mirror/svhn
  lossnet data verify bapps
  lossnet data path mrd

The data root is $LOSSNET_DATA, else the per-user cache (~/.cache/lossnet/data on Linux); --root overrides.
An interrupted download resumes when the same command runs again.
"""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "data",
        help="datasets: list, fetch (resumable, checksummed), verify, path",
        description="Fetch, verify and locate the datasets of the four benchmarks.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_cmd", metavar="ACTION")

    lp = sub.add_parser("list", help="datasets, parts, sizes, terms, sources and local status")
    lp.add_argument("--root", help="data root (default: $LOSSNET_DATA or the per-user cache)")
    lp.add_argument("--sources", action="store_true", help="also print every source URL and checksum")
    lp.set_defaults(func=_list)

    fp = sub.add_parser(
        "fetch",
        help="download, check and unpack a dataset (or some of its parts)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    fp.add_argument("name", help="dataset name (see 'lossnet data list')")
    fp.add_argument("parts", nargs="*", metavar="PART", help="parts to fetch (default: the dataset's default parts)")
    fp.add_argument("--root", help="data root (default: $LOSSNET_DATA or the per-user cache)")
    fp.add_argument(
        "--mirror",
        help="base URL tried first: <MIRROR>/<file name> (index pages: <MIRROR>/<split>/<folder>/index.html)",
    )
    fp.add_argument(
        "--subset",
        action="append",
        metavar="N|paper|PART=N",
        help="COCO: fetch only a seeded choice of members by HTTP range requests: N for the named parts "
        "(no part named: N train images + the paper's 100 val images), 'paper' (train 10000, val 100), "
        "or PART=N (repeatable)",
    )
    fp.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of the --subset choice (default 42, the superres paper preset's seed; val uses seed+1 like the benchmark)",
    )
    fp.add_argument(
        "--source",
        choices=("http", "kaggle"),
        default="http",
        help="'kaggle': the dataset's Kaggle mirror (BAPPS; needs pip install 'lossnet[kaggle]' and API credentials)",
    )
    fp.add_argument("--retries", type=int, default=3, help="resumes per file after a transfer is cut (default 3)")
    fp.add_argument("--force", action="store_true", help="fetch again even when complete")
    fp.add_argument("--keep-downloads", action="store_true", help="keep the downloaded archives after unpacking")
    fp.add_argument(
        "--no-space-check", action="store_true", help="skip the free-disk-space check (sizes are estimates)"
    )
    fp.add_argument("--no-progress", action="store_true", help="no progress bars")
    fp.set_defaults(func=_fetch)

    vp = sub.add_parser("verify", help="re-hash the fetched files of a dataset against their recorded checksums")
    vp.add_argument("name")
    vp.add_argument("parts", nargs="*", metavar="PART", help="parts to check (default: every fetched part)")
    vp.add_argument("--root", help="data root (default: $LOSSNET_DATA or the per-user cache)")
    vp.add_argument("--no-progress", action="store_true", help="no progress bar")
    vp.set_defaults(func=_verify)

    pp = sub.add_parser("path", help="print the folder a benchmark reads (error with the fetch command when absent)")
    pp.add_argument("name")
    pp.add_argument("part", nargs="?", help="one part (default: the dataset with its default parts)")
    pp.add_argument("--root", help="data root (default: $LOSSNET_DATA or the per-user cache)")
    pp.set_defaults(func=_path)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _check_root(args) -> None:
    from lossnet.datasets.store import check_root

    check_root(args.root, "--root" if args.root else None)


def _list(args) -> int:
    from lossnet.cli.common import print_table
    from lossnet.datasets import DATASETS, data_root
    from lossnet.datasets.download import format_bytes
    from lossnet.datasets.store import part_status

    _check_root(args)
    root = args.root or data_root()
    rows = []

    def download_size(parts) -> str:
        seen, size, exact = set(), 0, True
        for p in parts:
            for r in p.remotes:
                if r.filename not in seen:  # parts may share an archive
                    seen.add(r.filename)
                    size += r.nbytes
                    exact &= r.size is not None
        return ("" if exact else "~") + format_bytes(size)

    for ds in DATASETS.values():
        parts = []
        for p in ds.parts:
            st = part_status(ds, p, args.root)
            parts.append(f"{p.name}{'' if p.default else '*'}:{st}")
        # what `lossnet data fetch NAME` downloads (the default parts), and every part together
        rows.append(
            {
                "name": ds.name,
                "benchmark": ds.benchmark,
                "fetch": download_size(ds.default_parts),
                "all parts": download_size(ds.parts),
                "parts (status; * = not default)": " ".join(parts),
            }
        )
    print(f"data root: {root}")
    print_table(rows)
    for ds in DATASETS.values():
        print(f"\n{ds.name}: {ds.title}\n  terms: {ds.license}\n  layout: {ds.layout}\n  sources: {ds.sources_note}")
        if args.sources:
            for p in ds.parts:
                for r in p.remotes:
                    ck = f"sha256:{r.sha256}" if r.sha256 else (f"md5:{r.md5}" if r.md5 else "no checksum")
                    print(f"    {p.name} {r.filename}: {r.urls[0]}  [{ck}]")
                    for u in r.urls[1:]:
                        print(f"        mirror: {u}")
            if ds.kaggle:
                print(f"    kaggle: {ds.kaggle.slug} (--source kaggle)")
        else:
            print(
                f"  urls: {', '.join(dict.fromkeys(p.remotes[0].urls[0] for p in ds.parts))}"
                + (
                    f" (+{sum(len(p.remotes) for p in ds.parts) - len(ds.parts)} more files)"
                    if any(len(p.remotes) > 1 for p in ds.parts)
                    else ""
                )
            )
    return 0


def _fetch(args) -> int:
    from lossnet.datasets.download import format_bytes
    from lossnet.datasets.fetch import fetch, parse_subset

    _check_root(args)
    results = fetch(
        args.name,
        args.parts,
        root=args.root,
        mirror=args.mirror,
        subset=parse_subset(args.subset),
        seed=args.seed,
        source=args.source,
        retries=args.retries,
        progress=False if args.no_progress else None,
        force=args.force,
        keep_downloads=args.keep_downloads,
        space_check=not args.no_space_check,
    )
    for r in results:
        sub = f", subset {r.subset['n']} of {r.subset['of']} (seed {r.subset['seed']})" if r.subset else ""
        print(f"{r.dataset} {r.part}: {r.status}, {r.files:,} files, {format_bytes(r.bytes)}{sub} -> {r.path}")
    return 0


def _verify(args) -> int:
    from lossnet.datasets import verify
    from lossnet.errors import DataError

    _check_root(args)
    report = verify(args.name, args.parts or None, root=args.root, progress=False if args.no_progress else None)
    bad = 0
    bad_parts = []
    for part, problems in report.items():
        if problems:
            bad += len(problems)
            bad_parts.append(part)
            print(f"{args.name} {part}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
            for line in problems[:20]:
                print(f"  {line}")
            if len(problems) > 20:
                print(f"  ... and {len(problems) - 20} more")
        else:
            print(f"{args.name} {part}: ok")
    if bad:
        from lossnet.datasets.store import fetch_command

        raise DataError(
            f"{args.name}: {bad} file{'s' if bad != 1 else ''} failed verification (listed above); "
            f"fetch again with: {fetch_command(args.name, bad_parts, args.root, '--force')}"
        )
    return 0


def _path(args) -> int:
    from lossnet.datasets import locate, missing_error

    _check_root(args)
    path = locate(args.name, args.part, root=args.root)
    if path is None:
        raise missing_error(args.name, "lossnet data path", args.part, root=args.root)
    print(path)
    return 0

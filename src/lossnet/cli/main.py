"""Entry point of the ``lossnet`` console script.

Building the parser must stay cheap (``lossnet --help``): this module and the subcommand modules'
``register`` functions import neither torch, torchvision nor numpy; handlers import what they need.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# Subcommand modules, in help order. Each has ``register(subparsers)`` that adds its parser(s)
# and sets ``func(args) -> int`` as the handler.
SUBCOMMAND_MODULES = (
    "lossnet.cli.demo",
    "lossnet.cli.nets",
    "lossnet.cli.weights",
    "lossnet.cli.similarity",
    "lossnet.cli.heads",
    "lossnet.cli.bench",
    "lossnet.cli.sweep",
    "lossnet.cli.runs",
    "lossnet.cli.report",
    "lossnet.cli.recommend",
    "lossnet.cli.data",
)


#: Subcommands of the application (``lossnet[bench]``): without that extra each is registered as a
#: stub whose every use, ``--help`` included, says in one line what to install.
APPLICATION_COMMANDS = {
    "lossnet.cli.bench": ("bench", "run one benchmark"),
    "lossnet.cli.sweep": ("sweep", "plan, estimate and run a grid of benchmark runs"),
    "lossnet.cli.runs": ("runs", "list, show and export the runs of a results store"),
    "lossnet.cli.report": ("report", "tables and figures from a results store or the paper"),
    "lossnet.cli.data": ("data", "fetch, verify and locate the benchmark datasets"),
}


def _register_missing_extra(subparsers, command: str, help_text: str) -> None:
    """``lossnet COMMAND ...`` (any arguments, ``--help`` too) answers with the install line of
    :func:`lossnet.extras.require`."""
    # no prefix character anyone types: every argument (--help, --source ...) is just "the rest"
    p = subparsers.add_parser(command, help=f"{help_text} (needs lossnet[bench])", add_help=False, prefix_chars="\x01")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

    def _refuse(args) -> int:
        from lossnet.extras import require

        require("bench", f"lossnet {command}")
        return 2  # not reached: this stub is registered only while the extra is missing

    p.set_defaults(func=_refuse)


def build_parser() -> argparse.ArgumentParser:
    from lossnet._version import __version__

    parser = argparse.ArgumentParser(
        prog="lossnet",
        description="Deep perceptual loss networks: distances, LPIPS, and the Pihlgren et al. benchmark harness.",
    )
    parser.add_argument("--version", action="version", version=f"lossnet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show full tracebacks on errors; accepted anywhere on the command line (or set LOSSNET_DEBUG=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from lossnet.extras import EXTRAS, missing

    gone = missing(EXTRAS["bench"])
    for name in SUBCOMMAND_MODULES:
        if gone and name in APPLICATION_COMMANDS:
            _register_missing_extra(subparsers, *APPLICATION_COMMANDS[name])
        else:
            importlib.import_module(name).register(subparsers)
    return parser


def split_debug(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """Take every ``--debug`` out of ``argv`` (up to a ``--`` separator), wherever it stands.

    ``--debug`` belongs to the top-level parser, but users write it after the subcommand too
    (``lossnet bench roads --debug ...``); argparse would refuse it there.

    Returns:
        ``(debug_given, argv_without_it)``.
    """
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != "--debug"]
    return len(kept) != end, kept + argv[end:]


def main(argv: Sequence[str] | None = None) -> int:
    from lossnet.cli.common import stdout_closed

    try:
        try:
            return _main(argv)
        finally:  # also after --help (SystemExit): a reader that went away (| head) shows up here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        return stdout_closed()


def _main(argv: Sequence[str] | None) -> int:
    import lossnet  # noqa: F401  (installs the torchvision compatibility hook first)
    from lossnet.errors import LossnetError

    debug_flag, argv = split_debug(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = args.debug or debug_flag
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("LOSSNET_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("lossnet: interrupted", file=sys.stderr)
        return 130
    except (LossnetError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        if debug:
            raise
        print(f"lossnet: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # stdout was closed by its reader: main() exits quietly, this is no error
    except Exception as exc:  # an unexpected failure still gets one readable line
        if debug:
            raise
        print(
            f"lossnet: error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())

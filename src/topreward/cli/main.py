"""The `topreward` command: one entry point, one subcommand per job; `main(argv) -> int` for tests.

The parser of each command sits beside its handler, grouped by what the commands are for:
`score` (score, demo, make-tiny-model, list), `data` (annotate, weights, rank, sim), `evaluate` (bench,
tokens, calibrate), `run` (serve, train); `flags` holds what several share, `checks` what runs before a
model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from topreward.cli import data, evaluate, run, score
from topreward.cli.flags import HelpFormatter, peek_method, valid_flags

#: every subcommand's parser piece, in the order `topreward --help` lists them
COMMANDS = (
    score.add_score,
    score.add_make_tiny_model,
    score.add_demo,
    data.add_annotate,
    data.add_weights,
    data.add_rank,
    evaluate.add_bench,
    evaluate.add_tokens,
    data.add_sim,
    run.add_serve,
    evaluate.add_calibrate,
    evaluate.add_view,
    run.add_train,
    score.add_list,
)


def build_parser(method: str = "topreward") -> argparse.ArgumentParser:
    """The whole command line; `method` decides which method's flags score/annotate/bench/tokens take."""
    from topreward._version import __version__

    parser = argparse.ArgumentParser(
        prog="topreward",
        description="Zero-shot rewards and progress from video VLMs.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"topreward {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (Ray's logs too)")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the full traceback (default: one line naming the file and the fix)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=HelpFormatter, **kw)

    for add in COMMANDS:
        add(command, method)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is global and accepted anywhere (before a `--` that ends the options)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    argv = [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)]
    method = peek_method(argv)
    try:
        parser = build_parser(method)
    except ValueError as e:  # an unknown --method: the message lists the methods
        print(f"topreward: error: {e}", file=sys.stderr)
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if hasattr(args, "method"):
            parser.exit(
                2,
                f"topreward {args.command}: error: {' '.join(unknown)}: not an option of method {method!r}; "
                f"its options: {' '.join(valid_flags(method))}\n",
            )
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as e:
        if debug:
            raise
        print(f"topreward {args.command}: error: {_error_text(e)}", file=sys.stderr)
        return 2


# what to do about an operating-system error, by errno (permission, disk full, ...)
_OS_FIXES = {
    "EACCES": "no permission: check its permissions or choose another location",
    "EPERM": "not permitted: check its permissions or choose another location",
    "EROFS": "the file system is read-only: choose another location",
    "ENOSPC": "the disk is full: free space or choose another location, then run again (with --resume where "
    "the command has it: finished work is kept)",
    "EDQUOT": "the disk quota is used up: free space or choose another location, then run again (with "
    "--resume where the command has it: finished work is kept)",
    "EFBIG": "the file is larger than this system allows (ulimit -f, or the file system's limit): raise the "
    "limit or choose another location, then run again (with --resume where the command has it)",
    "ENOENT": "no such file or folder: check the path",
    "EISDIR": "it is a folder: name a file",
    "ENOTDIR": "a part of the path is a file, not a folder: check the path",
}


def _error_text(e: BaseException) -> str:
    """One line for an expected failure: our messages as they are; an OS error as its file and the fix."""
    import errno

    if isinstance(e, OSError) and e.errno is not None:
        fix = _OS_FIXES.get(errno.errorcode.get(e.errno, ""))
        where = e.filename if e.filename is not None else e.filename2
        if fix:
            return f"{where}: {fix}" if where is not None else f"{e.strerror}: {fix}"
    return str(e) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())

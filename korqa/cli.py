"""korqa's command line: parse arguments, call one function, print. No logic lives here.

Heavy modules (torch, the reader) are imported inside each command so that `korqa --help`
and the sparse retrievers start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(add: Callable[[argparse._SubParsersAction], None]):
    """Register a function that adds one subcommand (its parser and `handler`)."""
    _COMMANDS.append(add)
    return add


def _print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


# ---- import-e5 ----------------------------------------------------------------------------


# ---- commands end -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="korqa", description="Korean question answering on BERT")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (FileNotFoundError, ValueError) as error:
        # Bad input gets one clear line, never a traceback.
        print(f"korqa {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

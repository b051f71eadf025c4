"""korqa's command line: parse the arguments into config dataclasses, call one library function,
print what it returns.

The commands are declared as data (`korqa.cli.command.Command`), one module per group:
answer.py (ask, chat, serve), index.py (index, documents, remove, merge, verify, feedback),
evaluation.py and training.py. Their options are the fields of config dataclasses kept beside
the library code (korqa.cli_options), imported only when a command is used, so `korqa --help`
starts fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence

from korqa.cli import answer, evaluation, index, training
from korqa.cli.command import OUTPUT, Command, Interrupted, print_json
from korqa.cli.logs import route_warnings_past_progress_bars
from korqa.cli_options import add_options, build, resolve
from korqa.errors import IndexFault

COMMANDS: tuple[Command, ...] = (*answer.COMMANDS, *index.COMMANDS, *evaluation.COMMANDS,
                                 *training.COMMANDS)
# `korqa --help` lists the commands in these groups, in this order; a command missing here is
# listed under "other commands", so none is ever hidden.
COMMAND_GROUPS = (
    ("everyday use", ("index", "ask", "chat", "serve", "documents", "remove", "merge",
                      "verify", "feedback")),
    ("evaluation", ("evaluate", "evaluate-open", "score", "retrieval-eval", "open-sets",
                    "split")),
    ("training", ("train", "cloze", "negatives", "clean-squad", "average", "prune",
                  "calibrate", "calibrate-confidence", "export", "import-e5", "vocab",
                  "pretrain")),
)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, adding "(default: X)" to options whose help does not mention
    their default. Flags and options without a default get nothing: "(default: False)" on a
    --no-* flag reads backwards."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None or default == []
                or default is argparse.SUPPRESS or "default" in help_text.lower()):
            return action.help
        return f"{help_text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands (and theirs) use HelpFormatter, and whose options
    are added only once the command is used (`add_later`): options made from a config
    dataclass import its module, which `korqa --help` must not wait for."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._later: list[Callable[[argparse.ArgumentParser], None]] = []

    def add_later(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self._later.append(add)

    def complete(self) -> None:
        """Add the deferred options."""
        while self._later:
            self._later.pop(0)(self)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


class _TopFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """For `korqa --help`: the grouped command list in the description keeps its layout."""


class _Version(argparse.Action):
    """--version, read only when asked: the package metadata costs tens of milliseconds."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"korqa {version()}")
        parser.exit()


def version() -> str:
    """The installed distribution's version; the package's own in a tree never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("korqa")
    except PackageNotFoundError:
        from korqa.version import __version__

        return __version__


def iter_parsers(parser: argparse.ArgumentParser,
                 name: str = "korqa") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """`parser` and every subcommand parser under it, with its full command name (each with
    all its options)."""
    if isinstance(parser, _Parser):
        parser.complete()
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from iter_parsers(sub, f"{name} {command}")


def _add_command(subcommands: dict[str, argparse._SubParsersAction],
                 command: Command) -> None:
    """`command`'s parser under its parent's subcommands; its options are added on use."""
    parent, _, name = command.name.rpartition(" ")
    parser = subcommands[parent].add_parser(name, help=command.help,
                                            description=command.description or None)
    parser.set_defaults(command=command)
    if command.run is None:  # a command of actions: `korqa NAME ACTION`
        subcommands[command.name] = parser.add_subparsers(
            dest="action", required=True, metavar="ACTION", prog=f"korqa {command.name}")
        return
    configs = (*command.configs, OUTPUT) if command.text else command.configs
    parser.add_later(lambda parser: [add_options(parser, resolve(config))
                                     for config in configs])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="korqa", formatter_class=_TopFormatter,
                     usage="korqa [-h] [--version] COMMAND ...",
                     epilog="`korqa COMMAND --help` documents each command's options.")
    parser.add_argument("--version", action=_Version, help="print korqa's version and exit")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND",
                                prog="korqa")
    subcommands = {"": sub}
    for command in COMMANDS:
        _add_command(subcommands, command)
    from korqa.extras import command_note

    for name, command_parser in sub.choices.items():
        if note := command_note(name):  # the optional extra it needs
            command_parser.epilog = " ".join(filter(None, (command_parser.epilog, note)))
    parser.description = _command_list(sub)
    sub.help = argparse.SUPPRESS  # listed by group in the description instead
    # "invalid choice" errors list the commands in the same order (in place: the same dict
    # maps names to parsers).
    rank = {name: i for i, name in enumerate(n for _, names in COMMAND_GROUPS for n in names)}
    ordered = sorted(sub.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    sub.choices.clear()
    sub.choices.update(ordered)
    return parser


def _command_list(sub: argparse._SubParsersAction) -> str:
    """The subcommands and their one-line help, grouped as COMMAND_GROUPS says."""
    helps = {action.dest: action.help or "" for action in sub._choices_actions}
    grouped = [name for _, names in COMMAND_GROUPS for name in names]
    groups = [(title, [name for name in names if name in helps])
              for title, names in COMMAND_GROUPS]
    groups.append(("other commands", [name for name in helps if name not in grouped]))
    width = max(map(len, helps)) + 4
    columns = max(min(shutil.get_terminal_size().columns, 100) - 2, width + 30)
    lines = textwrap.wrap("Korean question answering on BERT: index documents, ask in Korean, "
                          "and train and evaluate readers.", columns) + [""]
    for title, names in groups:
        if names:
            lines.append(f"{title}:")
            for name in names:
                lines += textwrap.wrap(helps[name], columns,
                                       initial_indent=f"  {name:<{width - 2}}",
                                       subsequent_indent=" " * width)
            lines.append("")
    return "\n".join(lines).rstrip()


def show(command: Command, result: object, configs: list[object],
         args: argparse.Namespace) -> int:
    """Print `result` as `Command` says; the exit status."""
    if isinstance(result, bool) or result is None:
        return 0
    if isinstance(result, int):  # the command printed for itself
        return result
    if not isinstance(result, dict | list):
        print(result)
    elif command.text and not args.json:
        if text := resolve(command.text)(result, *configs):
            print(text)
    else:
        print_json(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one `korqa` command; its exit status. Bad input and Ctrl-C end it with one line on
    stderr (exit 2 and 130), never a traceback."""
    name = "korqa"
    route_warnings_past_progress_bars()
    try:
        try:
            args = build_parser().parse_args(argv)
            command: Command = args.command
            name = f"korqa {command.name}"
            configs = [build(resolve(config), args) for config in command.configs]
            return show(command, resolve(command.run)(*configs), configs, args)
        finally:
            if sys.stdout is not None:  # None when started with stdout closed (>&-)
                sys.stdout.flush()  # a closed pipe raises here, not in Python's exit
    except BrokenPipeError:
        # `korqa … | head` closed our output: stop quietly, as `cat` does. Python flushes
        # stdout once more at exit, so it points at /dev/null from here on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell reports for a command that SIGPIPE ended
    except KeyboardInterrupt as interrupt:
        # The terminal echoed ^C on the line the command was on: start a fresh one there.
        start = "\n" if sys.stderr.isatty() else ""
        said = str(interrupt) if isinstance(interrupt, Interrupted) else f"{name}: interrupted"
        print(f"{start}{said}", file=sys.stderr)
        return 128 + 2  # what a shell reports for a command that SIGINT ended
    except (FileNotFoundError, ValueError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    except IndexFault as error:  # a full disk, a read-only or damaged index: one line too
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        from korqa.extras import missing_extra_message

        message = missing_extra_message(error, name, command.name)
        if message is None:
            raise  # a broken install, not a missing extra: the traceback helps
        print(f"{name}: error: {message}", file=sys.stderr)
        return 2

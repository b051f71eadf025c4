"""A korqa command as data: its name and help, the config dataclasses whose fields are its
options (korqa.cli_options), the one function it calls, and how its result is shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    """One `korqa NAME`. `configs` are "module:Class" names, imported only when the command is
    used: each class is built from the parsed arguments and handed to `run`, in order. `run`
    (a function, or a "module:function" name) returns what to show: a dict or list is printed
    as JSON, or, when `text` names a formatter `(result, *configs) -> str`, as its text unless
    --json is given; None prints nothing; an int is the exit status of a command that printed
    for itself; anything else is printed as it is. A command without `run` only holds actions:
    a command named "NAME ACTION" is `korqa NAME ACTION`."""

    name: str
    help: str
    description: str = ""
    configs: tuple[str, ...] = ()
    run: str | Callable[..., object] | None = None
    text: str | None = None


@dataclass
class Output:
    """The option of a command whose result has a text form (`Command.text`)."""

    json: bool = field(default=False, metadata={"help": "print the result as JSON instead"})


OUTPUT = f"{__name__}:Output"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what it left behind (printed instead of
    "korqa NAME: interrupted")."""


def print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))

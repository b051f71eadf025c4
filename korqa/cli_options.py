"""Command-line options made from config dataclasses, so each knob is spelled once.

A field becomes an option when its metadata carries "help": `top_k` is `--top-k`, typed, with
the field's default shown in `--help`; `build` turns the parsed namespace back into the
dataclass. A field whose type is itself a dataclass adds that dataclass's options (unprefixed).

Why a helper and not tyro or transformers' HfArgumentParser: korqa's commands are argparse
subparsers with grouped help (COMMAND_GROUPS) and a formatter that prints each default; tyro
builds parsers of its own and would respell flags (`--pipeline.top-k`, `--flag/--no-flag`),
and HfArgumentParser would bring transformers. This is HfArgumentParser's idea in argparse.

Metadata keys besides "help" (all optional):
  flag       the option's name when it is not `--field-name` (e.g. "--no-trim" for a True bool)
  aliases    further spellings that keep working (e.g. ("--weight",))
  metavar, choices, action ("append": repeat the flag instead of listing values)
  positional the field is a positional argument (e.g. `korqa ask QUESTION`), not an option
  exclusive  fields with the same name here form one mutually exclusive group
  required   on a field of an exclusive group: one of the group must be given
  presets    {flag: (value, help)}: further flags that each set the field to one value
             (e.g. "--all-windows" sets stop_confidence to None)
  overrides  on a dict field: a config dataclass (or "module:Class", imported when options
             are added) whose options fill the dict with only the fields given on the command
             line, to lay over a saved config (a reader's reader_config.json)
  skip       on a dataclass or overrides field: names of the inner fields left out
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add an option for each field of dataclass `cls` that has help and is not in `skip`."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    # Keyword-only fields (a shared base's, e.g. korqa.training.config.RunConfig) come last.
    for spec in sorted(dataclasses.fields(cls), key=lambda spec: spec.kw_only is True):
        kind = hints[spec.name]
        if spec.name in skip:
            continue
        meta = spec.metadata
        inner_skip = (*skip, *meta.get("skip", ()))
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, inner_skip)
            continue
        if "overrides" in meta:
            add_override_options(parser, resolve(meta["overrides"]), inner_skip,
                                 meta.get("title"))
            continue
        if "help" not in meta:
            continue
        target = parser
        if "exclusive" in meta:
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
            target.required = target.required or meta.get("required", False)
        _add(target, spec, kind)


def add_override_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                         title: str | None = None) -> None:
    """Options for the fields of `cls` (those with help, not in `skip`) that are absent from
    the parsed namespace unless given: `overrides(cls, args)` collects the given ones. They are
    listed under `title` (default: the class's first docstring line)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or (cls.__doc__ or cls.__name__).splitlines()[0])
    for spec in dataclasses.fields(cls):
        if spec.name not in skip and "help" in spec.metadata:
            _add(group, spec, hints[spec.name], default=argparse.SUPPRESS,
                 help_text=_saved_default(spec, hints[spec.name]))


def _saved_default(spec: dataclasses.Field, kind: Any) -> str:
    """An override's help, saying that its default is the saved config's, else the field's."""
    if kind is bool or spec.default is dataclasses.MISSING:
        return spec.metadata["help"]
    default = "off" if spec.default is None else spec.default
    return f"{spec.metadata['help']} (default: the saved config's, else {default})"


def overrides(cls: type, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of `cls`, but those in `skip`, given on the command line (see
    `add_override_options`)."""
    values = vars(args)
    return {spec.name: values[spec.name] for spec in dataclasses.fields(cls)
            if spec.name in values and spec.name not in skip}


def _add(target: Any, spec: dataclasses.Field, kind: Any, default: Any = None,
         help_text: str | None = None) -> None:
    kwargs = _kwargs(spec, kind)
    if default is not None:
        kwargs["default"] = default
    if help_text is not None:
        kwargs["help"] = help_text
    if spec.metadata.get("positional"):
        kwargs.pop("required", None)  # a positional is required unless its nargs says not
        target.add_argument(spec.name, **kwargs)
        return
    target.add_argument(*_flags(spec), dest=spec.name, **kwargs)
    for flag, (value, help_text) in spec.metadata.get("presets", {}).items():
        target.add_argument(flag, dest=spec.name, action="store_const", const=value,
                            help=help_text, **({} if default is None else {"default": default}))


def resolve(target: Any) -> Any:
    """`target`, or what a "module:name" string names (imported now)."""
    if isinstance(target, str):
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)
    return target


def build(cls: type[T], args: argparse.Namespace) -> T:
    """`cls` from the parsed `args`: each field from the namespace entry of its name (nested
    dataclasses likewise, so options declared by hand under a field's name count too), else
    its default."""
    hints = typing.get_type_hints(cls)
    values = vars(args)
    kwargs: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[spec.name]):
            kwargs[spec.name] = build(hints[spec.name], args)
        elif "overrides" in spec.metadata:
            kwargs[spec.name] = overrides(resolve(spec.metadata["overrides"]), args,
                                          spec.metadata.get("skip", ()))
        elif spec.name in values:
            kwargs[spec.name] = values[spec.name]
    return cls(**kwargs)


def _flags(spec: dataclasses.Field) -> list[str]:
    return [spec.metadata.get("flag", "--" + spec.name.replace("_", "-")),
            *spec.metadata.get("aliases", ())]


def _kwargs(spec: dataclasses.Field, kind: Any) -> dict[str, Any]:
    meta = spec.metadata
    kwargs: dict[str, Any] = {"help": meta["help"]}
    if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
        kwargs["required"] = True
        default = None
    else:
        default = spec.default if spec.default_factory is dataclasses.MISSING \
            else spec.default_factory()
        kwargs["default"] = default
    if kind is bool:
        # A flag turns its default around: --int8 sets False to True, --no-trim True to False.
        kwargs["action"] = "store_false" if default else "store_true"
        return kwargs
    kind = _without_none(kind)
    if typing.get_origin(kind) is list:
        kind = typing.get_args(kind)[0]
        if meta.get("action") == "append":
            kwargs["action"] = "append"
        else:
            kwargs["nargs"] = "+"
    if typing.get_origin(kind) is typing.Literal:
        kwargs["choices"] = list(typing.get_args(kind))
        kind = type(kwargs["choices"][0])
    kwargs["type"] = kind
    for key in ("metavar", "choices"):
        if key in meta:
            kwargs[key] = meta[key]
    return kwargs


def _without_none(kind: Any) -> Any:
    """`int` for `int | None`; other types as they are."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind

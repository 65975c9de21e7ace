"""Command-line flags built from a dataclass config, in the manner of transformers' `HfArgumentParser`.

Each field becomes `--field-name` with the field's default, its type read from the annotation (`int | None` ->
`type=int`, default None; `list[str]` -> `nargs="*"`; a `bool` that defaults to False -> a `store_true` switch) and
its help text from `field(metadata={"help": ...})`. Optional metadata: `choices` (a tuple of allowed values),
`group` (the title of an argument group for `--help`) and `repeatable` (a list field given as a repeated flag,
`--x A --x B`, instead of `--x A B`). So a field added to the config is a flag without touching
the command line, and the flag's default and help can never disagree with the config's.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Iterable


def _flag_type(annotation: Any) -> tuple[Any, bool]:
    """(the type argparse converts to, whether the field takes a list) of an annotation; `X | None` -> X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if len(args) != 1:
            raise TypeError(f"{annotation} has several non-None types: a flag needs one")
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return item, True
    return annotation, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None) -> None:
    """Add one flag per field of dataclass `cls` to `parser` (only the fields named in `only`, if given).

    Raises TypeError for a field without help text or of a type no flag can hold, so a new field cannot be
    added to a config silently without a documented flag."""
    hints = typing.get_type_hints(cls)
    wanted = None if only is None else set(only)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if wanted is not None and f.name not in wanted:
            continue
        if not f.metadata.get("help"):
            raise TypeError(f"{cls.__name__}.{f.name}: give the field help text, field(metadata={{'help': ...}})")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind, many = _flag_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "default": default,
                                  "help": f.metadata["help"].replace("%", "%%")}  # argparse formats help with %
        if kind is bool:
            if default is not False or many:
                raise TypeError(f"{cls.__name__}.{f.name}: a switch (store_true) needs a bool defaulting to False")
            kwargs["action"] = "store_true"
        elif kind in (int, float, str):
            kwargs["type"] = kind
            if many and f.metadata.get("repeatable"):
                kwargs["action"], kwargs["default"] = "append", None  # None: not given, the field's default
            elif many:
                kwargs["nargs"] = "*"
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line flag for type {hints[f.name]}")
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        title = f.metadata.get("group")
        target = parser if title is None else groups.setdefault(title, parser.add_argument_group(title))
        target.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    """An instance of `cls` from parsed flags: the fields the namespace holds, the rest at their defaults."""
    values = {}
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if value is None and f.metadata.get("repeatable"):
            continue  # the repeatable flag was not given: the field's default
        values[f.name] = value
    return cls(**values)

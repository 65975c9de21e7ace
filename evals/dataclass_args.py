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
import collections.abc
import dataclasses
import types
import typing
from typing import Any, Iterable, Mapping


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


# ------------------------------------------------------------------------------------------------------------
# Settings given from Python (`tbrm.evaluate(temperature=0.6)`): the same annotations, checked instead of parsed.

def _union_args(annotation: Any) -> tuple | None:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def value_fits(value: Any, annotation: Any) -> bool:
    """Whether `value` is of the type `annotation` describes: an int is a float too, a bool is not an int, a list
    field takes a list or tuple of its items. Annotations this cannot judge (Any, forward references, classes of
    its own) accept anything: the config's own validation is the judge there."""
    if annotation is Any or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    union = _union_args(annotation)
    if union is not None:
        return any(value_fits(value, a) for a in union)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(value_fits(v, a) for v, a in zip(value, args))
        return not args or all(value_fits(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, collections.abc.Mapping):
            return False
        return not args or all(value_fits(k, args[0]) and value_fits(v, args[1]) for k, v in value.items())
    if isinstance(origin, type):  # os.PathLike[str] and the like
        return isinstance(value, origin)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def describe_type(annotation: Any) -> str:
    """A reader's name for an annotation: 'a float', 'a list of str', 'an int or None'."""
    union = _union_args(annotation)
    if union is not None:
        return " or ".join(dict.fromkeys(describe_type(a) for a in union))
    if annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a tuple ({', '.join(_bare(a) for a in args)})"
    if origin in (list, tuple, collections.abc.Sequence):
        return "a list" + (f" of {_bare(args[0])}" if args else "")
    if origin in (dict, collections.abc.Mapping):
        return "a dict" + (f" of {_bare(args[0])} to {_bare(args[1])}" if args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    name = _bare(annotation)
    return ("an " if name[:1] in "aeiou" else "a ") + name


def _bare(annotation: Any) -> str:
    union = _union_args(annotation)
    if union is not None:
        return " or ".join(_bare(a) for a in union)
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, dict, collections.abc.Sequence, collections.abc.Mapping, typing.Literal):
        return describe_type(annotation).removeprefix("a ").removeprefix("an ")
    if origin is not None:  # os.PathLike[str]: its class's name
        annotation = origin
    name = getattr(annotation, "__name__", str(annotation))
    return "path" if name == "PathLike" else name


def check_setting_types(func: str, values: Mapping[str, Any], hints: Mapping[str, Any],
                        error: type[Exception] = TypeError) -> None:
    """Raise `error` naming every setting in `values` whose value does not fit its annotation in `hints` (a
    dataclass's or a function's `typing.get_type_hints`), with the type it expects. Names not in `hints` are
    left to the caller's unknown-name check."""
    wrong = [f"{name}={value!r} is {_a_type(value)}; it takes {describe_type(hints[name])}"
             for name, value in values.items() if name in hints and not value_fits(value, hints[name])]
    if wrong:
        raise error(f"{func}(): " + "; ".join(wrong))


def _a_type(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return ("an " if name[:1] in "aeiou" else "a ") + name

"""Config dataclasses: `option()` fields whose help and choices the CLI turns into flags, and the checks
every config runs on construction (the Python API passes values unconverted, so types are checked too)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

import numpy as np


def option(default: Any, help: str, **kw: Any) -> Any:
    """A config field whose help text (and choices) the CLI turns into a flag: one source of truth."""
    return field(default=default, metadata={"help": help, **kw})


def check_choices(config: Any) -> None:
    """Every field declared with `choices=` holds one of them (for configs built in Python, not the CLI)."""
    from dataclasses import fields

    for f in fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise ValueError(f"{f.name}={value!r}; choose one of {', '.join(map(repr, choices))}")


def _type_problem(value: Any, hint: Any) -> str | None:
    """What `value` should be to match the annotation `hint`, or None when it matches (or is not checked)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        if None in problems:
            return None
        return " or ".join([*(p for p in problems if p), *(["None"] if type(None) in args else [])])
    if origin is typing.Literal:
        return None  # a value, not a type: `check_types` gives the choices
    if hint is bool:
        return None if isinstance(value, (bool, np.bool_)) else "True or False"
    if hint is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        return None if ok else "a whole number"
    if hint is float:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        )
        return None if ok else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is tuple and args[1:] == (Ellipsis,):
        if isinstance(value, str):
            return "a list of strings, not one string"
        ok = isinstance(value, (tuple, list)) and all(_type_problem(v, args[0]) is None for v in value)
        return None if ok else "a list of strings" if args[0] is str else f"a list of {args[0].__name__}"
    if origin is tuple:
        ok = (
            isinstance(value, (tuple, list))
            and len(value) == len(args)
            and all(_type_problem(v, a) is None for v, a in zip(value, args))
        )
        return None if ok else f"a tuple of {len(args)} whole numbers, e.g. (224, 224) for (height, width)"
    return None  # dicts, Any, ...: the config's own checks


def check_types(config: Any) -> None:
    """Every field of a config dataclass holds a value of its annotated type (the Python API gets no
    conversion from the CLI): a TypeError naming the option, the value and what it should be."""
    import typing
    from dataclasses import fields

    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        hint = hints.get(f.name, Any)
        if typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
            raise ValueError(
                f"{f.name}={value!r}; choose one of {', '.join(map(repr, typing.get_args(hint)))}"
            )
        problem = _type_problem(value, hint)
        if problem:
            raise TypeError(f"{f.name} must be {problem}, got {value!r} ({type(value).__name__})")

"""What several commands share: the help formatter, the flags written once (--quiet, --camera, --episodes,
--calibration, --ray-address), and the flags made from config dataclasses (a method's options).

Building flags never imports torch, transformers or a method's model code: the option dataclasses and the
registry table are plain Python (tests/test_cli_help.py checks this).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

#: what each command module's `add_*` gets: makes the subcommand's parser (`name`, then argparse's keywords)
AddCommand = Callable[..., argparse.ArgumentParser]

EPISODES_HELP = (
    "LeRobot episode selection, by episode index: a slice '0:50' (start:stop[:step], stop excluded), "
    "one index '3', or a list '1,4,7' (default: all)"
)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help: appended unless the help already states it (or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))  # 0 is shown
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return action.help
        return text + " (default: %(default)s)"


def add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bar") -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=what)


def add_camera(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--camera", default=None, help="LeRobot datasets: the video key (default: the first camera)"
    )


def add_calibration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibration",
        default=None,
        help="a `topreward calibrate` JSON: also report success_probability and success (score >= threshold)",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_ray_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray-address",
        default=None,
        help="ray: join this running Ray cluster, e.g. 'auto' or 'ray://head:10001' (default: the "
        "RAY_ADDRESS environment variable, else a local Ray for this run)",
    )


def hush_libraries() -> None:
    """`--quiet`: no download / checkpoint-loading bars from huggingface_hub and transformers either."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported: its logging read the environment at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


# ---- dataclass configs <-> flags ------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must look like 256x320 (height x width), got {text!r}") from e
    return h, w


def none_or(parse):
    def convert(text: str):
        return None if text.lower() in ("none", "all") else parse(text)

    return convert


def _shown(default: Any) -> str:
    return repr(default) if isinstance(default, str) else str(default)  # ' True' keeps its space


def add_config_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: tuple[str, ...] = (),
    shown: dict[str, Any] | None = None,
) -> None:
    """One flag per dataclass field; help and choices come from the field's metadata. `shown` names the
    defaults that apply instead of the field's (a method's `recommended`, e.g. Robometer's 1 fps): the help
    says those, and `method_options` applies them to flags not written."""
    hints = typing.get_type_hints(cls)
    shown = shown or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = (
            next((a for a in args if a is not type(None)), hint)
            if isinstance(hint, types.UnionType)
            else hint
        )
        kw: dict[str, Any] = {
            "default": f.default,
            "help": f.metadata.get("help", "") + f" (default: {_shown(shown.get(f.name, f.default))})",
        }
        if typing.get_origin(base) is typing.Literal or "choices" in f.metadata:
            kw["choices"] = list(f.metadata.get("choices") or typing.get_args(base))
        elif base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is tuple and typing.get_args(base)[1:] == (Ellipsis,):
            kw["nargs"] = "+"  # a list of strings, e.g. prompt templates
            kw["help"] = f.metadata.get("help", "") + f" (default: {len(f.default)} built in)"
        elif typing.get_origin(base) is tuple:
            kw["type"] = none_or(parse_size) if optional else parse_size
            kw["metavar"] = "HxW"
        elif base in (int, float):
            kw["type"] = none_or(base) if optional else base
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kw)


def option_classes(method: str) -> tuple[type, ...]:
    """The dataclasses whose fields are a method's options: backend, sampling, the method's own."""
    from topreward.backends.config import BackendConfig
    from topreward.sampling import SamplingConfig
    from topreward.scorers.registry import scorer_class

    return (BackendConfig, SamplingConfig, scorer_class(method).Config)


def add_method_flags(parser: argparse.ArgumentParser, method: str) -> None:
    """`--method` plus the flags of the backend, the sampling and the chosen method (from their dataclasses)."""
    from topreward.scorers.registry import scorer_class

    parser.add_argument(
        "--method",
        default=method,
        help="scoring method (see `topreward list`); put it first to see its flags; default: the method of "
        "a released model named by --model (e.g. robometer for robometer/Robometer-4B), else topreward",
    )
    titles = ("backend options", "sampling options", f"{method} options ({scorer_class(method).description})")
    recommended = getattr(scorer_class(method), "recommended", {})
    for title, cls in zip(titles, option_classes(method)):
        add_config_flags(parser.add_argument_group(title), cls, shown=recommended)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flat scorer options (backend, sampling, method) given on the command line.

    A local model folder's recommended options (`topreward_scoring.json`, e.g. the sampling a trained
    model expects) replace the defaults of the flags not written on the command line.
    """
    from topreward.scorers.pretrained import release_options
    from topreward.scorers.registry import recommended_options

    options = {
        f.name: getattr(args, f.name) for cls in option_classes(args.method) for f in dataclasses.fields(cls)
    }
    saved = recommended_options(options, args.method)
    for name, value in saved.items():
        if name in options and not given(args, "--" + name.replace("_", "-")):
            options[name] = value
    return release_options(options)


def valid_flags(method: str) -> list[str]:
    return [
        "--" + f.name.replace("_", "-") for cls in option_classes(method) for f in dataclasses.fields(cls)
    ]


def peek_method(argv: list[str]) -> str:
    """The `--method` of `argv`; without one, the method of a released model given as `--model`
    (`topreward.scorers.pretrained`), else "topreward"."""
    from topreward.scorers.pretrained import method_for

    model = None
    for i, arg in enumerate(argv):
        if arg == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--method="):
            return arg.split("=", 1)[1]
        if arg == "--model" and i + 1 < len(argv):
            model = argv[i + 1]
        elif arg.startswith("--model="):
            model = arg.split("=", 1)[1]
    return method_for(model) or "topreward"


def given(args: argparse.Namespace, flag: str) -> bool:
    """Whether `flag` was written on the command line (not just left at its default)."""
    return any(a == flag or a.startswith(flag + "=") for a in getattr(args, "argv", []))

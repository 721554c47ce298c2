"""One table of scoring methods: name -> scorer class (whose `Config` is its options dataclass)."""

from __future__ import annotations

from typing import Any

_REGISTRY: dict[str, type] = {}

# One line per built-in method: importing the module registers it.
_BUILTIN = (
    "topreward.scorers.topreward",
    "topreward.scorers.ensemble",
    "topreward.scorers.instruction",
    "topreward.scorers.lrm",
    "topreward.scorers.gvl",
    "topreward.scorers.score",
)


def register(name: str):
    """Class decorator: make a `Scorer` subclass available to `load_scorer(name)` and the CLI."""

    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def _import_builtin() -> None:
    import importlib

    for module in _BUILTIN:
        importlib.import_module(module)


def list_scorers() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def scorer_class(name: str) -> type:
    _import_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown scoring method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _parts():
    from topreward.scorers.base import CONFIG_PARTS

    return CONFIG_PARTS


def load_scorer(name: str = "topreward", *, backend: Any = None, **options: Any):
    """Build a scorer: `load_scorer("topreward", model="Qwen/Qwen3-VL-8B-Instruct", num_prefixes=15)`.

    Args:
        name: a method from `list_scorers()`.
        backend: a backend name ("transformers", the default) or an already loaded backend object to share
            (e.g. one model for several scorers).
        **options: backend, sampling and method options, flat (see `topreward list` and
            `topreward score --method NAME --help`).
    """
    from topreward.scorers.base import recommended_options, split_options

    cls = scorer_class(name)
    if isinstance(backend, str):
        options["backend"], backend = backend, None
    # a model folder's own recommended options (e.g. the sampling it was trained with) fill what is not given
    valid = {f for part in (*_parts(), cls.Config) for f in part.__dataclass_fields__}
    saved = recommended_options(options)
    options = {**{k: v for k, v in saved.items() if k in valid}, **options}
    backend_config, sampling, config = split_options(name, cls.Config, options)
    return cls(config, backend_config=backend_config, sampling=sampling, backend=backend)

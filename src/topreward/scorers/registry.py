"""One table of scoring methods: name -> (config dataclass, scorer class)."""

from __future__ import annotations

from typing import Any

_REGISTRY: dict[str, tuple[type, type]] = {}


def register(name: str, config_cls: type):
    """Class decorator: make a scorer available to `load_scorer(name)` and the CLI."""

    def deco(cls: type) -> type:
        _REGISTRY[name] = (config_cls, cls)
        cls.name = name
        return cls

    return deco


def list_scorers() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def scorer_config_class(name: str) -> type:
    _import_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown scoring method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0]


def load_scorer(name: str = "topreward", *, backend: Any = None, **config: Any):
    """Build a scorer: `load_scorer("topreward", model="Qwen/Qwen3-VL-8B-Instruct", num_prefixes=15)`.

    Args:
        name: a method from `list_scorers()`.
        backend: an already loaded backend to share (e.g. one model for several scorers).
        **config: fields of the method's config dataclass.
    """
    config_cls = scorer_config_class(name)
    unknown = set(config) - set(config_cls.__dataclass_fields__)
    if unknown:
        raise TypeError(
            f"{name}: unknown option(s) {sorted(unknown)}; valid: {sorted(config_cls.__dataclass_fields__)}"
        )
    return _REGISTRY[name][1](config_cls(**config), backend=backend)


def _import_builtin() -> None:
    # Importing a method's module registers it; one line per built-in method.
    import topreward.scorers.topreward  # noqa: F401

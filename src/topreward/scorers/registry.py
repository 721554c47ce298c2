"""One table of scoring methods: name -> scorer class (whose `Config` is its options dataclass); how flat
options (the Python API's keywords, the CLI's flags, a model folder's recommended options) become configs;
and `ScorerSpec`, a scorer named but not loaded (what a Ray worker loads)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from topreward.backends.config import BackendConfig
from topreward.sampling import SamplingConfig
from topreward.scorers.pretrained import known_model, method_for, release_options

_REGISTRY: dict[str, type] = {}

# One line per built-in method: importing the module registers it.
_BUILTIN = (
    "topreward.scorers.topreward",
    "topreward.scorers.ensemble",
    "topreward.scorers.instruction",
    "topreward.scorers.lrm",
    "topreward.scorers.gvl",
    "topreward.scorers.score",
    "topreward.scorers.robometer",
    "topreward.scorers.roboreward",
    "topreward.scorers.lrm_released",
    "topreward.scorers.sole",
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


def load_scorer(name: str | None = None, *, backend: Any = None, **options: Any):
    """Build a scorer: `load_scorer("topreward", model="Qwen/Qwen3-VL-8B-Instruct", num_prefixes=15)`.

    Args:
        name: a method from `list_scorers()`; default: the method of a released model named by `model`
            (`topreward.scorers.pretrained`, e.g. "robometer" for robometer/Robometer-4B), else "topreward".
        backend: a backend name ("transformers", the default) or an already loaded backend object to share
            (e.g. one model for several scorers).
        **options: backend, sampling and method options, flat (see `topreward list` and
            `topreward score --method NAME --help`).
    """
    name = name or method_for(options.get("model")) or "topreward"
    options = release_options(options)  # a released adapter named as the model: its base + the adapter
    cls = scorer_class(name)
    if isinstance(backend, str):
        options["backend"], backend = backend, None
    # the method's, the released model's and the model folder's own recommended options (e.g. the sampling
    # it was trained with) fill what is not given
    valid = {f for part in (*CONFIG_PARTS, cls.Config) for f in part.__dataclass_fields__}
    saved = recommended_options(options, name)
    options = {**{k: v for k, v in saved.items() if k in valid}, **options}
    backend_config, sampling, config = split_options(name, cls.Config, options)
    return cls(config, backend_config=backend_config, sampling=sampling, backend=backend)


CONFIG_PARTS: tuple[type, ...] = (BackendConfig, SamplingConfig)

#: A model folder's recommended scoring options (written by `topreward train` / the demo model's script).
SCORING_FILE = "topreward_scoring.json"


def recommended_options(options: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """The options that replace defaults not given, weakest first: the method's own (`recommended`, e.g.
    Robometer's 1 fps), the released model's (`topreward.scorers.pretrained`) when `method` is the one
    that runs it, and those saved beside the local `model` and `adapter` (`SCORING_FILE`, e.g. the sampling
    it was trained with; the adapter's win)."""
    saved: dict[str, Any] = {}
    if method is not None:
        saved.update(getattr(scorer_class(method), "recommended", {}))
        entry = known_model(options.get("model"))
        if entry is not None and entry.method == method:
            saved.update(entry.options)
    for folder in (options.get("model"), options.get("adapter")):
        path = Path(str(folder)).expanduser() / SCORING_FILE if folder else None
        if path is None or not path.is_file():
            continue
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from e
        if not isinstance(found, dict):
            raise ValueError(f'{path} must hold a JSON object of scoring options, e.g. {{"fps": 4.0}}')
        if isinstance(found.get("size"), list):
            found["size"] = tuple(found["size"])
        saved.update(found)
    return saved


def option_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def split_options(method: str, config_cls: type, options: dict[str, Any]) -> tuple[Any, ...]:
    """Flat options -> (BackendConfig, SamplingConfig, method config); unknown names list the valid ones."""
    parts = (*CONFIG_PARTS, config_cls)
    valid = [n for cls in parts for n in option_names(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"{method}: unknown option(s) {unknown}; valid: {sorted(valid)}")
    return tuple(cls(**{k: v for k, v in options.items() if k in option_names(cls)}) for cls in parts)


@dataclass
class ScorerSpec:
    """A scorer named but not loaded (engine "ray": each worker loads its own): method name and flat options."""

    name: str
    options: dict[str, Any]

    def load(self):
        return load_scorer(self.name, **self.options)

    def configs(self) -> tuple[Any, ...]:
        """(BackendConfig, SamplingConfig, method config) of these options, defaults filled in."""
        return split_options(self.name, scorer_class(self.name).Config, self.options)

    def preparer(self):
        """The frame preparation, built without loading the model (only its video processor config)."""
        return scorer_class(self.name).preparer_for(*self.configs())

    def describe(self) -> dict[str, Any]:
        """What the results will be computed with (`topreward.provenance`): method, every option; no model
        loaded here, so no model description."""
        options = {k: v for part in self.configs() for k, v in asdict(part).items()}
        return {"method": self.name, "config": options, "model": {}}

"""Optional packages: one helper imports them, or says which `pip install 'topreward[extra]'` brings them."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional(module: str, extra: str, purpose: str) -> ModuleType:
    """`module`, imported; if it (or something it needs) is missing, an ImportError naming the extra.

    Args:
        module: dotted module name, e.g. "peft" or "ray.serve".
        extra: the package extra that installs it, e.g. "train" (`pip install 'topreward[train]'`).
        purpose: what needs it, as the subject of the message, e.g. "LoRA adapters".
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise ImportError(f"{purpose} needs {package}: pip install 'topreward[{extra}]' ({e})") from e

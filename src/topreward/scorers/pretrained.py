"""The released reward models topreward knows: naming one selects its protocol.

This is data, as open_clip's pretrained table is: a checkpoint's name -> the method that runs it and the
options its authors use (frame rate, frame cap, evaluation points, readout). `load_scorer(model=...)`
and `topreward score --model ...` without a method look the model up here; options given explicitly
still win. A local folder is recognised the same way: by its layout (a Robometer checkpoint's
`config.yaml` beside head weights), or by the name the Hub gives its download (`models--owner--name`
in the Hugging Face cache, or a folder named like the repository).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KnownModel:
    """One released checkpoint and how its authors run it.

    Attributes:
        model: the Hub id.
        method: the scoring method (`topreward list`) that reproduces its protocol.
        summary: one line for `topreward list`.
        options: flat scorer options its protocol fixes (on top of the method's own defaults).
        code: where the protocol was read (repository and commit).
    """

    model: str
    method: str
    summary: str
    options: dict[str, Any] = field(default_factory=dict)
    code: str = ""


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel(
        model="robometer/Robometer-4B",
        method="robometer",
        summary="Qwen3-VL-4B + trained heads: per-frame progress (10 bins) and success, pairwise preference",
        code="github robometer/robometer c7f38e2",
    ),
    KnownModel(
        model="teetone/RoboReward-4B",
        method="roboreward",
        summary="Qwen3-VL-4B fine-tune: a 1-5 end-state rubric score per prefix (generate, or expected)",
        code="roboreason 0.1.5.2 (roboreward.py, core.generate)",
    ),
    KnownModel(
        model="teetone/RoboReward-8B",
        method="roboreward",
        summary="Qwen3-VL-8B fine-tune: a 1-5 end-state rubric score per prefix (generate, or expected)",
        code="roboreason 0.1.5.2 (roboreward.py, core.generate)",
    ),
)


def known_model(model: str | None) -> KnownModel | None:
    """The table's entry for `model` (a Hub id, its Hub-cache snapshot, or a local folder), or None."""
    if not model:
        return None
    by_id = {m.model.casefold(): m for m in KNOWN_MODELS}
    text = str(model)
    if text.casefold() in by_id:
        return by_id[text.casefold()]
    path = Path(text).expanduser()
    for part in reversed(path.parts):  # ~/.cache/huggingface/hub/models--owner--name/snapshots/<commit>
        if part.startswith("models--") and part.count("--") >= 2:
            return by_id.get(part.removeprefix("models--").replace("--", "/", 1).casefold())
    if not path.is_dir():
        return None
    if _is_robometer_folder(path):
        return by_id["robometer/robometer-4b"]
    by_name = {m.model.split("/")[-1].casefold(): m for m in KNOWN_MODELS}
    return by_name.get(path.resolve().name.casefold())


def method_for(model: str | None) -> str | None:
    """The method that runs `model` by its authors' protocol, if the table knows it."""
    entry = known_model(model)
    return entry.method if entry else None


def _is_robometer_folder(path: Path) -> bool:
    """A Robometer checkpoint: `config.yaml` beside weights that hold a progress head."""
    from topreward.backends.robometer import weight_files

    if not (path / "config.yaml").is_file():
        return False
    try:
        names = weight_files(path)
    except (ValueError, OSError, json.JSONDecodeError):
        return False
    return any(k.startswith("progress_head.") for k in names)

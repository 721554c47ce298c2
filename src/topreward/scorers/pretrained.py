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
    #: for a LoRA adapter (a Hub repo's sub-folder): the model it goes on, when its config names none here
    base_model: str | None = None


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
    KnownModel(
        model="Philip-MIT/SOLE-R1-8B",
        method="sole",
        summary="Qwen3-VL-8B reasoner: first | previous | current composite, progress % per frame (sampled)",
        code="roboreason 0.1.5.2 (sole.py, core.generate)",
    ),
    *(
        KnownModel(
            model=f"USC-PSI-Lab/LRM-models/{head}",
            method=f"lrm-released-{head}",
            summary=f"LRM's {head} LoRA adapter on Qwen3-VL-8B-Instruct: {what}",
            code="github physical-superintelligence-lab/Large-Reward-Models 5845ab0 (vlm_reward_server.py)",
            base_model="Qwen/Qwen3-VL-8B-Instruct",
        )
        for head, what in (
            ("progress", "completion 0.0..1.0 per frame, JSON (generate, or expected)"),
            ("completion", "task completed yes/no per frame, JSON (generate, or expected)"),
            ("contrastive", "which of two frames is closer to done, +1/-1 (generate)"),
        )
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
    parts = path.parts
    for i, part in enumerate(parts):  # ~/.cache/huggingface/hub/models--owner--name/snapshots/<commit>[/sub]
        if part.startswith("models--") and part.count("--") >= 2:
            repo = part.removeprefix("models--").replace("--", "/", 1)
            return by_id.get("/".join((repo, *parts[i + 3 :])).casefold())
    if not path.is_dir():
        return None
    if _is_robometer_folder(path):
        return by_id["robometer/robometer-4b"]
    resolved = path.resolve().parts
    for entry in KNOWN_MODELS:  # a folder named like the repository (and its sub-folder)
        tail = entry.model.split("/")[1:]
        if [p.casefold() for p in resolved[-len(tail) :]] == [t.casefold() for t in tail]:
            return entry
    return None


def release_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` with a released adapter named as `model` (`USC-PSI-Lab/LRM-models/progress`, or its local
    folder) turned into what loads it: its base as `model`, the adapter folder as `adapter`."""
    entry = known_model(options.get("model"))
    if entry is None or entry.base_model is None or options.get("adapter"):
        return options
    from topreward.backends.adapters import ADAPTER_CONFIG

    folder = _adapter_folder(entry, str(options["model"]), options.get("revision"))
    config = folder / ADAPTER_CONFIG
    if not config.is_file():
        raise ValueError(f"{folder} has no {ADAPTER_CONFIG}: it is not a download of {entry.model}")
    recorded = json.loads(config.read_text()).get("base_model_name_or_path")
    base = recorded if recorded and Path(recorded).expanduser().is_dir() else entry.base_model
    return {**options, "model": base, "adapter": str(folder)}


def _adapter_folder(entry: KnownModel, model: str, revision: str | None) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    repo, sub = "/".join(entry.model.split("/")[:2]), "/".join(entry.model.split("/")[2:])
    from topreward.backends.loading import hub_snapshot

    return hub_snapshot(repo, revision, [f"{sub}/*"], f"the {sub!r} folder") / sub


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

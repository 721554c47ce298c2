"""Checkpoints of a training run: saved atomically, the latest found, a resume refused for other settings."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from topreward.atomic import replacing
from topreward.backends.adapters import model_key
from topreward.provenance import differences
from topreward.train import METHOD_OF
from topreward.train.config import TrainConfig

STATE = "trainer_state.json"


def save(dirpath: Path, backend, model, optimizer, step: int, config: TrainConfig, lora: bool) -> Path:
    """The model (or adapter), its processor, the optimizer and the step into `dirpath`, atomically."""
    import torch

    with replacing(dirpath) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        if not lora:
            backend.processor.save_pretrained(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        state = {"step": step, "config": asdict(config), "lora": lora, "method": METHOD_OF[config.head]}
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        if lora:  # the base model an adapter belongs to, for load_adapter's check
            cfg = json.loads((tmp / "adapter_config.json").read_text())
            cfg["base_model_name_or_path"] = model_key(config.model)
            (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=1))
    return dirpath


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(
        (p for p in out.glob("checkpoint-*") if (p / STATE).is_file()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return found[-1] if found else None


def check_resume(config: TrainConfig, checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's saved state; an error listing what differs if it was trained with other settings."""
    state = json.loads((checkpoint / STATE).read_text())
    diff = differences(TrainConfig(**state["config"]).comparable(), config.comparable())
    if diff:
        raise ValueError(
            f"{checkpoint} was trained with other settings: {'; '.join(diff)}; resume with the same settings, or "
            "train into another --out"
        )
    return state

"""Fine-tuning reward models on your own robot data (`topreward train`): LRM heads and a TOPReward head.

`train(TrainConfig(...))` runs it (`topreward.train.loop`); the heads and their losses are in
`topreward.train.heads`, checkpoints in `checkpoints`, the run's settings in `config`. The names here
import without torch (the CLI's `--help` reads `HEADS`).

It imports the methods (a head's prompt and forward are its method's), the engine and the basics; only the
command line imports it.
"""

from __future__ import annotations

from typing import Any

HEADS: tuple[str, ...] = ("topreward", "progress", "completion", "contrast")
#: the method that scores with each head's answer
METHOD_OF = {
    "topreward": "topreward",
    "progress": "lrm-progress",
    "completion": "lrm-completion",
    "contrast": "lrm-contrast",
}

__all__ = ["HEADS", "METHOD_OF", "TrainConfig", "TrainResult", "TrainingDiverged", "load_adapter", "train"]


def __getattr__(name: str) -> Any:
    if name == "load_adapter":
        from topreward.backends.adapters import load_adapter

        return load_adapter
    if name in ("TrainConfig", "TrainResult", "TrainingDiverged"):
        from topreward.train import config

        return getattr(config, name)
    if name == "train":
        from topreward.train.loop import train

        return train
    raise AttributeError(f"module 'topreward.train' has no attribute {name!r}")

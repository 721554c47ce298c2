"""What a training run depends on (`TrainConfig`, recorded in every checkpoint) and what it returns."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from topreward.episode import CONTROL_VIEWS
from topreward.sampling import SamplingConfig
from topreward.train import HEADS

#: options that may differ on --resume (how long to run, how often to report)
RESUMABLE = ("steps", "eval_every", "checkpoint_every", "resume")


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainConfig:
    """Everything a training run depends on (recorded in every checkpoint)."""

    head: str
    sources: list[str]
    model: str
    out: str
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 4
    lora: str = "auto"  # auto | yes | no
    lora_rank: int = 16
    val_fraction: float = 0.2
    seed: int = 0
    num_points: int = 8
    done_at: float = 0.95
    demos_succeed: bool = False  # unlabelled episodes are successful demonstrations (time-based progress)
    progress_column: str = "progress"  # LeRobot datasets: a per-frame ground-truth column, when there is one
    augment: tuple[str, ...] = ()  # control views added to training: "static", "reversed" (see `views`)
    eval_every: int = 50
    checkpoint_every: int = 50
    resume: bool = False
    device: str | None = None
    dtype: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r}; choose one of {', '.join(HEADS)}")
        if self.lora not in ("auto", "yes", "no"):
            raise ValueError(f"lora={self.lora!r}; choose auto, yes or no")
        for name in ("steps", "batch_size", "lora_rank", "num_points", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_points < 2:
            raise ValueError(f"num_points must be >= 2, got {self.num_points}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (0 <= self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not (0 < self.done_at <= 1):
            raise ValueError(f"done_at must be in (0, 1], got {self.done_at!r}")
        out = Path(self.out).expanduser().resolve()
        for spec in self.sources:
            src = Path(spec).expanduser().resolve()  # a dataset folder, or a manifest / video file
            if out == src or (src.is_dir() and src in out.parents):
                raise ValueError(
                    f"--out {self.out} is inside the source {spec}: checkpoints would be written into your data; "
                    "pick a folder outside it"
                )
        self.augment = tuple(self.augment)
        bad = set(self.augment) - set(CONTROL_VIEWS)
        if bad:
            raise ValueError(f"augment: unknown view(s) {sorted(bad)}; choose from {', '.join(CONTROL_VIEWS)}")
        if not self.sources:
            raise ValueError(
                "name at least one source with ground truth (manifest, LeRobot dataset, sim output)"
            )
        SamplingConfig(**self.sampling)  # validates the sampling options early

    def comparable(self) -> dict[str, Any]:
        """The settings a resumed run must share, as JSON would hold them (tuples as lists)."""
        return json.loads(json.dumps({k: v for k, v in asdict(self).items() if k not in RESUMABLE}))


@dataclass
class TrainResult:
    out: Path
    steps: int
    losses: list[float]
    evaluations: list[dict[str, Any]]

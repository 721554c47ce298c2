"""`ScoreResult`: what a scorer returns for one episode, and its stable JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_ARRAYS = (
    "sampled_frames",
    "prefix_lengths",
    "prefix_end_frames",
    "log_p_true",
    "log_p_false",
    "progress",
    "frame_progress",
    "dense_rewards",
)


@dataclass
class ScoreResult:
    """One episode's scores.

    Attributes:
        method: registered scorer name ("topreward").
        instruction: the task text that was scored.
        num_frames: number of source frames; fps: their rate.
        sampled_frames: source index of every frame the model saw.
        prefix_lengths: number of sampled frames in each scored prefix.
        prefix_end_frames: source index of each prefix's last frame.
        log_p_true: log P(" True") after each prefix (the raw reward, Eq.1).
        log_p_false: log P(" False") after each prefix.
        progress: per-prefix min-max normalised log P(True) in [0, 1] (Eq.2).
        frame_progress: progress at every source frame (linear between prefix ends).
        success_score: mean log P(True) over the last prefixes (§5.2).
        dense_rewards: per source frame reward from progress increments (Eq.3, see `topreward.rewards`).
        config: the scorer's configuration; model: id, revision, family, dtype, device.
        version: topreward version; timings: seconds per stage.
    """

    method: str
    instruction: str
    num_frames: int
    fps: float
    sampled_frames: np.ndarray
    prefix_lengths: np.ndarray
    prefix_end_frames: np.ndarray
    log_p_true: np.ndarray
    log_p_false: np.ndarray
    progress: np.ndarray
    frame_progress: np.ndarray
    success_score: float
    dense_rewards: np.ndarray
    config: dict[str, Any]
    model: dict[str, Any]
    version: str
    timings: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    episode_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = np.asarray(value).tolist() if name in _ARRAYS else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in _ARRAYS:
            known[name] = np.asarray(known[name])
        return cls(**known)

    def save(self, path: str | Path) -> Path:
        """Write JSON (the schema other tools read: keys as in `to_dict`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScoreResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

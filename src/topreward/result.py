"""`ScoreResult`: what a scorer returns for one episode, and its stable JSON form.

A common core that every method fills (evaluation points, raw `values`, `progress` in [0, 1],
`frame_progress`, `success_score`, `dense_rewards`, config, model, version, timings, provenance), plus the
method's own `signals` (TOPReward: `log_p_true`, `log_p_false`; an ensemble: per-prompt values; ...). In
JSON the signals stand beside the core keys at the top level, so TOPReward's files keep the keys they always
had; `result.log_p_true` reads a signal like an attribute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topreward.atomic import write_text

_ARRAYS = (
    "sampled_frames",
    "prefix_lengths",
    "prefix_end_frames",
    "values",
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
        values: the method's raw value per evaluation point (TOPReward: log P(" True"), Eq.1).
        value_name: what `values` are, for tables and plots.
        progress: per evaluation point, in [0, 1] (min-max normalised values, Eq.2, unless the method
            gives progress itself).
        frame_progress: progress at every source frame (linear between prefix ends).
        success_score: higher = more likely a success (default: mean value of the last points, §5.2).
        dense_rewards: per source frame reward from progress increments (Eq.3, see `topreward.rewards`).
        config: every option of the scorer (backend, sampling, method); model: id, revision, family, dtype,
            device. version: topreward version; timings: seconds per stage.
        signals: method-specific values (TOPReward: `log_p_true`, `log_p_false` per prefix).
        success_probability, success: P(success) and the decision `success_score >= threshold`, set by a
            calibration (`topreward.calibration.Calibration.apply`); None when uncalibrated.
        calibration: which calibration set them (path, mapping, threshold, the scores it was fitted on).
        provenance: what the result was computed from (`topreward.provenance`): resolved source, camera,
            method, config, model id (absolute path of a local folder) and commit, device, dtype, package
            version, date.
    """

    method: str
    instruction: str
    num_frames: int
    fps: float
    sampled_frames: np.ndarray
    prefix_lengths: np.ndarray
    prefix_end_frames: np.ndarray
    values: np.ndarray
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
    value_name: str = "value"
    signals: dict[str, Any] = field(default_factory=dict)
    success_probability: float | None = None
    success: bool | None = None
    calibration: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = set(self.signals) & set(self.__dataclass_fields__)
        if clash:
            raise ValueError(
                f"signal name(s) {sorted(clash)} collide with the result's own keys; rename them"
            )

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: signals read like attributes (result.log_p_true)
        signals = self.__dict__.get("signals", {})
        if name in signals:
            return signals[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or signal {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "signals":
                continue
            value = getattr(self, name)
            out[name] = np.asarray(value).tolist() if name in _ARRAYS else value
        out.update({k: _plain(v) for k, v in self.signals.items()})
        out["signal_names"] = sorted(self.signals)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreResult:
        core = set(cls.__dataclass_fields__) - {"signals"}
        known = {k: v for k, v in data.items() if k in core}
        names = data.get("signal_names", [k for k in data if k not in core])
        known["signals"] = {k: _array_or_value(data[k]) for k in names if k in data}
        if "values" not in known and "log_p_true" in data:  # files written before `values` existed
            known["values"] = data["log_p_true"]
        for name in _ARRAYS:  # null (a non-finite number when saved) back to NaN
            value = known[name]
            known[name] = np.asarray(
                [np.nan if v is None else v for v in value] if isinstance(value, list) else value
            )
        if known.get("success_score", 0.0) is None:
            known["success_score"] = float("nan")
        return cls(**known)

    def save(self, path: str | Path) -> Path:
        """Write JSON (the schema other tools read: keys as in `to_dict`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(strict_json(self.to_dict()), indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScoreResult:
        return cls.from_dict(json.loads(Path(path).read_text()))


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float (NaN, inf: e.g. a failed episode's values) as None: strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSON-ready form of a signal (arrays and numpy scalars to lists and floats, recursively)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _array_or_value(value: Any) -> Any:
    """Numeric lists back to arrays; anything else (text, dicts) as it is."""
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) or v is None for v in value):
        return np.asarray([np.nan if v is None else v for v in value], dtype=np.float64)
    return value

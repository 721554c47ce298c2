"""Labelled success scores from what users have: `topreward bench` output folders (episodes.jsonl), JSONL or CSV
files of records with `success_score` and `success`."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward.worklog import read_jsonl

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- labelled inputs


@dataclass
class LabelledScores:
    """Success scores with labels, read from bench output or a JSONL/CSV of records."""

    scores: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: list[str]
    scored_with: dict[str, Any]
    sources: list[str]
    unlabelled: int = 0
    skipped: int = 0


def _label(value: Any, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"{where}: success={value!r} is not a label; use true/false or 1/0 (empty = unlabelled)")


def _read_records(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        episodes = path / "episodes.jsonl"
        if not episodes.is_file():
            raise FileNotFoundError(
                f"{path} has no episodes.jsonl; pass a `topreward bench --out` folder or a JSONL/CSV of records"
            )
        path = episodes
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a bench output folder or a JSONL/CSV of records")
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return read_jsonl(path)


def _model_id(rec: dict[str, Any]) -> str | None:
    model = rec.get("model", rec.get("model_id"))
    return model.get("id") if isinstance(model, dict) else model


def load_labelled(paths: str | Path | Sequence[str | Path]) -> LabelledScores:
    """Labelled success scores from bench output folders (`<out>/episodes.jsonl`) or JSONL/CSV files.

    A record needs `success_score` and `success` (true/false, 1/0; missing or empty = unlabelled, left
    out). Records bench marked `skipped` are left out. `method`, `value_name`, `model` (or `model_id`)
    and `success_window` are read where records carry them (all records must agree).

    Raises:
        ValueError: a record without `success_score` (a dataset manifest: score it with `topreward bench`
            first), a non-finite score (naming the record), a bad label, records of several methods.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    scores, labels, ids, groups = [], [], [], []
    unlabelled = skipped = 0
    seen: dict[str, set] = {k: set() for k in ("method", "value_name", "model", "success_window")}
    for path in map(Path, paths):
        for n, rec in enumerate(_read_records(path), 1):
            episode = "/".join(str(rec[k]) for k in ("dataset", "episode_id") if rec.get(k) not in (None, ""))
            where = f"{path} record {n}" + (f" ({episode})" if episode else "")
            if rec.get("skipped"):
                skipped += 1
                continue
            if "success_score" not in rec:
                raise ValueError(
                    f"{where} has no success_score: if {path} is a dataset (manifest), score it first, e.g. "
                    f"`topreward bench {path} --controls none --out bench_out`, then "
                    "`topreward calibrate bench_out`"
                )
            label = _label(rec.get("success"), where)
            if label is None:
                unlabelled += 1
                continue
            raw = rec["success_score"]
            try:
                score = float("nan") if raw in (None, "") else float(raw)
            except ValueError as e:
                raise ValueError(f"{where}: success_score={raw!r} is not a number") from e
            if not math.isfinite(score):
                raise ValueError(
                    f"{where} has success_score {raw!r} (not a finite number); re-score that episode or drop "
                    "the record"
                )
            scores.append(score)
            labels.append(label)
            ids.append(where)
            groups.append(f"{path}:{episode}" if episode else f"{path}:{n}")
            seen["method"].add(rec.get("method") or None)
            seen["value_name"].add(rec.get("value_name") or None)
            seen["model"].add(_model_id(rec) or None)
            window = rec.get("success_window") or (rec.get("config") or {}).get("success_window")
            seen["success_window"].add(int(window) if window not in (None, "") else None)
    scored_with: dict[str, Any] = {}
    for key, values in seen.items():
        known = values - {None}
        if len(known) > 1:
            raise ValueError(
                f"the records mix {key}s {sorted(map(str, known))}; calibrate one at a time (one input per "
                f"{key})"
            )
        scored_with[key] = known.pop() if known else None
    return LabelledScores(
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels, dtype=bool),
        ids,
        groups,
        scored_with,
        [str(p) for p in paths],
        unlabelled,
        skipped,
    )



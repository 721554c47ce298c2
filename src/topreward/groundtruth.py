"""Per-frame ground-truth progress for an episode, from its annotations (pure numpy).

Recipe (`ground_truth_for`), first rule that applies wins:

1. ``"progress"`` given: a per-frame list in [0, 1], used as is after checking length and values.
2. ``"subtasks"`` given: ManiRewardBench stage-aware progress (`stage_progress`). For frame ``i`` at time
   ``t = i / fps`` and ``K`` subtasks, ``progress(t) = (completed subtasks + elapsed fraction of the current
   subtask) / K``; 0 before the first subtask starts, 1 after the last one ends, flat in gaps between
   subtasks. Equivalently ``progress(t) = mean_k clip((t - start_k) / (end_k - start_k), 0, 1)``.
3. ``"success": True`` without annotations: time-based progress, linear from 0 to 1 (`time_progress`);
   a successful demonstration is assumed to advance at a constant rate.
4. Otherwise ``None``: a failed (or unlabelled) episode without annotations has no progress ground truth,
   because how far a failure got cannot be read off its length. Metrics should skip it, not score it as 0.

Malformed annotations raise ``ValueError`` naming the episode and the offending subtask; nothing here
silently returns zeros.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Rounding slack when comparing annotation times given in seconds.
_EPS = 1e-9


def _check_frames_fps(num_frames: int, fps: float, episode: str) -> None:
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames <= 0:
        raise ValueError(f"episode {episode}: num_frames must be a positive integer, got {num_frames!r}")
    try:
        ok = math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"episode {episode}: fps must be a positive number, got {fps!r}")


def _subtask_times(
    subtasks: Sequence[Mapping[str, Any]], episode: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if isinstance(subtasks, (str, bytes)) or not isinstance(subtasks, Sequence):
        raise TypeError(
            f"episode {episode}: subtasks must be a list of {{'name', 'start', 'end'}} dicts, "
            f"got {type(subtasks).__name__}"
        )
    if len(subtasks) == 0:
        raise ValueError(
            f"episode {episode}: subtasks is an empty list; drop the key (or set it to null) when the "
            "episode has no subtask annotations"
        )
    starts, ends, names = [], [], []
    for k, sub in enumerate(subtasks):
        if not isinstance(sub, Mapping):
            raise TypeError(
                f"episode {episode}: subtask #{k} must be a dict with 'start' and 'end', got {sub!r}"
            )
        name = str(sub.get("name", f"#{k}"))
        missing = [key for key in ("start", "end") if key not in sub]
        if missing:
            raise ValueError(
                f"episode {episode}: subtask {name!r} (#{k}) lacks {missing}; give times in seconds"
            )
        try:
            start, end = float(sub["start"]), float(sub["end"])
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"episode {episode}: subtask {name!r} has non-numeric times start={sub['start']!r} "
                f"end={sub['end']!r}; give seconds as numbers"
            ) from e
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(
                f"episode {episode}: subtask {name!r} has non-finite times start={start} end={end}"
            )
        starts.append(start)
        ends.append(end)
        names.append(name)
    return np.asarray(starts), np.asarray(ends), names


def validate_subtasks(
    subtasks: Sequence[Mapping[str, Any]], num_frames: int, fps: float, episode: str = "?"
) -> None:
    """Raise ``ValueError`` unless `subtasks` are sorted, non-overlapping segments inside the episode.

    The last subtask may end at most one frame period after the episode's duration ``num_frames / fps``
    (annotators often mark the end of the last frame rather than its start).
    """
    _check_frames_fps(num_frames, fps, episode)
    starts, ends, names = _subtask_times(subtasks, episode)
    duration = num_frames / fps
    for k, (start, end, name) in enumerate(zip(starts, ends, names, strict=True)):
        where = f"episode {episode}: subtask {name!r} (#{k}, start={start:g}s, end={end:g}s)"
        if start < 0:
            raise ValueError(f"{where} starts before 0; times are seconds from the first frame")
        if end <= start:
            raise ValueError(f"{where} does not end after it starts; swap or fix the times")
        if start > duration + _EPS:
            raise ValueError(
                f"{where} starts after the episode ends ({num_frames} frames at {fps:g} fps = {duration:g}s); "
                "are the times in frames rather than seconds, or is fps wrong?"
            )
        if end > duration + 1.0 / fps + _EPS:
            raise ValueError(
                f"{where} ends after the episode ({duration:g}s, {num_frames} frames at {fps:g} fps) by more "
                "than one frame period; are the times in frames rather than seconds, or is fps wrong?"
            )
        if k > 0:
            prev = f"{names[k - 1]!r} (start={starts[k - 1]:g}s, end={ends[k - 1]:g}s)"
            if start < starts[k - 1] - _EPS:
                raise ValueError(f"{where} starts before the previous subtask {prev}; sort subtasks by start")
            if start < ends[k - 1] - _EPS:
                raise ValueError(
                    f"{where} overlaps the previous subtask {prev}; subtasks must not overlap "
                    "(let one end where the next starts)"
                )


def stage_progress(
    subtasks: Sequence[Mapping[str, Any]], num_frames: int, fps: float, episode: str = "?"
) -> np.ndarray:
    """ManiRewardBench stage-aware progress per frame, shape ``(num_frames,)``, values in [0, 1].

    Args:
        subtasks: ``[{"name": ..., "start": seconds, "end": seconds}, ...]`` in time order.
        num_frames: number of frames of the episode.
        fps: frame rate; frame ``i`` is at time ``i / fps``.
        episode: episode id, used in error messages.

    Raises:
        ValueError: empty, unsorted, overlapping or out-of-range subtasks (see `validate_subtasks`).
    """
    validate_subtasks(subtasks, num_frames, fps, episode)
    starts, ends, _ = _subtask_times(subtasks, episode)
    t = np.arange(num_frames, dtype=np.float64) / fps
    # Completed subtasks contribute 1, the running one its elapsed fraction, later ones 0.
    fractions = np.clip((t[:, None] - starts[None, :]) / (ends - starts)[None, :], 0.0, 1.0)
    return fractions.mean(axis=1)


def time_progress(num_frames: int) -> np.ndarray:
    """Linear progress 0 -> 1 over `num_frames` frames (a single frame is complete: ``[1.0]``)."""
    if int(num_frames) != num_frames or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if num_frames == 1:
        return np.ones(1)
    return np.linspace(0.0, 1.0, int(num_frames))


def ground_truth_for(
    episode_annotations: Mapping[str, Any], num_frames: int, fps: float, episode: str = "?"
) -> np.ndarray | None:
    """Per-frame ground-truth progress from an episode's annotations, or ``None`` when there is none.

    Uses ``"progress"`` if present, else ``"subtasks"``, else linear time if ``"success"`` is True; see the
    module docstring. Failures without annotations return ``None`` (no ground truth), never zeros.

    Raises:
        ValueError: ``progress`` of the wrong length, with NaN/inf or outside [0, 1]; malformed subtasks.
    """
    _check_frames_fps(num_frames, fps, episode)
    progress = episode_annotations.get("progress")
    if progress is not None:
        try:
            arr = np.asarray(progress, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"episode {episode}: progress must be a list of numbers, got {progress!r:.80}"
            ) from e
        if arr.ndim != 1 or len(arr) != num_frames:
            raise ValueError(
                f"episode {episode}: progress has shape {arr.shape} but the episode has {num_frames} frames; "
                "give one value per frame"
            )
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"episode {episode}: progress[{bad}] = {arr[bad]} is not finite")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                f"episode {episode}: progress must lie in [0, 1], got range [{arr.min():g}, {arr.max():g}]; "
                "rescale it (e.g. divide percentages by 100)"
            )
        return arr
    subtasks = episode_annotations.get("subtasks")
    if subtasks is not None:
        return stage_progress(subtasks, num_frames, fps, episode)
    if episode_annotations.get("success") is True:
        return time_progress(num_frames)
    logger.debug("episode %s: no progress, subtasks or success=True; no ground truth", episode)
    return None

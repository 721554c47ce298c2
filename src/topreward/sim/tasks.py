"""The Meta-World tasks `topreward sim` knows: our instruction and stage names for each (Meta-World ships no
instructions), and the ground truth computed from the env's info (pure numpy, testable without Meta-World).

Ground-truth progress per frame (`info_progress`), two equally weighted stages (one for ``reach-v3``, whose
"object" is the hand), from quantities that show in the video: ``reach_t = clip(1 - d_t / d_0, 0, 1)`` with
``d`` the hand-to-object distance; ``place_t = clip((ip_t - ip_0) / (1 - ip_0), 0, 1)`` with ``ip`` the env's
``in_place_reward``; ``moved_t`` = ``ip`` has exceeded ``ip_0 + 0.02`` at some frame <= t.
``progress_t = 1`` if ``success_t``, else ``0.5 * (1 if moved_t else reach_t) + 0.5 * place_t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_MOVE_EPS = 0.02  # rise of in_place_reward that marks the object moving towards the goal


@dataclass(frozen=True)
class TaskSpec:
    """Our instruction for a Meta-World task and the names of its stages (the last one ends in success)."""

    instruction: str
    stages: tuple[str, ...]


# Tasks whose scripted expert succeeds and stays successful within 150 steps (door-open-v3 excepted: the door
# swings back, so its experts end with success=False and success_disagreement=True). handle-press-v3 and
# coffee-button-v3 are left out for that reason: the handle/button springs back once released.
TASKS: dict[str, TaskSpec] = {
    "reach-v3": TaskSpec("reach the red target position", ("reach",)),
    "push-v3": TaskSpec("push the puck to the goal", ("reach", "push")),
    "pick-place-v3": TaskSpec("pick up the puck and place it at the goal", ("reach", "pick and place")),
    "drawer-open-v3": TaskSpec("open the drawer", ("reach", "pull")),
    "drawer-close-v3": TaskSpec("close the drawer", ("reach", "push")),
    "button-press-topdown-v3": TaskSpec("press the button from the top", ("reach", "press")),
    "button-press-v3": TaskSpec("press the button", ("reach", "press")),
    "door-open-v3": TaskSpec("open the door", ("reach", "pull")),
    "window-open-v3": TaskSpec("slide the window open", ("reach", "slide")),
    "window-close-v3": TaskSpec("slide the window closed", ("reach", "slide")),
    "faucet-open-v3": TaskSpec("turn the faucet handle to open it", ("reach", "turn")),
    "faucet-close-v3": TaskSpec("turn the faucet handle to close it", ("reach", "turn")),
    "plate-slide-v3": TaskSpec("slide the plate into the goal", ("reach", "slide")),
}
TASK_INSTRUCTIONS: dict[str, str] = {name: spec.instruction for name, spec in TASKS.items()}


def list_tasks() -> list[str]:
    """Meta-World tasks we have an instruction for."""
    return sorted(TASKS)


def task_spec(task: str) -> TaskSpec:
    """The `TaskSpec` of `task`, or ``ValueError`` listing the supported tasks."""
    if task not in TASKS:
        table = "\n".join(f"  {name}: {spec.instruction!r}" for name, spec in sorted(TASKS.items()))
        raise ValueError(
            f"unknown Meta-World task {task!r}; supported tasks and their instructions:\n{table}"
        )
    return TASKS[task]




def moved_mask(in_place: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per frame: has ``in_place_reward`` exceeded its first value by more than 0.02 at this frame or before?"""
    ip = np.asarray(in_place, dtype=np.float64)
    return np.maximum.accumulate(ip > ip[0] + _MOVE_EPS)


def info_progress(
    hand_obj_dist: Sequence[float] | np.ndarray,
    in_place: Sequence[float] | np.ndarray,
    success: Sequence[bool] | np.ndarray,
    two_stage: bool = True,
) -> np.ndarray:
    """Per-frame ground-truth progress in [0, 1]; the formula is step 4 of the module recipe.

    Args:
        hand_obj_dist: hand-to-object distance per frame.
        in_place: the env's ``in_place_reward`` per frame (0..1, 1 with the object at the goal).
        success: the env's ``success`` flag per frame.
        two_stage: reach then manipulate (False: `in_place` alone, for tasks where the hand is the object).
    """
    d = np.asarray(hand_obj_dist, dtype=np.float64)
    ip = np.asarray(in_place, dtype=np.float64)
    s = np.asarray(success, dtype=bool)
    if not (d.ndim == 1 and d.shape == ip.shape == s.shape and d.size > 0):
        raise ValueError(
            f"hand_obj_dist, in_place and success must be 1-D of one non-zero length, got "
            f"{d.shape}, {ip.shape}, {s.shape}"
        )
    place = np.clip((ip - ip[0]) / max(1.0 - ip[0], 1e-6), 0.0, 1.0)
    if two_stage:
        reach = np.clip(1.0 - d / d[0], 0.0, 1.0) if d[0] > 0 else np.ones_like(d)
        progress = 0.5 * np.where(moved_mask(ip), 1.0, reach) + 0.5 * place
    else:
        progress = place
    return np.where(s, 1.0, progress)


def stage_labels(
    in_place: Sequence[float] | np.ndarray, success: Sequence[bool] | np.ndarray, stages: Sequence[str]
) -> list[str]:
    """Per-frame stage names: ``done`` on success frames, else the last stage once `moved_mask`, else the first."""
    moved = moved_mask(in_place)
    s = np.asarray(success, dtype=bool)
    first, last = stages[0], stages[-1]
    return ["done" if s[i] else (last if moved[i] else first) for i in range(len(s))]


def subtasks_from_stages(
    labels: Sequence[str], stages: Sequence[str], fps: float
) -> list[dict[str, Any]] | None:
    """Manifest ``subtasks`` (seconds) from the first frame of each stage, or ``None`` if never done.

    A stage starts at the first frame labelled with it or a later stage and ends where the next one starts;
    the last stage ends at the first ``done`` frame. Stages that take no frame are left out.
    """
    order = {name: k for k, name in enumerate(stages)}
    order["done"] = len(stages)
    rank = np.maximum.accumulate([order[label] for label in labels])
    if rank[-1] < len(stages):
        return None
    starts = [int(np.argmax(rank >= k)) for k in range(len(stages) + 1)]
    out = []
    for k, name in enumerate(stages):
        if starts[k + 1] > starts[k]:
            out.append(
                {"name": name, "start": round(starts[k] / fps, 6), "end": round(starts[k + 1] / fps, 6)}
            )
    return out or None

"""Meta-World v3 episodes with dense ground-truth progress: experts and their failed twins.

Backend of ``topreward sim``; needs ``pip install 'topreward[sim]'`` (metaworld, mujoco, packaging) and, on
Debian/Ubuntu, EGL for offscreen rendering (``scripts/install_sim_deps.sh``).

Recipe, per task and seed:

1. Build a fresh goal-observable env, ``ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[task](seed=seed)``; the seed
   fixes object and goal positions there (Meta-World's ``reset(seed=...)``, also called, ignores its seed).
2. Roll out one of the `KINDS` for the same number of steps as the expert twin:
   ``expert`` the scripted policy of ``metaworld.policies.ENV_POLICY_MAP``; ``noisy`` expert actions plus
   Gaussian noise (``noise_std``, clipped to [-1, 1]); ``freeze`` the expert until a random step in
   [20 %, 80 %] of the expert's time to first success, zero actions after; ``random`` uniform actions in
   [-1, 1]. Every kind is labelled by its outcome (a noisy run often still succeeds).
3. Render the reset state and the state after each step (``max_steps + 1`` frames) from the ``corner``
   camera at 224x224 with shadows off (3-4x faster on CPU); that camera is mounted upside down, so each
   image is rotated 180 degrees (``img[::-1, ::-1]``). Write an H.264 mp4 (`topreward.video.write_video`,
   x264 ``threads=1`` so the same seed gives identical bytes).
4. Ground truth per frame from the env's shaped reward ``r_t`` (0..10, reward version v2) and ``success_t``:
   ``g_t = 1 if success_t else clip(r_t / 10, 0, 1)`` and ``progress_t = clip((g_t - g_0) / (1 - g_0), 0, 1)``
   -- 0 at the start of every episode, 1 while the task counts as solved, in between the env's own shaping
   (distance to object, grasp, object-to-goal), which may fall again when a failure undoes progress.
5. Stage labels per frame: ``done`` while ``success_t``; the task's manipulation stage (e.g. ``push``) once
   ``in_place_reward`` has risen by more than 0.02 over its reset value (the object moved towards the goal);
   ``reach`` before. Episodes that end in success also get ``subtasks`` (manifest format, seconds) from the
   first frame of each stage, so `topreward.groundtruth.stage_progress` applies to them too.
6. One JSON line per episode in ``manifest.jsonl``: ``video``, ``instruction``, ``fps``, ``episode_id``,
   ``success`` (= ``final_success``, success at the last frame), ``ever_success``, ``success_disagreement``
   (the two differ, e.g. a door that swings shut again), ``progress``, ``reward``, ``stages``, ``kind``,
   ``task``, ``seed`` and the generator settings. Existing episodes (mp4 and manifest line) are skipped.

Meta-World ships no instructions; `TASK_INSTRUCTIONS` holds ours.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from topreward.video import write_video

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("expert", "noisy", "freeze", "random")
CAMERA = "corner"
MAX_REWARD = 10.0  # Meta-World v2 reward functions are scaled to [0, 10]
MAX_PATH_LENGTH = 500  # Meta-World refuses to step an env further than this
_MOVE_EPS = 0.02  # rise of in_place_reward that marks the object moving towards the goal
_INSTALL_HINT = "pip install 'topreward[sim]'"


@dataclass(frozen=True)
class TaskSpec:
    """Our instruction for a Meta-World task and the names of its stages (the last one ends in success)."""

    instruction: str
    stages: tuple[str, ...]


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
    "handle-press-v3": TaskSpec("press the handle down", ("reach", "press")),
    "coffee-button-v3": TaskSpec("press the button on the coffee machine", ("reach", "press")),
}
TASK_INSTRUCTIONS: dict[str, str] = {name: spec.instruction for name, spec in TASKS.items()}


def list_tasks() -> list[str]:
    """Meta-World tasks we have an instruction for."""
    return sorted(TASKS)


def fixture_dir() -> Path:
    """Folder of the small generated set shipped with the package (``manifest.jsonl`` + ``videos/``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "sim_fixture"


def task_spec(task: str) -> TaskSpec:
    """The `TaskSpec` of `task`, or ``ValueError`` listing the supported tasks."""
    if task not in TASKS:
        table = "\n".join(f"  {name}: {spec.instruction!r}" for name, spec in sorted(TASKS.items()))
        raise ValueError(
            f"unknown Meta-World task {task!r}; supported tasks and their instructions:\n{table}"
        )
    return TASKS[task]


# --------------------------------------------------------------------------------------------------------
# Ground truth from the env's info (pure numpy, testable without Meta-World)


def shaped_progress(
    rewards: Sequence[float] | np.ndarray, success: Sequence[bool] | np.ndarray
) -> np.ndarray:
    """Per-frame progress in [0, 1] from shaped rewards (0..10) and success flags; see step 4 of the recipe.

    ``g_t = 1 if success_t else clip(r_t / 10, 0, 1)``; ``progress_t = clip((g_t - g_0) / (1 - g_0), 0, 1)``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    s = np.asarray(success, dtype=bool)
    if r.ndim != 1 or r.shape != s.shape or r.size == 0:
        raise ValueError(
            f"rewards and success must be 1-D of the same non-zero length, got {r.shape} and {s.shape}"
        )
    g = np.where(s, 1.0, np.clip(r / MAX_REWARD, 0.0, 1.0))
    if g[0] >= 1.0:  # solved from the first frame: nothing left to do
        return np.ones_like(g)
    return np.clip((g - g[0]) / (1.0 - g[0]), 0.0, 1.0)


def stage_labels(
    in_place: Sequence[float] | np.ndarray, success: Sequence[bool] | np.ndarray, stages: Sequence[str]
) -> list[str]:
    """Per-frame stage names: ``done`` on success frames, else the manipulation stage once the object moved."""
    ip = np.asarray(in_place, dtype=np.float64)
    s = np.asarray(success, dtype=bool)
    moved = ip > ip[0] + _MOVE_EPS
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


# --------------------------------------------------------------------------------------------------------
# Meta-World side


@dataclass
class _Sim:
    mujoco: Any
    envs: Mapping[str, Any]
    policies: Mapping[str, Any]
    versions: dict[str, str]


def _import_sim() -> _Sim:
    """Import mujoco (with ``MUJOCO_GL=egl`` unless set) and Meta-World, or explain how to install them."""
    if "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ:
        logger.warning("mujoco was imported before MUJOCO_GL was set; offscreen rendering may not use EGL")
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as e:
        raise ImportError(f"Meta-World episodes need metaworld and mujoco ({e}); {_INSTALL_HINT}") from e
    versions = {}
    for dist in ("metaworld", "mujoco"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return _Sim(mujoco, ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE, ENV_POLICY_MAP, versions)


def _make_renderer(sim: _Sim, model: Any, size: int) -> Any:
    try:
        renderer = sim.mujoco.Renderer(model, height=size, width=size)
    except Exception as e:  # EGL/OSMesa failures surface as several unrelated exception types
        raise RuntimeError(
            f"MuJoCo cannot render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {e!r}. On "
            "Debian/Ubuntu run scripts/install_sim_deps.sh (libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0)"
        ) from e
    renderer.scene.flags[sim.mujoco.mjtRndFlag.mjRND_SHADOW] = False
    return renderer


def rendering_problem() -> str | None:
    """Why Meta-World episodes cannot be rendered here (missing packages or EGL), or ``None`` if they can."""
    try:
        sim = _import_sim()
        env = sim.envs["reach-v3-goal-observable"](seed=0)
        try:
            renderer = _make_renderer(sim, env.model, 16)
            renderer.update_scene(env.data, camera=CAMERA)
            renderer.render()
            renderer.close()
        finally:
            env.close()
    except (ImportError, RuntimeError) as e:
        return str(e)
    return None


@dataclass
class _Rollout:
    frames: np.ndarray | None  # (T + 1, H, W, 3) uint8, None when not rendered
    rewards: np.ndarray  # (T + 1,)
    success: np.ndarray  # (T + 1,) bool
    in_place: np.ndarray  # (T + 1,)
    sim_s: float = 0.0
    render_s: float = 0.0

    @property
    def first_success_frame(self) -> int | None:
        hits = np.flatnonzero(self.success)
        return int(hits[0]) if hits.size else None

    def truncate(self, n: int) -> _Rollout:
        """The first `n` frames of this rollout."""
        frames = None if self.frames is None else self.frames[:n]
        return _Rollout(
            frames, self.rewards[:n], self.success[:n], self.in_place[:n], self.sim_s, self.render_s
        )


def _episode_rng(task: str, seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.encode()), KINDS.index(kind)])


def _rollout(
    sim: _Sim,
    task: str,
    seed: int,
    steps: int,
    action_fn: Callable[[int, np.ndarray, Any], np.ndarray],
    size: int | None,
) -> _Rollout:
    """Run `steps` steps in a fresh env; `action_fn(step, obs, policy)` picks each action."""
    env = sim.envs[f"{task}-goal-observable"](seed=seed)
    renderer = None
    try:
        obs, _ = env.reset(seed=seed)
        policy = sim.policies[task]()
        if size is not None:
            renderer = _make_renderer(sim, env.model, size)
        frames, rewards, success, in_place = [], [], [], []
        sim_s = render_s = 0.0

        def record(reward: float, info: Mapping[str, Any]) -> None:
            nonlocal render_s
            rewards.append(float(reward))
            success.append(bool(info["success"]))
            in_place.append(float(info.get("in_place_reward", 0.0)))
            if renderer is not None:
                t0 = time.perf_counter()
                renderer.update_scene(env.data, camera=CAMERA)
                frames.append(renderer.render()[::-1, ::-1].copy())  # the corner camera is upside down
                render_s += time.perf_counter() - t0

        record(*env.evaluate_state(obs, np.zeros(4, dtype=np.float32)))
        for step in range(steps):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Constant.*may be too high", category=UserWarning)
                action = np.clip(np.asarray(action_fn(step, obs, policy), dtype=np.float32), -1.0, 1.0)
            obs, reward, _, _, info = env.step(action)
            sim_s += time.perf_counter() - t0
            record(reward, info)
    finally:
        if renderer is not None:
            renderer.close()
        env.close()
    return _Rollout(
        frames=np.stack(frames) if frames else None,
        rewards=np.asarray(rewards),
        success=np.asarray(success, dtype=bool),
        in_place=np.asarray(in_place),
        sim_s=sim_s,
        render_s=render_s,
    )


def _action_fn(
    kind: str, rng: np.random.Generator, noise_std: float, freeze_step: int | None
) -> Callable[[int, np.ndarray, Any], np.ndarray]:
    if kind == "expert":
        return lambda step, obs, policy: policy.get_action(obs)
    if kind == "noisy":
        return lambda step, obs, policy: policy.get_action(obs) + rng.normal(0.0, noise_std, size=4)
    if kind == "freeze":
        assert freeze_step is not None
        return lambda step, obs, policy: policy.get_action(obs) if step < freeze_step else np.zeros(4)
    if kind == "random":
        return lambda step, obs, policy: rng.uniform(-1.0, 1.0, size=4)
    raise ValueError(f"unknown episode kind {kind!r}; choose from {KINDS}")


# --------------------------------------------------------------------------------------------------------
# Manifest


def _episode_id(task: str, seed: int, kind: str) -> str:
    return f"{task}_s{seed}_{kind}"


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning(
                "%s:%d: unreadable line (interrupted run?); that episode will be regenerated", path, n
            )
    return records


def _write_manifest(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def _round(values: np.ndarray, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


def generate(
    out_dir: str | Path,
    tasks: Sequence[str],
    seeds: Iterable[int],
    kinds: Sequence[str] = KINDS,
    max_steps: int = 150,
    fps: float = 30.0,
    noise_std: float = 0.5,
    *,
    size: int = 224,
    crf: int = 18,
    trim_after_success: int | None = None,
    progress: bool = True,
) -> Path:
    """Generate Meta-World episodes (mp4 + ``manifest.jsonl``) in `out_dir`; return the manifest path.

    Args:
        out_dir: output folder; videos go to ``out_dir/videos/``.
        tasks: Meta-World v3 task names from `list_tasks`, e.g. ``["push-v3", "drawer-open-v3"]``.
        seeds: env seeds; each (task, seed) gets one episode of every kind.
        kinds: subset of `KINDS`.
        max_steps: env steps per episode (frames = steps + 1); at most 500.
        fps: frame rate written to the mp4 and manifest (playback rate; the sim itself runs at 80 Hz).
        noise_std: standard deviation of the Gaussian action noise of ``noisy`` episodes.
        size: square frame size in pixels (even).
        crf: x264 quality (higher = smaller files).
        trim_after_success: if set, episodes of a (task, seed) end this many steps after the expert's first
            success (at most `max_steps`), so idle frames do not dominate; twins keep the expert's length.
        progress: show a progress bar over episodes.

    Raises:
        ImportError: metaworld or mujoco missing (``pip install 'topreward[sim]'``).
        ValueError: unknown task or kind, bad settings, or `out_dir` made with other settings.
    """
    for task in tasks:
        task_spec(task)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {tuple(kinds)}")
    seeds = [int(s) for s in seeds]
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds must be non-negative integers, got {seeds}")
    if not 1 <= max_steps <= MAX_PATH_LENGTH:
        raise ValueError(
            f"max_steps must lie in [1, {MAX_PATH_LENGTH}] (Meta-World's path limit), got {max_steps}"
        )
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if size <= 0 or size % 2:
        raise ValueError(
            f"size must be a positive even number of pixels (H.264 needs even sizes), got {size}"
        )
    if trim_after_success is not None and trim_after_success < 0:
        raise ValueError(f"trim_after_success must be >= 0 or None, got {trim_after_success}")
    settings = {
        "camera": CAMERA,
        "size": size,
        "max_steps": max_steps,
        "fps": float(fps),
        "noise_std": float(noise_std),
        "crf": crf,
        "trim_after_success": trim_after_success,
    }
    sim = _import_sim()

    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    done: dict[str, dict[str, Any]] = {}
    for rec in _read_manifest(manifest):
        if not (out_dir / rec.get("video", "")).is_file():
            continue
        old = rec.get("generator", {}).get("settings")
        if old != settings:
            raise ValueError(
                f"{manifest} was generated with settings {old}, now {settings}; use another out_dir or delete it"
            )
        done[rec["episode_id"]] = rec
    _write_manifest(manifest, done.values())  # drop lines whose video is missing

    kinds = [k for k in KINDS if k in kinds]  # expert first: its rollout sets the twins' length
    todo = [(t, s, k) for t in tasks for s in seeds for k in kinds]
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="meta-world episodes", disable=not progress)
    except ImportError:  # tqdm is a core dependency; stay usable without it anyway
        bar = None
    experts: dict[tuple[str, int], dict[str, Any]] = {}
    for task, seed, kind in todo:
        eid = _episode_id(task, seed, kind)
        if eid in done:
            logger.debug("%s exists, skipped", eid)
        else:
            expert = experts.get((task, seed)) or _expert_summary(sim, task, seed, kind, settings, done)
            rec, experts[(task, seed)] = _generate_one(sim, out_dir, task, seed, kind, expert, settings)
            done[eid] = rec
            with manifest.open("a") as f:  # append as we go so an interrupted run can resume
                f.write(json.dumps(rec) + "\n")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    # Canonical order: requested episodes first, then older ones kept from previous runs.
    wanted = [_episode_id(t, s, k) for t, s, k in todo]
    _write_manifest(
        manifest, [done[e] for e in wanted] + [r for e, r in done.items() if e not in set(wanted)]
    )
    return manifest


def _expert_summary(
    sim: _Sim,
    task: str,
    seed: int,
    kind: str,
    settings: Mapping[str, Any],
    done: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    """Length and first-success frame of the expert twin, from the manifest or an unrendered rollout.

    ``None`` when `kind` is the expert itself: its rendered rollout provides the summary.
    """
    rec = done.get(_episode_id(task, seed, "expert"))
    if rec is not None:
        return {"steps": rec["num_frames"] - 1, "first_success": rec["expert_first_success_frame"]}
    if kind == "expert":
        return None
    expert_fn = _action_fn("expert", _episode_rng(task, seed, "expert"), 0.0, None)
    return _summarize_expert(
        _rollout(sim, task, seed, settings["max_steps"], expert_fn, None), task, seed, settings
    )


def _summarize_expert(roll: _Rollout, task: str, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    first = roll.first_success_frame
    steps = settings["max_steps"]
    if first is None:
        logger.warning("%s seed %d: the scripted expert never succeeds in %d steps", task, seed, steps)
    elif settings["trim_after_success"] is not None:
        steps = min(steps, first + settings["trim_after_success"])
    return {"steps": steps, "first_success": first}


def _generate_one(
    sim: _Sim,
    out_dir: Path,
    task: str,
    seed: int,
    kind: str,
    expert: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """Render, write and describe one episode; return its manifest record and the expert summary.

    `expert` is ``None`` only for an expert episode generated first: it then runs `max_steps` steps and is
    trimmed to its own summary's length afterwards (the env is deterministic, so that equals a shorter run).
    """
    spec = task_spec(task)
    steps = settings["max_steps"] if expert is None else expert["steps"]
    rng = _episode_rng(task, seed, kind)
    extra: dict[str, Any] = {}
    freeze_step = None
    if kind == "freeze":
        horizon = expert["first_success"] or steps
        lo = max(1, round(0.2 * horizon))
        freeze_step = int(rng.integers(lo, max(lo, round(0.8 * horizon)) + 1))
        extra["freeze_step"] = freeze_step
    if kind == "noisy":
        extra["noise_std"] = settings["noise_std"]
    roll = _rollout(
        sim, task, seed, steps, _action_fn(kind, rng, settings["noise_std"], freeze_step), settings["size"]
    )
    if expert is None:
        expert = _summarize_expert(roll, task, seed, settings)
        steps = expert["steps"]
        roll = roll.truncate(steps + 1)
    assert roll.frames is not None

    eid = _episode_id(task, seed, kind)
    rel = Path("videos") / f"{eid}.mp4"
    partial = out_dir / "videos" / f".{eid}.partial.mp4"
    write_video(partial, roll.frames, settings["fps"], crf=settings["crf"])
    os.replace(partial, out_dir / rel)

    fps = settings["fps"]
    labels = stage_labels(roll.in_place, roll.success, spec.stages)
    final, ever = bool(roll.success[-1]), bool(roll.success.any())
    if final != ever:
        logger.info("%s: succeeded at frame %s but not at the end", eid, roll.first_success_frame)
    n = len(roll.frames)
    logger.info(
        "%s: %d frames, success=%s, sim %.1f ms/step, render %.1f ms/frame",
        eid,
        n,
        final,
        1000 * roll.sim_s / max(steps, 1),
        1000 * roll.render_s / n,
    )
    record = {
        "video": rel.as_posix(),
        "instruction": spec.instruction,
        "fps": fps,
        "episode_id": eid,
        "task": task,
        "seed": seed,
        "kind": kind,
        "num_frames": n,
        "success": final,
        "final_success": final,
        "ever_success": ever,
        "success_disagreement": final != ever,
        "first_success_frame": roll.first_success_frame,
        "expert_first_success_frame": expert["first_success"],
        **extra,
        "progress": _round(shaped_progress(roll.rewards, roll.success)),
        "reward": _round(roll.rewards, 3),
        "stages": labels,
        "generator": {"name": "metaworld", "settings": dict(settings), **sim.versions},
    }
    subtasks = subtasks_from_stages(labels, spec.stages, fps) if final else None
    if subtasks is not None:
        record["subtasks"] = subtasks
    return record, expert

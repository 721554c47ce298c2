"""Meta-World v3 episodes with dense ground-truth progress: experts and their failed twins.

Backend of ``topreward sim``; needs ``pip install 'topreward[sim]'`` (metaworld, mujoco, packaging) and, on
Debian/Ubuntu, EGL for offscreen rendering (``scripts/install_sim_deps.sh``).

Recipe, per task and seed:

1. Build a fresh goal-observable env, ``ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[task](seed=seed)``; the seed
   fixes object and goal positions there (Meta-World's ``reset(seed=...)``, also called, ignores its seed).
2. Roll out one of the `KINDS` for as many steps as the expert twin:
   ``expert`` the scripted policy of ``metaworld.policies.ENV_POLICY_MAP``; ``noisy`` expert actions plus
   Gaussian noise (``noise_std``, clipped to [-1, 1]); ``freeze`` the expert until a random step in
   [20 %, 80 %] of the expert's steps to first success, zero actions after; ``random`` uniform actions in
   [-1, 1]. Every kind is labelled by its outcome (a noisy run often still succeeds).
3. After each step render one frame (``steps`` frames; frame ``i`` shows the state after step ``i + 1``, so
   frame 0 is the scene 12.5 ms after reset) from the ``corner`` camera at 224x224, shadows off (3-4x
   faster on CPU). That camera is mounted upside down, so each image is rotated 180 degrees
   (``img[::-1, ::-1]``). Write an H.264 mp4 with `topreward.video.write_video` (x264 ``threads=1``). The
   same seed gives the same physics and ground truth; the pixels almost always match to the bit, but
   Mesa's software renderer is not bit-exact between runs (here about 1 episode in 16 had a few pixels
   off by up to 10 levels), so the mp4 bytes can differ.
4. Ground-truth progress per frame, two equally weighted stages (one for ``reach-v3``, whose "object" is
   the hand), from quantities that show in the video:
   ``reach_t = clip(1 - d_t / d_0, 0, 1)`` with ``d`` the hand-to-object distance (observation [0:3] vs
   [4:7]); ``place_t = clip((ip_t - ip_0) / (1 - ip_0), 0, 1)`` with ``ip`` the env's ``in_place_reward``
   (object-to-goal closeness, 1 at the goal); ``moved_t`` = ``ip`` has exceeded ``ip_0 + 0.02`` at some
   frame <= t (the object started moving towards the goal, so reaching is over).
   ``progress_t = 1`` if ``success_t``, else ``0.5 * (1 if moved_t else reach_t) + 0.5 * place_t``.
   A frozen arm therefore plateaus; undoing progress lowers it. The env's shaped reward (0..10) is kept as
   ``reward`` but not used: its grasp bonuses jump when the gripper merely opens.
5. Stage labels per frame: ``done`` while ``success_t``, else the task's manipulation stage (e.g. ``push``)
   once ``moved_t``, else ``reach``. Episodes that end in success also get ``subtasks`` (manifest format,
   seconds) from the first frame of each stage, so `topreward.groundtruth.stage_progress` applies to them.
6. One JSON line per episode in ``manifest.jsonl``: ``video``, ``instruction``, ``fps``, ``episode_id``,
   ``success`` (= ``final_success``, success at the last frame), ``ever_success``, ``success_disagreement``
   (the two differ, e.g. a door that swings back), ``progress``, ``reward``, ``stages``, ``kind``, ``task``,
   ``seed`` and the generator settings. Episodes whose mp4 and manifest line exist are skipped.

Meta-World ships no instructions; `TASKS` holds ours (and each task's stage names).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from topreward.atomic import replacing, write_text
from topreward.sim.env import CAMERA, Sim, import_sim, make_renderer
from topreward.sim.tasks import (
    info_progress,
    stage_labels,
    subtasks_from_stages,
    task_spec,
)
from topreward.video import write_video

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("expert", "noisy", "freeze", "random")
MAX_PATH_LENGTH = 500  # Meta-World refuses to step an env further than this


def fixture_dir() -> Path:
    """Folder of the small generated set shipped with the package (``manifest.jsonl`` + ``videos/``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "sim_fixture"


# The small set shipped in `fixture_dir()`; regenerate with `generate_fixture()` (about a minute on 2 cores).
FIXTURE_TASKS: tuple[str, ...] = ("push-v3", "pick-place-v3", "drawer-open-v3", "button-press-topdown-v3")
FIXTURE_SEEDS: tuple[int, ...] = (0,)
FIXTURE_TRIM_AFTER_SUCCESS = 20


@dataclass
class _Rollout:
    frames: np.ndarray | None  # (T, H, W, 3) uint8, None when not rendered
    rewards: np.ndarray  # (T,) shaped reward, 0..10
    success: np.ndarray  # (T,) bool
    in_place: np.ndarray  # (T,)
    hand_obj_dist: np.ndarray  # (T,)
    sim_s: float = 0.0
    render_s: float = 0.0
    # (T, 4) each frame's robot state (observation[:4]: hand xyz, gripper) and the action the policy takes
    # from that observation (clipped to [-1, 1]; executed by the next step); LeRobot's Meta-World layout
    states: np.ndarray | None = None
    actions: np.ndarray | None = None
    observations: np.ndarray | None = None  # (T, 39) the whole Meta-World observation (OBSERVATION_NAMES)

    @property
    def first_success_frame(self) -> int | None:
        hits = np.flatnonzero(self.success)
        return int(hits[0]) if hits.size else None

    def truncate(self, n: int) -> _Rollout:
        """The first `n` frames of this rollout."""
        return _Rollout(
            None if self.frames is None else self.frames[:n],
            self.rewards[:n],
            self.success[:n],
            self.in_place[:n],
            self.hand_obj_dist[:n],
            self.sim_s,
            self.render_s,
            None if self.states is None else self.states[:n],
            None if self.actions is None else self.actions[:n],
            None if self.observations is None else self.observations[:n],
        )


def check_counts(counts: Mapping[str, int] | None, kinds: Sequence[str]) -> None:
    for kind, n in (counts or {}).items():
        if kind not in kinds:
            raise ValueError(
                f"a count is given for the kind {kind!r}, which is not among the kinds {tuple(kinds)}"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"the count of {kind!r} episodes must be a whole number >= 1, got {n!r}")


def episodes_of(
    tasks: Sequence[str], seeds: Sequence[int], kinds: Sequence[str], counts: Mapping[str, int] | None = None
) -> list[tuple[str, int, str]]:
    """The (task, seed, kind) episodes of a run, in its order: per task, per seed, kinds in `KINDS` order;
    a kind with a count gets the first that many seeds only."""
    kinds = [k for k in KINDS if k in kinds]
    counts = counts or {}
    return [
        (t, s, k) for t in tasks for i, s in enumerate(seeds) for k in kinds if i < counts.get(k, len(seeds))
    ]


def _episode_rng(task: str, seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.encode()), KINDS.index(kind)])


def _rollout(
    sim: Sim,
    task: str,
    seed: int,
    steps: int,
    action_fn: Callable[[int, np.ndarray, Any], np.ndarray],
    size: int | None,
) -> _Rollout:
    """Run `steps` steps in a fresh env, one frame after each; `action_fn(step, obs, policy)` acts."""
    env = sim.envs[f"{task}-goal-observable"](seed=seed)
    renderer = None
    frames, rewards, success, in_place, dist, states, actions, observations = [], [], [], [], [], [], [], []
    sim_s = render_s = 0.0

    def act(step: int, obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant.*may be too high", category=UserWarning)
            return np.clip(np.asarray(action_fn(step, obs, policy), dtype=np.float32), -1.0, 1.0)

    try:
        obs, _ = env.reset(seed=seed)
        policy = sim.policies[task]()
        if size is not None:
            renderer = make_renderer(sim, env.model, size)
        for step in range(steps):
            t0 = time.perf_counter()
            action = act(step, obs)
            if step:
                actions.append(action)  # taken from the observation of the previous frame
            obs, reward, _, _, info = env.step(action)
            states.append(np.asarray(obs[:4], dtype=np.float32))
            observations.append(np.asarray(obs, dtype=np.float32))
            sim_s += time.perf_counter() - t0
            rewards.append(float(reward))
            success.append(bool(info["success"]))
            in_place.append(float(info["in_place_reward"]))
            dist.append(float(np.linalg.norm(obs[0:3] - obs[4:7])))  # hand vs first object
            if renderer is not None:
                t0 = time.perf_counter()
                renderer.update_scene(env.data, camera=CAMERA)
                frames.append(renderer.render()[::-1, ::-1].copy())  # the corner camera is upside down
                render_s += time.perf_counter() - t0
        actions.append(act(steps, obs))  # the last frame's action, computed but not executed
    finally:
        if renderer is not None:
            renderer.close()
        env.close()
    return _Rollout(
        frames=np.stack(frames) if frames else None,
        rewards=np.asarray(rewards),
        success=np.asarray(success, dtype=bool),
        in_place=np.asarray(in_place),
        hand_obj_dist=np.asarray(dist),
        sim_s=sim_s,
        render_s=render_s,
        states=np.stack(states) if states else np.zeros((0, 4), np.float32),
        actions=np.stack(actions) if actions else np.zeros((0, 4), np.float32),
        observations=np.stack(observations) if observations else np.zeros((0, 39), np.float32),
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
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


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
    arrays: bool = False,
    counts: Mapping[str, int] | None = None,
) -> Path:
    """Generate Meta-World episodes (mp4 + ``manifest.jsonl``) in `out_dir`; return the manifest path.

    Args:
        out_dir: output folder; videos go to ``out_dir/videos/``.
        tasks: Meta-World v3 task names from `list_tasks`, e.g. ``["push-v3", "drawer-open-v3"]``.
        seeds: env seeds; each (task, seed) gets one episode of every kind.
        kinds: subset of `KINDS`.
        max_steps: env steps per episode, one frame each; at most 500.
        fps: frame rate written to the mp4 and manifest (playback rate; the sim itself runs at 80 Hz).
        noise_std: standard deviation of the Gaussian action noise of ``noisy`` episodes.
        size: square frame size in pixels (even).
        crf: x264 quality (higher = smaller files).
        trim_after_success: if set, episodes of a (task, seed) end this many steps after the expert's first
            success (at most `max_steps`), so idle frames do not dominate; twins keep the expert's length.
        progress: show a progress bar over episodes.
        arrays: also write ``arrays/<episode_id>.npz`` with each frame's robot state (``state``: observation
            [:4], hand xyz and gripper), its whole observation (``observation``, 39-D, `OBSERVATION_NAMES`)
            and the action taken from it (``action``, 4-D); `write_lerobot` needs them. Episodes without
            the file are then generated again.
        counts: per kind, how many of `seeds` (the first ones) get an episode of that kind (default: all),
            e.g. ``{"expert": 10}`` with 15 seeds gives 10 expert episodes and 15 of each other kind.

    Raises:
        ImportError: metaworld or mujoco missing (``pip install 'topreward[sim]'``).
        RuntimeError: MuJoCo cannot render offscreen (no EGL: ``scripts/install_sim_deps.sh``).
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
    check_counts(counts, kinds)
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
    sim = import_sim()

    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    done: dict[str, dict[str, Any]] = {}
    for rec in _read_manifest(manifest):
        if not (out_dir / rec.get("video", "")).is_file():
            continue
        if arrays and not (out_dir / "arrays" / f"{rec.get('episode_id')}.npz").is_file():
            continue
        old = rec.get("generator", {}).get("settings")
        if old != settings:
            raise ValueError(
                f"{manifest} was generated with settings {old}, now {settings}; use another out_dir or delete it"
            )
        done[rec["episode_id"]] = rec
    _write_manifest(manifest, done.values())  # drop lines whose video is missing

    kinds = [k for k in KINDS if k in kinds]  # expert first: its rollout sets the twins' length
    todo = episodes_of(tasks, seeds, kinds, counts)
    bar = tqdm(total=len(todo), desc="meta-world episodes", disable=not progress)
    experts: dict[tuple[str, int], dict[str, Any]] = {}
    for task, seed, kind in todo:
        eid = _episode_id(task, seed, kind)
        if eid in done:
            logger.debug("%s exists, skipped", eid)
        else:
            expert = experts.get((task, seed)) or _expert_summary(sim, task, seed, kind, settings, done)
            rec, experts[(task, seed)] = _generate_one(
                sim, out_dir, task, seed, kind, expert, settings, arrays
            )
            done[eid] = rec
            with manifest.open("a") as f:  # append as we go so an interrupted run can resume
                f.write(json.dumps(rec) + "\n")
        bar.update(1)
    bar.close()
    # Canonical order: requested episodes first, then older ones kept from previous runs.
    wanted = dict.fromkeys(_episode_id(t, s, k) for t, s, k in todo)
    _write_manifest(manifest, [done[e] for e in wanted] + [r for e, r in done.items() if e not in wanted])
    return manifest


def _expert_summary(
    sim: Sim,
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
        return {"steps": rec["num_frames"], "first_success": rec["expert_first_success_frame"]}
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
        steps = min(steps, first + 1 + settings["trim_after_success"])
    return {"steps": steps, "first_success": first}


def _generate_one(
    sim: Sim,
    out_dir: Path,
    task: str,
    seed: int,
    kind: str,
    expert: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    arrays: bool = False,
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
        # steps the expert needs to succeed (frame f shows the state after step f + 1)
        horizon = steps if expert["first_success"] is None else expert["first_success"] + 1
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
        roll = roll.truncate(steps)
    assert roll.frames is not None

    eid = _episode_id(task, seed, kind)
    if arrays:  # before the video: an episode counts as done once its video exists
        (out_dir / "arrays").mkdir(exist_ok=True)
        with replacing(out_dir / "arrays" / f"{eid}.npz") as partial, partial.open("wb") as f:
            np.savez(f, state=roll.states, action=roll.actions, observation=roll.observations)
    rel = Path("videos") / f"{eid}.mp4"
    with replacing(out_dir / rel) as partial:
        write_video(partial, roll.frames, settings["fps"], crf=settings["crf"])

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
        "progress": _round(
            info_progress(roll.hand_obj_dist, roll.in_place, roll.success, len(spec.stages) > 1)
        ),
        "reward": _round(roll.rewards, 3),
        "stages": labels,
        "generator": {"name": "metaworld", "settings": dict(settings), **sim.versions},
    }
    subtasks = subtasks_from_stages(labels, spec.stages, fps) if final else None
    if subtasks is not None:
        record["subtasks"] = subtasks
    return record, expert


def generate_fixture(out_dir: str | Path | None = None, progress: bool = False) -> Path:
    """(Re)generate the shipped fixture: `FIXTURE_TASKS` x `FIXTURE_SEEDS` x all `KINDS`, default settings,
    episodes trimmed `FIXTURE_TRIM_AFTER_SUCCESS` steps after the expert's first success; returns the manifest.
    """
    return generate(
        fixture_dir() if out_dir is None else out_dir,
        FIXTURE_TASKS,
        FIXTURE_SEEDS,
        trim_after_success=FIXTURE_TRIM_AFTER_SUCCESS,
        progress=progress,
    )

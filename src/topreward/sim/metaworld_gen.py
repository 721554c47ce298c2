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
from tqdm.auto import tqdm

from topreward.video import write_video

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("expert", "noisy", "freeze", "random")
CAMERA = "corner"
MAX_PATH_LENGTH = 500  # Meta-World refuses to step an env further than this
_MOVE_EPS = 0.02  # rise of in_place_reward that marks the object moving towards the goal
_INSTALL_HINT = "pip install 'topreward[sim]'"
_EGL_HINT = (
    "On Debian/Ubuntu run scripts/install_sim_deps.sh (libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0); "
    "elsewhere install EGL or set MUJOCO_GL=osmesa with OSMesa installed"
)


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


def fixture_dir() -> Path:
    """Folder of the small generated set shipped with the package (``manifest.jsonl`` + ``videos/``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "sim_fixture"


# The small set shipped in `fixture_dir()`; regenerate with `generate_fixture()` (about a minute on 2 cores).
FIXTURE_TASKS: tuple[str, ...] = ("push-v3", "pick-place-v3", "drawer-open-v3", "button-press-topdown-v3")
FIXTURE_SEEDS: tuple[int, ...] = (0,)
FIXTURE_TRIM_AFTER_SUCCESS = 20


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
    # Mesa's llvmpipe rasterises on several threads; one thread makes reruns' pixels agree more often
    os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
        from metaworld.policies import ENV_POLICY_MAP
    except ModuleNotFoundError as e:
        raise ImportError(f"Meta-World episodes need metaworld and mujoco ({e}); {_INSTALL_HINT}") from e
    except Exception as e:  # mujoco loads its GL backend on import; a missing libEGL surfaces in several ways
        raise RuntimeError(
            f"mujoco could not load its MUJOCO_GL={os.environ['MUJOCO_GL']!r} backend: {e!r}. {_EGL_HINT}"
        ) from e
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
            f"MuJoCo cannot render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {e!r}. {_EGL_HINT}"
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
    """Run `steps` steps in a fresh env, one frame after each; `action_fn(step, obs, policy)` acts."""
    env = sim.envs[f"{task}-goal-observable"](seed=seed)
    renderer = None
    frames, rewards, success, in_place, dist, states, actions = [], [], [], [], [], [], []
    sim_s = render_s = 0.0

    def act(step: int, obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant.*may be too high", category=UserWarning)
            return np.clip(np.asarray(action_fn(step, obs, policy), dtype=np.float32), -1.0, 1.0)

    try:
        obs, _ = env.reset(seed=seed)
        policy = sim.policies[task]()
        if size is not None:
            renderer = _make_renderer(sim, env.model, size)
        for step in range(steps):
            t0 = time.perf_counter()
            action = act(step, obs)
            if step:
                actions.append(action)  # taken from the observation of the previous frame
            obs, reward, _, _, info = env.step(action)
            states.append(np.asarray(obs[:4], dtype=np.float32))
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
    arrays: bool = False,
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
            [:4], hand xyz and gripper) and the action taken from it (``action``, 4-D); `write_lerobot`
            needs them. Episodes without the file are then generated again.

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
    todo = [(t, s, k) for t in tasks for s in seeds for k in kinds]
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
    sim: _Sim,
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
        partial_npz = out_dir / "arrays" / f".{eid}.partial.npz"
        with partial_npz.open("wb") as f:
            np.savez(f, state=roll.states, action=roll.actions)
        os.replace(partial_npz, out_dir / "arrays" / f"{eid}.npz")
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


def make_env(task: str = "reach-v3", seed: int = 0, *, size: int = 224, max_steps: int = 150):
    """A gymnasium env of a Meta-World v3 task whose `render()` returns what `topreward sim` records.

    The goal-observable env of `task` built with `seed` (which fixes object and goal positions), its
    `render()` the `corner` camera at `size`x`size`, rotated upright, shadows off (uint8 RGB), and a
    time limit of `max_steps` steps. For online-RL tests and examples (`topreward.rl`).
    """
    import gymnasium

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if size < 16 or max_steps < 1:
        raise ValueError(f"size must be >= 16 and max_steps >= 1, got size={size}, max_steps={max_steps}")
    sim = _import_sim()

    class _Rendered(gymnasium.Wrapper):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self, env) -> None:
            super().__init__(env)
            self._renderer = _make_renderer(sim, env.unwrapped.model, size)

        @property
        def render_mode(self) -> str:
            return "rgb_array"

        def render(self):
            self._renderer.update_scene(self.env.unwrapped.data, camera=CAMERA)
            return self._renderer.render()[::-1, ::-1].copy()  # the corner camera is upside down

        def close(self) -> None:
            self._renderer.close()
            super().close()

    env = sim.envs[f"{task}-goal-observable"](seed=seed)
    env.max_path_length = max(env.max_path_length, max_steps)
    return gymnasium.wrappers.TimeLimit(_Rendered(env), max_episode_steps=max_steps)

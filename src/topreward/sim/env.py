"""Meta-World and MuJoCo: the import (with the `sim` extra's install line and EGL's), the offscreen renderer,
and `make_env`, a gymnasium env whose `render()` is what `topreward sim` records."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from topreward.sim.tasks import TASKS

logger = logging.getLogger(__name__)

CAMERA = "corner"


def _observation_names() -> list[str]:
    """Meta-World v3's 39-D observation: this frame's hand xyz, gripper opening (0..1) and two objects'
    position and quaternion (w, x, y, z; zeros for a task with one object), the same 18 of the previous
    frame, then the goal position."""
    now = ["hand_x", "hand_y", "hand_z", "gripper"]
    for obj in ("obj1", "obj2"):
        now += [f"{obj}_{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    return [*now, *(f"prev_{n}" for n in now), "goal_x", "goal_y", "goal_z"]


OBSERVATION_NAMES = _observation_names()
_INSTALL_HINT = "pip install 'topreward[sim]'"
_EGL_HINT = (
    "On Debian/Ubuntu run scripts/install_sim_deps.sh (libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0); "
    "elsewhere install EGL or set MUJOCO_GL=osmesa with OSMesa installed"
)


@dataclass
class Sim:
    mujoco: Any
    envs: Mapping[str, Any]
    policies: Mapping[str, Any]
    versions: dict[str, str]


def import_sim() -> Sim:
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
    return Sim(mujoco, ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE, ENV_POLICY_MAP, versions)


def make_renderer(sim: Sim, model: Any, size: int) -> Any:
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
        sim = import_sim()
        env = sim.envs["reach-v3-goal-observable"](seed=0)
        try:
            renderer = make_renderer(sim, env.model, 16)
            renderer.update_scene(env.data, camera=CAMERA)
            renderer.render()
            renderer.close()
        finally:
            env.close()
    except (ImportError, RuntimeError) as e:
        return str(e)
    return None


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
    sim = import_sim()

    class _Rendered(gymnasium.Wrapper):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self, env) -> None:
            super().__init__(env)
            self._renderer = make_renderer(sim, env.unwrapped.model, size)

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

"""Simulated episodes with dense ground truth (`topreward sim`); needs ``pip install 'topreward[sim]'``.

  * `tasks`: the task table (our instructions, stage names) and ground truth from the env's info (numpy);
  * `env`: Meta-World and MuJoCo set-up, the offscreen renderer, `make_env` for online RL;
  * `metaworld_gen`: rollouts (expert, noisy, freeze, random) into mp4s and a manifest, resumable;
  * `lerobot_format`: the same episodes as a LeRobot v3.0 dataset.
Importing this package is cheap: Meta-World and MuJoCo are imported only when episodes are generated. It
imports only the basics (video, atomic writes); it is data, like `topreward.datasets`.
"""

from __future__ import annotations

from topreward.sim.env import make_env, rendering_problem
from topreward.sim.lerobot_format import generate_lerobot, write_lerobot
from topreward.sim.metaworld_gen import KINDS, fixture_dir, generate, generate_fixture
from topreward.sim.tasks import TASK_INSTRUCTIONS, TASKS, list_tasks

__all__ = [
    "KINDS",
    "TASKS",
    "TASK_INSTRUCTIONS",
    "fixture_dir",
    "generate",
    "generate_fixture",
    "generate_lerobot",
    "list_tasks",
    "make_env",
    "rendering_problem",
    "write_lerobot",
]

"""Simulated episodes with dense ground truth (`topreward sim`); needs ``pip install 'topreward[sim]'``.

Importing this package is cheap: Meta-World and MuJoCo are imported only when episodes are generated.
"""

from __future__ import annotations

from topreward.sim.lerobot_format import generate_lerobot, write_lerobot
from topreward.sim.metaworld_gen import (
    KINDS,
    TASK_INSTRUCTIONS,
    TASKS,
    fixture_dir,
    generate,
    generate_fixture,
    list_tasks,
    make_env,
    rendering_problem,
)

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

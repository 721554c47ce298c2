"""Simulated episodes with dense ground truth (`topreward sim`); needs ``pip install 'topreward[sim]'``.

Importing this package is cheap: Meta-World and MuJoCo are imported only when episodes are generated.
"""

from __future__ import annotations

from topreward.sim.metaworld_gen import KINDS, TASK_INSTRUCTIONS, fixture_dir, generate, list_tasks

__all__ = ["KINDS", "TASK_INSTRUCTIONS", "fixture_dir", "generate", "list_tasks"]

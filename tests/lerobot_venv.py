"""The real `lerobot` package, in its own venv: it pins torch<2.11, so it cannot share ours.

Tests that need it run when `TOPREWARD_LEROBOT_PYTHON` names that venv's python (`scripts/lerobot_ci.sh`
builds `.venv-lerobot` with lerobot==0.4.4, or with LEROBOT=0.6.1 `.venv-lerobot-0.6.1`, and sets it; `.ci/run`
runs both). A test that needs a newer lerobot (the Robometer port is 0.6's) skips itself on 0.4.4.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

LEROBOT_PYTHON = os.environ.get("TOPREWARD_LEROBOT_PYTHON")
CHECK_DATASET = Path(__file__).resolve().parent.parent / "scripts" / "lerobot_ci" / "check_dataset.py"

needs_lerobot = pytest.mark.skipif(
    not LEROBOT_PYTHON,
    reason="lerobot pins torch<2.11: set TOPREWARD_LEROBOT_PYTHON to the python of a venv with lerobot (0.4.4 or "
    "0.6.1; `bash scripts/lerobot_ci.sh` builds .venv-lerobot, LEROBOT=0.6.1 .venv-lerobot-0.6.1, and runs "
    "these tests; some need 0.6)",
)


def check_with_lerobot(root: Path, progress: Path | None = None) -> str:
    """Load `root` with `LeRobotDataset(root=..., video_backend="pyav")`, iterate a batch and, given
    `progress`, read it with `RABCWeights` in both head modes; returns the script's output."""
    cmd = [LEROBOT_PYTHON, str(CHECK_DATASET), str(root), *([str(progress)] if progress else [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout

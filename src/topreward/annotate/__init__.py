"""Whole datasets: score every episode into a per-frame progress file, and turn that file into training
weights and episode rankings.

  * `job`: `annotate(source, scorer, out)`, resumable, on this process or a Ray cluster (`ray`);
  * `progress_file`: the parquet's columns (LeRobot RA-BC's and ours), its reader, LeRobot's default path;
  * `from_column`: the same file from a dataset's own progress column (simulator ground truth: an oracle);
  * `weights`: advantage-weighted BC weights (Eq.5), LeRobot's RA-BC weights, episode ranking,
    `FrameWeights` for your own loop.
It imports the methods' registry and everything below it; nothing here is imported by a lower layer.
"""

from topreward.annotate.job import AnnotateSummary, annotate, check_output, lock_path, work_path
from topreward.annotate.progress_file import (
    LEROBOT_PROGRESS_FILE,
    RABC_COLUMNS,
    lerobot_progress_path,
    read_annotations,
    write_parquet,
)
from topreward.scorers.registry import ScorerSpec

__all__ = [
    "LEROBOT_PROGRESS_FILE",
    "RABC_COLUMNS",
    "AnnotateSummary",
    "ScorerSpec",
    "annotate",
    "check_output",
    "lerobot_progress_path",
    "lock_path",
    "read_annotations",
    "work_path",
    "write_parquet",
]

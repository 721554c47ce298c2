"""topreward: dense, zero-shot reward and progress signals for robot learning from video VLMs.

scorer = topreward.load_scorer("topreward", model="Qwen/Qwen3-VL-8B-Instruct")
result = scorer.score("episode.mp4", "put the pen into the cup")
result.progress, result.frame_progress, result.success_score, result.dense_rewards
"""

from topreward._version import __version__
from topreward.episode import Episode
from topreward.result import ScoreResult
from topreward.scorers.registry import list_scorers, load_scorer

__all__ = ["Episode", "ScoreResult", "__version__", "list_scorers", "load_scorer"]

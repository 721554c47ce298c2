"""Kept import path of `topreward.annotate.weights` (the docs: `from topreward.weights import FrameWeights`)."""

from topreward.annotate.weights import FrameWeights, awr_weights, rabc_weights, rank_episodes, write_weights

__all__ = ["FrameWeights", "awr_weights", "rabc_weights", "rank_episodes", "write_weights"]

"""Online rewards for RL: a gymnasium wrapper on streaming sessions (`topreward.stream`). Extra `[rl]`.

It imports the stream and the basics; a scorer is handed to it, never imported.
"""

from __future__ import annotations

from topreward.rl.gym import REWARDS, TopRewardVectorWrapper, TopRewardWrapper

__all__ = ["REWARDS", "TopRewardVectorWrapper", "TopRewardWrapper"]

"""Fine-tuning reward models on your own robot data (`topreward train`): LRM heads and a TOPReward head."""

from topreward.train.heads import HEADS, METHOD_OF
from topreward.train.loop import TrainConfig, TrainingDiverged, TrainResult, load_adapter, train

__all__ = ["HEADS", "METHOD_OF", "TrainConfig", "TrainResult", "TrainingDiverged", "load_adapter", "train"]

"""Load a LeRobot dataset with the real `lerobot` package and iterate a batch (run in the lerobot venv).

Usage: python check_dataset.py ROOT [PROGRESS_PARQUET]
With a progress file, also load it with LeRobot's `RABCWeights` in every head mode and weight a batch.
"""

from __future__ import annotations

import sys

import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main(root: str, progress: str | None = None) -> None:
    ds = LeRobotDataset("local/sim", root=root, video_backend="pyav")  # torchcodec needs a system FFmpeg
    print(
        f"LeRobotDataset: {ds.num_episodes} episodes, {ds.num_frames} frames, fps {ds.fps}, tasks {list(ds.meta.tasks.index)}"
    )
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)))
    for key, feature in ds.meta.features.items():  # every feature comes back, in its declared shape
        value = batch[key]
        print(f"  {key}: {tuple(value.shape)} {value.dtype}")
        shape = tuple(feature["shape"])
        if feature["dtype"] == "video":
            shape = (shape[2], shape[0], shape[1])  # LeRobot returns channel-first float images
        assert tuple(value.shape) == (4, *(() if shape == (1,) else shape)), (key, value.shape, shape)
    assert len(batch["task"]) == 4 and all(isinstance(t, str) and t for t in batch["task"])
    if progress is None:
        return
    try:  # lerobot 0.6 moved it beside SARM
        from lerobot.rewards.sarm.rabc import RABCWeights
    except ImportError:  # lerobot 0.4-0.5
        from lerobot.utils.rabc import RABCWeights

    for head in ("sparse", "dense"):
        rabc = RABCWeights(progress, chunk_size=4, head_mode=head, kappa=0.01, device="cpu")
        stats = rabc.get_stats()
        assert stats["num_frames"] == ds.num_frames, (stats, ds.num_frames)
        w, _ = rabc.compute_batch_weights(batch)
        assert w.shape == (4,) and bool((w >= 0).all()), w
        print(f"  RABCWeights head_mode={head}: {stats['num_frames']} frames, batch weights {w.tolist()}")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Print, as JSON, the RA-BC weights real LeRobot gives every frame of a progress parquet (for tests/test_weights.py).

    python rabc_weights.py PROGRESS.parquet CHUNK_SIZE HEAD_MODE KAPPA

Runs in the lerobot venv: `RABCWeights.compute_batch_weights` on one batch holding every frame's `index`, in the
file's row order (its weights scaled to sum to the batch size, as LeRobot trains with), and its `get_stats()`.
"""

from __future__ import annotations

import json
import sys

import pyarrow.parquet as pq
import torch


def main(path: str, chunk_size: str, head_mode: str, kappa: str) -> None:
    try:  # lerobot 0.6 moved it beside SARM
        from lerobot.rewards.sarm.rabc import RABCWeights
    except ImportError:  # lerobot 0.4-0.5
        from lerobot.utils.rabc import RABCWeights

    rabc = RABCWeights(
        path, chunk_size=int(chunk_size), head_mode=head_mode, kappa=float(kappa), device="cpu"
    )
    index = pq.read_table(path, columns=["index"])["index"].to_pylist()
    weights, _ = rabc.compute_batch_weights({"index": torch.tensor(index)})
    stats = rabc.get_stats()
    print(
        json.dumps(
            {
                "index": index,
                "weights": weights.tolist(),
                **{k: stats[k] for k in ("delta_mean", "delta_std")},
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])

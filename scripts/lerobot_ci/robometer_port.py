"""Print, as JSON, what LeRobot's own Robometer port reads from a Robometer checkpoint (for tests/test_robometer.py).

    python robometer_port.py CHECKPOINT FRAMES.npy TASK WORK_DIR [FRAME_STEPS]

Runs in the lerobot venv (lerobot >= 0.6 with its `robometer` extra; an older lerobot prints
`{"missing": ...}`). CHECKPOINT is a checkpoint in the authors' release layout (`topreward make-tiny-model
--arch robometer`: `config.yaml` naming the base, sharded `model.*` and the heads); FRAMES.npy is a uint8
(T, H, W, 3) array.

LeRobot does not ship a converter from the authors' layout, so this script does the one step it must: it
builds `RobometerRewardModel(RobometerConfig(base_model_id=<the checkpoint's base>))`, fills it with the
checkpoint's tensors (the authors' `model.*` is a `Qwen3VLModel`, LeRobot's `model` a
`Qwen3VLForConditionalGeneration`, so `model.X` becomes `model.model.X`; the heads keep their names; the LM
head, which Robometer never reads, keeps the base's), and saves it with LeRobot's `save_pretrained`.
Everything after that is LeRobot's code, unchanged, as a LeRobot user runs it:
`RobometerRewardModel.from_pretrained(folder)`, `RobometerEncoderProcessorStep(base_model_id=...,
max_frames=None)` on one (frames, task) sample, `_compute_rbm_logits` and `decode_progress_outputs` for every
frame's progress and success, and `compute_reward` for the reward it gives (the last frame's progress).

With FRAME_STEPS = K it also prints `frame_steps_indices` and `frame_steps_rewards`: what LeRobot's dataset
annotation (`lerobot.rewards.robometer.compute_rabc_weights.compute_robometer_progress`) computes for these
frames as one episode, by its own pieces: `_build_subsample_indices(T, K)`, the encoder step built with
`max_frames=K` and called on a batch transition, and `compute_reward`. (That function itself needs a
`LeRobotDataset`; the frames here are uint8, channel last, so its float conversion does not apply.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def main(checkpoint: str, frames_path: str, task: str, work: str, frame_steps: str = "0") -> None:
    try:
        from lerobot.rewards.robometer.configuration_robometer import RobometerConfig
        from lerobot.rewards.robometer.modeling_robometer import (
            ROBOMETER_FEATURE_PREFIX,
            RobometerRewardModel,
            decode_progress_outputs,
        )
        from lerobot.rewards.robometer.processor_robometer import RobometerEncoderProcessorStep
    except ImportError as e:  # lerobot 0.4-0.5 has no Robometer port
        print(json.dumps({"missing": str(e)}))
        return
    import lerobot
    import yaml
    from safetensors.torch import load_file

    ckpt = Path(checkpoint)
    settings = yaml.safe_load((ckpt / "config.yaml").read_text())
    base = settings["model"]["base_model_id"]
    config = RobometerConfig(
        pretrained_path=None,
        base_model_id=base,
        torch_dtype="float32",
        device="cpu",
        max_frames=None,
        progress_discrete_bins=int(settings["model"]["progress_discrete_bins"]),
    )
    model = RobometerRewardModel(config)  # the base's weights, its embedding resized by LeRobot

    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(str(ckpt / shard)))
    renamed = {("model." + k if k.startswith("model.") else k): v for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    unread = [k for k in missing if not k.startswith("model.lm_head.")]
    if unread or unexpected:
        raise SystemExit(f"conversion left tensors out: missing {unread[:5]}, unexpected {unexpected[:5]}")
    folder = Path(work) / "lerobot_robometer"
    model.save_pretrained(folder)

    model = RobometerRewardModel.from_pretrained(str(folder))  # LeRobot's loading path from here on
    step = RobometerEncoderProcessorStep(base_model_id=base, max_frames=None)
    frames = np.load(frames_path)
    encoded = step.encode_samples([(frames, task)])
    input_ids = encoded["input_ids"][0].tolist()
    with torch.no_grad():
        progress_logits, success_logits = model._compute_rbm_logits(dict(encoded))
    decoded = decode_progress_outputs(progress_logits, success_logits, is_discrete_mode=True)
    batch = {f"{ROBOMETER_FEATURE_PREFIX}{k}": v for k, v in encoded.items()}
    reward = model.compute_reward(batch)
    steps = int(frame_steps)
    stepped: list[float] = []
    stepped_indices: list[np.ndarray] = []
    if steps:
        from lerobot.lerobot_types import TransitionKey
        from lerobot.rewards.robometer.compute_rabc_weights import _build_subsample_indices

        encoder = RobometerEncoderProcessorStep(base_model_id=base, max_frames=steps)
        video = torch.from_numpy(frames)
        stepped_indices = _build_subsample_indices(len(frames), steps)
        for indices in stepped_indices:
            transition = {
                TransitionKey.OBSERVATION: {encoder.image_key: video[indices][None]},
                TransitionKey.COMPLEMENTARY_DATA: {"task": task},
            }
            observation = encoder(transition)[TransitionKey.OBSERVATION]
            with torch.no_grad():
                stepped.append(float(model.compute_reward(observation)[0]))
    print(
        json.dumps(
            {
                "frame_steps_indices": [i.tolist() for i in stepped_indices],
                "frame_steps_rewards": stepped,
                "lerobot": lerobot.__version__,
                "input_ids": input_ids,
                "pixel_values_shape": list(encoded["pixel_values"].shape),
                "image_grid_thw": encoded["image_grid_thw"].tolist(),
                "progress": decoded["progress_pred"][0],
                "success": decoded["success_probs"][0],
                "reward": float(reward[0]),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        raise SystemExit(__doc__)
    main(*sys.argv[1:])

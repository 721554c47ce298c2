"""Record golden values by running LeRobot's own TOPReward port (src/lerobot/rewards/topreward/).

    python scripts/golden/record_lerobot.py LEROBOT_SRC MODEL_DIR OUT_JSON

LEROBOT_SRC is the root of a source export of huggingface/lerobot at commit
7427f31801f944f5ec9ce53cda02862ce7d1638b (lerobot 0.6.2); its ``src`` is put on ``sys.path``
(lerobot is not installed). MODEL_DIR is our tiny Qwen3-VL
(``topreward make-tiny-model --arch qwen3_vl MODEL_DIR``), read as is (no conversion needed).

Peer venv (Python 3.12: lerobot uses PEP 695 syntax and requires >=3.12; transformers pinned by the
``topreward`` extra: ``transformers>=5.4.0,<5.6.0`` -> newest 5.5.4; lerobot pins ``torch<2.12``,
``torchvision<0.27``, we use 2.14.1 / 0.29.1 instead)::

    python3.12 -m venv /tmp/peers/lerobot-venv
    /tmp/peers/lerobot-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/peers/lerobot-venv/bin/pip install transformers==5.5.4 "draccus>=0.11.6,<0.12.0" \\
        "huggingface-hub>=1.6.0,<2.0.0" "numpy>=2.0.0,<2.3.0" "av>=15.0.0,<16.0.0" \\
        "packaging>=24.2,<26.0" "termcolor>=2.4.0,<4.0.0" "Pillow>=10.0.0,<13.0.0" \\
        "einops>=0.8.0,<0.9.0" "pyarrow>=21.0.0,<30.0.0" "datasets>=4.8.0,<5.0.0" \\
        "pandas>=2.0.0,<3.0.0" "tqdm>=4.66.0,<5.0.0" "gymnasium>=1.1.1,<2.0.0"

Patches: none to LeRobot's code. CPU placement is LeRobot's own ``device="cpu"`` option,
attention is the transformers default (sdpa), dtype is ``torch_dtype="float32"`` (what "auto" gives
for this float32 checkpoint). The script only (a) sets HF_HUB_OFFLINE=1 and torch to 1 thread,
(b) hands LeRobot's episode loop ``compute_instruction_rewards_for_prefixes`` a plain list of
``{image_key: frame}`` dicts in place of a LeRobotDataset (it only indexes ``dataset[i][image_key]``),
(c) wraps the encoder step and ``compute_reward`` in pass-through recorders.

Modes recorded per instruction:
  * ``rabc_dense``: compute_rabc_weights' default (``num_samples=None``): one call per prefix length
    1..N, encoder built exactly as ``compute_topreward_progress`` builds it (``max_frames=None``).
  * ``rabc_num_samples_15``: the same loop with ``num_samples=15`` (the docs' example).
  * ``online_max_frames_16``: ``make_topreward_pre_post_processors`` (default ``max_frames=16``) +
    ``compute_reward`` once per prefix; LeRobot has no episode driver for this path, the per-prefix
    sweep is ours.

JSON notes: texts are ``tokenizer.decode(input_ids)`` with each run of n ``<|video_pad|>`` written
``<|video_pad|>*n``; ``input_ids_sha256`` is sha256 of ``json.dumps(input_ids)`` (default separators).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
from pathlib import Path

import av
import numpy as np
import torch

LEROBOT_COMMIT = "7427f31801f944f5ec9ce53cda02862ce7d1638b"
CLIP = Path(__file__).resolve().parents[2] / "src/topreward/assets/sample_pick_place.mp4"
INSTRUCTIONS = ["put the pen into the cup", "Pick up the red cube."]
PAD_RUN = re.compile(r"((?:<\|video_pad\|>)+)")
NUM_LIST = re.compile(r"\[\s*([-+\d.e,\s]+?)\s*\]")  # numeric JSON lists go on one line


def decode_clip(path: Path) -> torch.Tensor:
    """All frames as (T, 3, H, W) uint8 RGB (channel-first, as LeRobotDataset yields frames)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def frame_indices(window: torch.Tensor, clip: torch.Tensor) -> list[int]:
    """Raw clip index of each frame in ``window`` (T, C, H, W), matched by exact equality."""
    out = []
    for frame in window:
        hits = [i for i in range(len(clip)) if torch.equal(clip[i], frame)]
        assert len(hits) == 1, f"frame matched {hits}"
        out.append(hits[0])
    return out


class Recorder:
    """Pass-through wrappers around LeRobot's encoder step and model that log every call."""

    def __init__(self, model, step, clip, prefix: str, image_key: str) -> None:
        self.model, self.step, self.clip, self.prefix, self.image_key = model, step, clip, prefix, image_key
        self.calls: list[dict] = []
        self._frames: torch.Tensor | None = None

    def encode(self, transition):
        from lerobot.lerobot_types import TransitionKey

        self._frames = transition[TransitionKey.OBSERVATION][self.image_key]
        return self.step(transition)

    def compute_reward(self, batch, frames=None):
        reward = self.model.compute_reward(batch)
        frames = self._frames if frames is None else frames
        self.calls.append(self.describe(batch, frames, float(reward.item())))
        return reward

    def describe(self, batch, frames, value: float) -> dict:
        from lerobot.rewards.topreward.processor_topreward import _prepare_video_batch

        tok, patch = self.step._processor.tokenizer, self.step._processor.video_processor.patch_size
        get = lambda k: batch[f"{self.prefix}{k}"]  # noqa: E731
        ids = get("input_ids")[0].tolist()
        thw = get("video_grid_thw")[0].tolist()
        window = _prepare_video_batch(frames.cpu(), max_frames=self.step.max_frames)[0]
        text = tok.decode(ids, skip_special_tokens=False)
        text = PAD_RUN.sub(lambda m: f"<|video_pad|>*{m.group(1).count('<|video_pad|>')}", text)
        video = re.search(r"(<\d+\.\d seconds><\|vision_start\|>.*<\|vision_end\|>)", text)
        answer = int(get("labels")[0, -1])
        return {
            "frame_indices": frame_indices(window, self.clip),
            "resized_hw": [thw[1] * patch, thw[2] * patch],
            "video_grid_thw": thw,
            "pixel_values_videos_shape": list(get("pixel_values_videos").shape),
            "num_input_ids": len(ids),
            "input_ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
            "text_before_video": text[: video.start()],
            "video_block": video.group(1),
            "text_after_video": text[video.end() :],
            "answer_token_id": answer,
            "answer_token": tok.decode([answer]),
            "value": value,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lerobot_src", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    sys.path.insert(0, str(args.lerobot_src / "src"))
    import transformers
    from lerobot.rewards.topreward import TOPRewardConfig, TOPRewardModel, make_topreward_pre_post_processors
    from lerobot.rewards.topreward.compute_rabc_weights import (
        compute_instruction_rewards_for_prefixes,
        normalize_rewards,
    )
    from lerobot.rewards.topreward.processor_topreward import (
        TOPREWARD_FEATURE_PREFIX,
        TOPRewardEncoderProcessorStep,
    )

    clip = decode_clip(CLIP)
    config = TOPRewardConfig(vlm_name=str(args.model_dir), device="cpu", torch_dtype="float32")
    model = TOPRewardModel(config).to("cpu").eval()
    # Exactly as compute_topreward_progress builds it (compute_rabc_weights.py:173-184).
    encoder = TOPRewardEncoderProcessorStep(
        vlm_name=config.vlm_name,
        image_key=config.image_key,
        task_key=config.task_key,
        default_task=config.default_task,
        max_frames=None,
        fps=config.fps,
        prompt_prefix=config.prompt_prefix,
        prompt_suffix_template=config.prompt_suffix_template,
        add_chat_template=config.add_chat_template,
        max_length=config.max_input_length,
    )
    preprocessor, _ = make_topreward_pre_post_processors(config)
    online_step = next(s for s in preprocessor.steps if isinstance(s, TOPRewardEncoderProcessorStep))
    dataset = [{config.image_key: frame} for frame in clip]
    n = len(clip)

    def rabc(task: str, num_samples: int | None) -> tuple[Recorder, list[float]]:
        rec = Recorder(model, encoder, clip, TOPREWARD_FEATURE_PREFIX, config.image_key)
        progress = compute_instruction_rewards_for_prefixes(
            model=rec, encoder=rec.encode, dataset=dataset, ep_start=0, num_frames=n, task=task,
            image_key=config.image_key, num_samples=num_samples, device="cpu",
        )  # fmt: skip
        return rec, [float(x) for x in progress]

    results = {}
    for task in INSTRUCTIONS:
        dense, dense_progress = rabc(task, None)
        sparse, sparse_progress = rabc(task, 15)
        online = Recorder(model, online_step, clip, TOPREWARD_FEATURE_PREFIX, config.image_key)
        for length in range(1, n + 1):
            frames = clip[:length].unsqueeze(0)
            online.compute_reward(preprocessor({config.image_key: frames, "task": task}), frames)

        dense_values = [c["value"] for c in dense.calls]
        sparse_lengths = [len(c["frame_indices"]) for c in sparse.calls]
        sparse_values = [c["value"] for c in sparse.calls]
        assert sparse_values == [dense_values[k - 1] for k in sparse_lengths], "calls are not reproducible"
        results[task] = {
            "rabc_dense": {
                "prefix_ends": [c["frame_indices"][-1] for c in dense.calls],
                "calls": dense.calls,
                "values": dense_values,
                "progress_per_frame": dense_progress,
            },
            "rabc_num_samples_15": {
                "prefix_lengths": sparse_lengths,
                "prefix_ends": [k - 1 for k in sparse_lengths],
                "values": sparse_values,
                "normalized_at_anchors": [float(x) for x in normalize_rewards(sparse_values)],
                "progress_per_frame": sparse_progress,
            },
            "online_max_frames_16": {
                "prefix_ends": [c["frame_indices"][-1] for c in online.calls],
                "calls": online.calls,
                "values": [c["value"] for c in online.calls],
            },
        }

    vp = encoder._processor.video_processor
    out = {
        "source": "huggingface/lerobot src/lerobot/rewards/topreward (LeRobot's own code, run unmodified)",
        "environment": {
            "lerobot_commit": LEROBOT_COMMIT,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "av": av.__version__,
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "attn_implementation": model.model.config._attn_implementation,
            "model_dtype": str(model.model.dtype),
        },
        "inputs": {
            "clip": "src/topreward/assets/sample_pick_place.mp4",
            "clip_frames": list(clip.shape),
            "clip_uint8_sha256": hashlib.sha256(clip.numpy().tobytes()).hexdigest(),
            "model": "topreward make-tiny-model --arch qwen3_vl (seed 0)",
            "model_safetensors_sha256": hashlib.sha256(
                (args.model_dir / "model.safetensors").read_bytes()
            ).hexdigest(),
        },
        "config": {
            **{
                k: getattr(config, k)
                for k in ("fps", "max_frames", "prompt_prefix", "prompt_suffix_template")
            },
            "add_chat_template": config.add_chat_template,
            "rabc_encoder_max_frames": encoder.max_frames,
            "video_processor": {
                k: getattr(vp, k) for k in ("patch_size", "merge_size", "temporal_patch_size")
            }
            | {"min_pixels": vp.size.shortest_edge, "max_pixels": vp.size.longest_edge},
        },
        "instructions": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    flat = NUM_LIST.sub(
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", json.dumps(out, indent=1)
    )
    args.out.write_text(flat + "\n")


if __name__ == "__main__":
    main()

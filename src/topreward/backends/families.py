"""Model-family specifics of the video models: the pieces the prefix-sharing engine must not guess.

Families: Qwen3-VL, Qwen2.5-VL, Qwen3.5 (Qwen3-VL's vision and positions, a hybrid language model) and
Molmo2. Each family says
  * which text the processor expands into the video's tokens (`video_placeholder`),
  * which frame metadata makes that expansion and the M-RoPE positions prefix-stable (`video_metadata`),
  * how to compute M-RoPE positions for a token sequence (`position_ids`, the model's own `get_rope_index`),
  * how the vision encoder's outputs enter the language model (`language_model_kwargs`; Qwen3-VL's
    DeepStack adds features to the hidden states of the first decoder layers at the visual positions),
  * which fast path is exact for it (`fast_path`, `no_fast_path_reason`):
      - "packed" (Qwen3-VL, Qwen2.5-VL): `video_cache.VideoCache`, requests packed on one KV cache;
      - "recurrent" (Qwen3.5): `recurrent_cache.RecurrentVideoCache` — its Gated DeltaNet layers carry a
        recurrent state that a mask cannot cut, so the video pass snapshots it at every prefix boundary;
      - None (Molmo2): no exact sharing; "fast" answers on the reference path (the reason is stated below),
  * what a prompt text holds around the video for each prompt style (`user_turn`, `chat_video_marker`):
    the chat markup lives here and nowhere else (the served backend writes Qwen-VL prompts with
    `QWEN_USER_TURN` and `QWEN_IMAGE_MARKER`).
Importing this module does not import torch (the served backends use its text constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Qwen chat markup: what opens a user turn, and what a prompt text holds for one image
QWEN_USER_TURN = "<|im_start|>user\n"
QWEN_IMAGE_MARKER = "<|vision_start|><|image_pad|><|vision_end|>"

IMAGE_TYPE = 1  # modality ids of image and video tokens in `mm_token_type_ids`
VIDEO_TYPE = 2


@dataclass(frozen=True)
class VisionFeatures:
    """Merged vision features of one temporal group (tokens_per_group, D) and its DeepStack features."""

    embeds: torch.Tensor
    deepstack: tuple[torch.Tensor, ...] = ()


class QwenVLFamily:
    """Shared behaviour of Qwen2.5-VL and Qwen3-VL."""

    name = "qwen_vl"
    model_types: tuple[str, ...] = ()
    #: the exact fast path of this family: "packed", "recurrent", or None (reference path only)
    fast_path: str | None = "packed"
    no_fast_path_reason = ""
    #: what the prompt text holds where the video goes; the processor replaces its `<|video_pad|>`.
    video_placeholder = "<|vision_start|><|video_pad|><|vision_end|>"
    #: the same marker as written by Qwen chat templates, rewritten to `video_placeholder`.
    chat_video_marker = "<|vision_start|><|video_pad|><|vision_end|>"
    #: what opens a user turn; the `authors` prompt style keeps it before the video and leaves the turn open
    user_turn = QWEN_USER_TURN

    def video_metadata(self, source_indices: np.ndarray, source_fps: float, sampled_fps: float):
        raise NotImplementedError

    def rope_extra_kwargs(self, processor, metadata) -> dict:
        return {}

    def position_ids(
        self,
        model,
        input_ids: torch.Tensor,
        video_grid_thw: torch.Tensor | None = None,
        extra: dict | None = None,
        image_grid_thw: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """M-RoPE positions (3, L) of one sequence, from the model's own `get_rope_index`."""
        import torch

        ids = input_ids[None]
        types = (ids == model.config.video_token_id).to(torch.int32) * VIDEO_TYPE
        types += (ids == model.config.image_token_id).to(torch.int32) * IMAGE_TYPE
        pos, _ = model.model.get_rope_index(
            ids,
            mm_token_type_ids=types,
            video_grid_thw=video_grid_thw,
            image_grid_thw=image_grid_thw,
            **(extra or {}),
        )
        return pos[:, 0]

    def encode(self, model, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[list[VisionFeatures]]:
        """Run the vision encoder once over several videos; returns per video, per temporal group features."""
        out = model.model.get_video_features(pixel_values, grid_thw, return_dict=True)
        per_video = []
        for v, (t, h, w) in enumerate(grid_thw.tolist()):
            tpg = h * w // model.model.visual.spatial_merge_size**2
            emb = out.pooler_output[v]
            deep = [layer[v] for layer in (getattr(out, "deepstack_features", None) or [])]
            per_video.append(
                [
                    VisionFeatures(
                        emb[g * tpg : (g + 1) * tpg], tuple(d[g * tpg : (g + 1) * tpg] for d in deep)
                    )
                    for g in range(t)
                ]
            )
        return per_video

    def language_model_kwargs(self, visual_mask: torch.Tensor, deepstack: list[torch.Tensor]) -> dict:
        return {}


class Qwen25VLFamily(QwenVLFamily):
    """Qwen2.5-VL: one vision block per video; temporal positions scale with seconds per temporal group."""

    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)

    def video_metadata(self, source_indices, source_fps, sampled_fps):
        from transformers.video_utils import VideoMetadata

        # The processor derives seconds-per-group from len(indices) / total * fps; describing the prefix as
        # its own clip at the sampling rate keeps that value the same for every prefix length.
        n = len(source_indices)
        return VideoMetadata(total_num_frames=n, fps=float(sampled_fps), frames_indices=list(range(n)))

    def rope_extra_kwargs(self, processor, metadata) -> dict:
        import torch

        seconds = processor.video_processor.temporal_patch_size / metadata.sampled_fps
        return {"second_per_grid_ts": torch.tensor([seconds])}


class Qwen3VLFamily(QwenVLFamily):
    """Qwen3-VL: `<t seconds>` text before each temporal group, DeepStack features in early layers."""

    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    # The processor writes vision start/end around every temporal group itself.
    video_placeholder = "<|video_pad|>"

    def video_metadata(self, source_indices, source_fps, sampled_fps):
        from transformers.video_utils import VideoMetadata

        idx = [int(i) for i in source_indices]
        return VideoMetadata(total_num_frames=idx[-1] + 1, fps=float(source_fps), frames_indices=idx)

    def language_model_kwargs(self, visual_mask, deepstack):
        if not deepstack:
            return {}
        return {"visual_pos_masks": visual_mask, "deepstack_visual_embeds": deepstack}


class Qwen35Family(Qwen3VLFamily):
    """Qwen3.5: Qwen3-VL's processor, vision tower (without DeepStack) and M-RoPE, over a hybrid language model
    of Gated DeltaNet (linear-attention, recurrent) and full-attention layers."""

    name = "qwen3_5"
    model_types = ("qwen3_5",)
    fast_path = "recurrent"


class Molmo2Family(QwenVLFamily):
    """Molmo2: per-frame ViT crops pooled into `<im_patch>` tokens between `<frame_start>`/`<frame_end>`, each
    frame preceded by its timestamp as text ("0.5 "); 1-D RoPE."""

    name = "molmo2"
    model_types = ("molmo2",)
    video_placeholder = "<|video|>"
    chat_video_marker = "<|video|>"
    fast_path = None
    no_fast_path_reason = (
        "Molmo2's language model lets every frame token attend to every other frame token (one bidirectional "
        "block over the video, `mm_token_type_ids`), so a frame's keys and values depend on the frames after "
        "it: the cache of the whole video is not the cache of a prefix, and no prefix can share it exactly"
    )

    def video_metadata(self, source_indices, source_fps, sampled_fps):
        from transformers.video_utils import VideoMetadata

        # timestamps are index / fps: the real source indices and rate give every prefix the same times
        idx = [int(i) for i in source_indices]
        return VideoMetadata(total_num_frames=idx[-1] + 1, fps=float(source_fps), frames_indices=idx)


def frame_grid(video_processor) -> tuple[int, int]:
    """(patch factor frame sides are rounded to, frames per temporal group) of a video processor.

    Qwen-VL: patch size x spatial merge, `temporal_patch_size` frames per group. Molmo2 resizes every frame
    to its own square crop and pools `pooling_size` patches; its frames stand alone.
    """
    vp = video_processor
    if hasattr(vp, "merge_size"):
        return int(vp.patch_size * vp.merge_size), int(vp.temporal_patch_size)
    return int(vp.patch_size * vp.pooling_size[0]), 1


FAMILIES: tuple[QwenVLFamily, ...] = (Qwen3VLFamily(), Qwen25VLFamily(), Qwen35Family(), Molmo2Family())


def family_for(model_type: str, model_id: str = "") -> QwenVLFamily:
    for fam in FAMILIES:
        if model_type in fam.model_types:
            return fam
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise ValueError(
        f"model {model_id or '?'} has model_type {model_type!r}; the transformers backend supports {supported} "
        "(e.g. Qwen/Qwen3-VL-8B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3.5-27B, allenai/Molmo2-8B)"
    )

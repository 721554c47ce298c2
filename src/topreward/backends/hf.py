"""Local transformers backend: loads a Qwen-VL video model and scores next-token log-probs after video prefixes.

Two paths compute the same numbers:
  * `reference_log_probs`: one ordinary forward per prefix through the model's own processor — the
    definition, kept simple so it can be trusted.
  * `fast_log_probs` (default): prefix sharing (see `topreward.backends.prefix_sharing`): the vision
    encoder runs once per frame pair, the language model runs once over the episode's video tokens, and
    the K prompt suffixes are scored on top of that shared cache in packed forwards.
A test holds them equal to 1e-4 in float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from topreward.backends.qwen_vl import QwenVLFamily, family_for
from topreward.prompts import PromptStyle

logger = logging.getLogger(__name__)


@dataclass
class ModelVideo:
    """The frames a model sees for one episode: sampled once, resized once.

    Attributes:
        frames: uint8 RGB (N, h, w, 3) at model resolution.
        source_indices: index in the source video of each sampled frame.
        source_fps: frame rate of the source video.
    """

    frames: np.ndarray
    source_indices: np.ndarray
    source_fps: float

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def sampled_fps(self) -> float:
        """Average rate of the sampled frames in frames per second of video time."""
        span = (self.source_indices[-1] - self.source_indices[0]) / self.source_fps
        return (len(self.source_indices) - 1) / span if span > 0 else self.source_fps


@dataclass(frozen=True)
class PromptText:
    """The text before and after the video (the video placeholder goes between them)."""

    before: str
    after: str


def _pick_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _pick_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


class HFBackend:
    """A Qwen-VL video model loaded with transformers, on one device.

    Args:
        model: Hub id or local folder (anything `from_pretrained` accepts).
        revision: Hub revision (branch, tag or commit).
        device: "cuda", "cuda:1", "cpu"; default: CUDA when available.
        dtype: "bfloat16", "float32", ...; default bf16 on CUDA, float32 on CPU.
        attn_implementation: "sdpa" (default) or "eager"; the packed suffix pass needs a 4-D mask.
    """

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"attn_implementation={attn_implementation!r}: the prefix-shared pass uses a 4-D attention mask, "
                "which needs 'sdpa' or 'eager'"
            )
        self.model_id = str(model)
        self.revision = revision
        self.device = _pick_device(device)
        self.dtype = _pick_dtype(dtype, self.device)
        try:
            config = AutoConfig.from_pretrained(self.model_id, revision=revision)
        except OSError as e:
            raise ValueError(
                f"cannot load model {self.model_id!r}: {e}. Pass a Hub id you can download or a local folder "
                "(`topreward make-tiny-model PATH` writes a tiny offline one)"
            ) from e
        self.family: QwenVLFamily = family_for(config.model_type, self.model_id)
        self.processor = AutoProcessor.from_pretrained(self.model_id, revision=revision)
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_id, revision=revision, dtype=self.dtype, attn_implementation=attn_implementation
        ).to(self.device)
        self.model.eval()
        vp = self.processor.video_processor
        self.patch_factor = int(vp.patch_size * vp.merge_size)
        self.temporal_patch = int(vp.temporal_patch_size)
        self.max_context = int(self.model.config.get_text_config().max_position_embeddings)

    # ---- text -------------------------------------------------------------------------------------
    def token_id(self, word: str) -> int:
        """The id of `word` as one token (e.g. " True" with its leading space); error if it is several."""
        ids = self.processor.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            pieces = self.processor.tokenizer.convert_ids_to_tokens(ids)
            raise ValueError(
                f"model {self.model_id}: the answer word {word!r} is {len(ids)} tokens {pieces}, not one; "
                "TOPReward reads a single next-token probability, so use a model whose tokenizer has it as one "
                "token, or change the answer word"
            )
        return int(ids[0])

    def prompt_text(self, style: PromptStyle, prompt: str) -> PromptText:
        """Where the video and the prompt go for each prompt style (see `topreward.prompts`)."""
        if style == "raw":
            return PromptText("", prompt)
        if style == "authors":
            return PromptText("<|im_start|>user\n", prompt)
        if style == "chat":
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            marker = self.family.chat_video_marker
            if text.count(marker) != 1:
                raise ValueError(
                    f"model {self.model_id}: its chat template does not place one {marker!r} for the video; "
                    "use prompt_style='raw' or 'authors'"
                )
            before, after = text.split(marker)
            return PromptText(before, after)
        raise ValueError(f"unknown prompt_style {style!r}; choose 'raw', 'authors' or 'chat'")

    def full_text(self, prompt: PromptText) -> str:
        return prompt.before + self.family.video_placeholder + prompt.after

    # ---- inputs -----------------------------------------------------------------------------------
    def processor_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"do_resize": False, "do_sample_frames": False}
        if hasattr(self.processor.video_processor, "cap_pixels_per_frame"):
            kw["cap_pixels_per_frame"] = False  # frames are already at their final size
        return kw

    def prefix_metadata(self, video: ModelVideo, k: int):
        return self.family.video_metadata(video.source_indices[:k], video.source_fps, video.sampled_fps)

    def check_context(self, num_tokens: int) -> None:
        if num_tokens > self.max_context:
            raise ValueError(
                f"the input is {num_tokens} tokens, longer than model {self.model_id}'s context of "
                f"{self.max_context}; lower `max_frames` or `fps`, or the resolution (`max_pixels` / `size`)"
            )

    # ---- reference path ---------------------------------------------------------------------------
    @torch.inference_mode()
    def reference_log_probs(
        self, video: ModelVideo, prefixes: list[int], prompt: PromptText, token_ids: list[int]
    ) -> np.ndarray:
        """One plain forward per prefix through the processor and the model; (K, len(token_ids)) log-probs."""
        text = self.full_text(prompt)
        rows = []
        for k in prefixes:
            inputs = self.processor(
                text=[text],
                videos=[video.frames[:k]],
                video_metadata=[self.prefix_metadata(video, k)],
                return_tensors="pt",
                **self.processor_kwargs(),
            )
            self.check_context(inputs["input_ids"].shape[1])
            # only pixels take the model's dtype: e.g. Qwen2.5-VL's seconds-per-group must stay float32,
            # or bf16 rounding would move its temporal positions
            inputs = {
                key: (v.to(self.device, self.dtype) if key.startswith("pixel_values") else v.to(self.device))
                for key, v in inputs.items()
                if isinstance(v, torch.Tensor)
            }
            logits = self.model(**inputs, logits_to_keep=1).logits[0, -1]
            rows.append(torch.log_softmax(logits.float(), dim=-1)[token_ids].cpu().numpy())
        return np.stack(rows).astype(np.float64)

    # ---- fast path --------------------------------------------------------------------------------
    def fast_log_probs(
        self,
        video: ModelVideo,
        prefixes: list[int],
        prompt: PromptText,
        token_ids: list[int],
        batch_size: int = 8,
    ) -> np.ndarray:
        """Prefix-shared scoring; same numbers as `reference_log_probs` (see `prefix_sharing`)."""
        from topreward.backends.prefix_sharing import score_prefixes

        return score_prefixes(self, video, prefixes, prompt, token_ids, batch_size=batch_size)

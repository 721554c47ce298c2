"""Local transformers backend: a Qwen-VL video model on one device, implementing `topreward.backends.base.Backend`.

Two paths answer the same requests with the same numbers:
  * `path="reference"`: `ReferenceVideoCache`, one ordinary forward per request through the model's own
    processor — the definition, kept simple so it can be trusted.
  * `path="fast"` (default): `VideoCache` (`topreward.backends.video_cache`): the vision encoder runs
    once per frame pair, the language model once over the video's tokens, and the requests are packed on
    top of that shared cache.
Tests hold them equal to 1e-4 in float32. The fast path is the family's (`families.QwenVLFamily.fast_path`):
packed requests on one KV cache (Qwen3-VL, Qwen2.5-VL), per-request recurrent-state snapshots
(`recurrent_cache`, Qwen3.5), or none (Molmo2: "fast" answers on the reference path, see its family).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError

from topreward.backends.base import (
    GENERATION,
    LOG_PROBS,
    MULTI_IMAGE,
    PREFIX_SHARING,
    Answer,
    Generation,
    ModelVideo,
    Request,
    appended,
    check_parts,
    cut_at_stop,
)
from topreward.backends.families import QwenVLFamily, family_for, frame_grid
from topreward.backends.loading import check_local_model, missing_tokenizer_files, pick_device, pick_dtype
from topreward.backends.video_cache import TextTokens
from topreward.prompts import PromptStyle

if TYPE_CHECKING:
    from topreward.backends.config import BackendConfig

logger = logging.getLogger(__name__)

__all__ = ["HFBackend", "ModelVideo", "PromptText", "ReferenceVideoCache"]


@dataclass(frozen=True)
class PromptText:
    """The text before and after the video (the video placeholder goes between them)."""

    before: str
    after: str


ScoringPath = Literal["fast", "reference"]


class HFBackend:
    """A Qwen-VL video model loaded with transformers, on one device.

    Args:
        model: Hub id or local folder (anything `from_pretrained` accepts).
        revision: Hub revision (branch, tag or commit).
        device: "cuda", "cuda:1", "cpu"; default: CUDA when available.
        dtype: "bfloat16", "float32", ...; default bf16 on CUDA, float32 on CPU.
        attn_implementation: "sdpa" (default) or "eager"; the packed request pass needs a 4-D mask.
        path: "fast" (the shared video cache) or "reference" (one forward per request).
        batch_size: requests per packed forward on the fast path (a memory knob).
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str = "sdpa",
        path: ScoringPath = "fast",
        batch_size: int = 8,
        adapter: str | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"attn_implementation={attn_implementation!r}: the prefix-shared pass uses a 4-D attention mask, "
                "which needs 'sdpa' or 'eager'"
            )
        if path not in ("fast", "reference"):
            raise ValueError(f"path={path!r}; choose 'fast' or 'reference'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = str(model)
        self.revision = revision
        self.path, self.batch_size = path, batch_size
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        check_local_model(self.model_id)
        try:
            config = AutoConfig.from_pretrained(self.model_id, revision=revision)
        except OSError as e:
            raise ValueError(
                f"cannot load model {self.model_id!r}: {e}. Pass a Hub id you can download or a local folder "
                "(`topreward make-tiny-model PATH` writes a tiny offline one)"
            ) from e
        self.family: QwenVLFamily = family_for(config.model_type, self.model_id)
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_id, revision=revision)
        except (ValueError, OSError) as e:
            missing = missing_tokenizer_files(self.model_id)
            if not missing:
                raise
            raise ValueError(
                f"cannot load the tokenizer of model {self.model_id!r}: the folder has no {missing}; copy the "
                "tokenizer files (tokenizer.json, tokenizer_config.json, ...) from the model's Hub repo into it"
            ) from e
        tokenizer = self.processor.tokenizer
        if not tokenizer.encode("True", add_special_tokens=False):  # an empty vocabulary: files missing
            missing = missing_tokenizer_files(self.model_id)
            raise ValueError(
                f"model {self.model_id!r} has no usable tokenizer (it encodes no text"
                + (f"; the folder has no {missing}" if missing else "")
                + "); copy its tokenizer files (tokenizer.json, tokenizer_config.json, ...) from the model's Hub "
                "repo into the folder"
            )
        try:
            model_obj = AutoModelForImageTextToText.from_pretrained(
                self.model_id, revision=revision, dtype=self.dtype, attn_implementation=attn_implementation
            )
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # missing / truncated / damaged
            if "out of memory" in str(e).lower():
                raise
            raise ValueError(
                f"cannot load the weights of model {self.model_id!r} ({type(e).__name__}: {e}); the weight "
                "files are missing, truncated or damaged: download them again (a local folder needs "
                "model.safetensors or its shards)"
            ) from e
        self.adapter = None
        if adapter:  # a LoRA adapter from `topreward train`, merged in: scored like a full model
            from topreward.backends.adapters import load_adapter

            model_obj = load_adapter(model_obj, adapter, self.model_id)
            self.adapter = str(Path(adapter).expanduser().resolve())
        self.model = model_obj.to(self.device)
        # task text may not hold these (`topreward.task_text.check_task_text`): the tokenizer would
        # read them as control tokens, not as text
        self.reserved_tokens = tuple(
            sorted(
                {t.content for t in tokenizer.added_tokens_decoder.values()}
                | set(tokenizer.all_special_tokens),
                key=str,
            )
        )
        self.model.eval()
        self.patch_factor, self.temporal_patch = frame_grid(self.processor.video_processor)
        self.max_context = int(self.model.config.get_text_config().max_position_embeddings)
        self.capabilities = frozenset({LOG_PROBS, PREFIX_SHARING, GENERATION, MULTI_IMAGE})
        if self.family.fast_path is None:
            self.capabilities -= {PREFIX_SHARING}
            logger.info(
                "model %s (%s): no exact prefix sharing, path='fast' answers on the reference path: %s",
                self.model_id,
                self.family.name,
                self.family.no_fast_path_reason,
            )

    @classmethod
    def from_config(cls, config: BackendConfig) -> HFBackend:
        c = config
        return cls(
            c.model,
            revision=c.revision,
            device=c.device,
            dtype=c.dtype,
            attn_implementation=c.attn_implementation,
            path=c.path,
            batch_size=c.batch_size,
            adapter=c.adapter,
        )

    @classmethod
    def config_patch_factor(cls, config: BackendConfig) -> int:
        return cls.frame_patch_factor(config.model, config.revision)

    @staticmethod
    def frame_patch_factor(model: str, revision: str | None = None) -> int:
        """The patch grid frame sides are rounded to, read from the model's video processor config only."""
        from transformers import AutoVideoProcessor

        try:
            vp = AutoVideoProcessor.from_pretrained(str(model), revision=revision)
        except OSError as e:
            raise ValueError(f"cannot read the video processor of model {model!r}: {e}") from e
        return frame_grid(vp)[0]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "revision": self.revision,
            "family": self.family.name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device,
            "backend": self.name,
            **({"adapter": self.adapter} if self.adapter else {}),
        }

    # ---- text -------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return list(self.processor.tokenizer.encode(text, add_special_tokens=False))

    def token_id(self, word: str) -> int:
        """The id of `word` as one token (e.g. " True" with its leading space); error if it is several."""
        ids = self.tokenize(word)
        if len(ids) != 1:
            pieces = self.processor.tokenizer.convert_ids_to_tokens(ids)
            raise ValueError(
                f"model {self.model_id}: the answer word {word!r} is {len(ids)} tokens {pieces}, not one; "
                "a next-token probability needs a word that is a single token in this tokenizer, so change "
                "the answer word (or use a model whose tokenizer has it as one token)"
            )
        return int(ids[0])

    def prompt_text(self, style: PromptStyle, prompt: str) -> PromptText:
        """Where the video and the prompt go for each prompt style (see `topreward.prompts`)."""
        if style == "raw":
            return PromptText("", prompt)
        if style == "authors":
            return PromptText(self.family.user_turn, prompt)
        if style == "chat":
            before, after = self.chat_split([{"type": "video"}, {"type": "text", "text": prompt}])
            return PromptText(before, after)
        raise ValueError(f"unknown prompt_style {style!r}; choose 'raw', 'authors' or 'chat'")

    def chat_split(self, content: list[dict]) -> tuple[str, str]:
        """The chat template of one user turn of `content` (one video), split at the video: (before, after)."""
        messages = [{"role": "user", "content": content}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        marker = self.family.chat_video_marker
        if text.count(marker) != 1:
            raise ValueError(
                f"model {self.model_id}: its chat template does not place one {marker!r} for the video; "
                "use prompt_style='raw' or 'authors'"
            )
        before, after = text.split(marker)
        return before, after

    def full_text(self, prompt: PromptText) -> str:
        return prompt.before + self.family.video_placeholder + prompt.after

    # ---- inputs -----------------------------------------------------------------------------------
    def processor_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"do_resize": False, "do_sample_frames": False}
        if hasattr(self.processor.video_processor, "cap_pixels_per_frame"):
            kw["cap_pixels_per_frame"] = False  # frames are already at their final size
        return kw

    def prefix_metadata(self, video: ModelVideo, k: int):
        if video.clock is not None:
            # qwen-vl-utils' list of frames: consecutive at `clock`, the count padded to whole temporal
            # groups (the processor repeats the last frame; the timestamps count the repeat as a new frame)
            n = -(-k // self.temporal_patch) * self.temporal_patch
            return self.family.video_metadata(np.arange(n), video.clock, video.clock)
        return self.family.video_metadata(video.source_indices[:k], video.source_fps, video.sampled_fps)

    def check_context(self, num_tokens: int) -> None:
        if num_tokens > self.max_context:
            raise ValueError(
                f"the input is {num_tokens} tokens, longer than model {self.model_id}'s context of "
                f"{self.max_context}; lower `max_frames` or `fps`, or the resolution (`max_pixels` / `size`)"
            )

    def video_inputs(self, video: ModelVideo, k: int, before: str, text: str):
        """Processor inputs of [before, frames 1..k of `video`, text]: the reference path's one forward
        (frames as prepared, their real timestamps)."""
        return self.processor(
            text=[before + self.family.video_placeholder + text],
            videos=[video.frames[:k]],
            video_metadata=[self.prefix_metadata(video, k)],
            return_tensors="pt",
            **self.processor_kwargs(),
        )

    def image_inputs(self, prompt: str, images: list[np.ndarray], text: str, resize: bool = False):
        """Processor inputs of an image prompt (`image_chat`) followed by `text`; the images as given, or
        with `resize` at the processor's own resizing (as `chat` shows them)."""
        return self.processor(
            text=[prompt + text], images=list(images), return_tensors="pt", do_resize=resize
        )

    def to_device(self, inputs) -> dict[str, torch.Tensor]:
        """Processor outputs on the model's device."""
        # only pixels take the model's dtype: e.g. Qwen2.5-VL's seconds-per-group must stay float32,
        # or bf16 rounding would move its temporal positions
        return {
            key: (v.to(self.device, self.dtype) if key.startswith("pixel_values") else v.to(self.device))
            for key, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }

    def answer_tensors(self, inputs, text: str, request: Request) -> tuple[torch.Tensor, torch.Tensor]:
        """One plain forward of processor `inputs` whose sequence ends with `text`: the log-probs of
        `request.tokens` after it and of its span's tokens, float32 on the device.

        Autograd is the caller's: the scorer runs this in inference mode, `topreward train` takes
        gradients through it (`topreward.train.heads`), so both read the same forward.
        """
        nxt, span, _ = self._answer(inputs, text, request)
        return nxt, span

    def forward_answer(self, inputs, text: str, request: Request) -> Answer:
        """`answer_tensors` as an `Answer` (numpy float64, with the span's token ids)."""
        nxt, span, targets = self._answer(inputs, text, request)
        return Answer(_numpy(nxt), _numpy(span), tuple(targets.tolist()))

    def _answer(self, inputs, text: str, request: Request) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = TextTokens.of(self.processor.tokenizer, text)
        ids, n = inputs["input_ids"][0], len(tokens.ids)
        self.check_context(len(ids))
        if ids[len(ids) - n :].tolist() != tokens.ids.tolist():
            raise RuntimeError(
                f"the tokens of {text[:60]!r} change when it follows the video; start it with a space"
            )
        logits = self.model(**self.to_device(inputs), logits_to_keep=n + 1).logits[0].float()
        log_probs = torch.log_softmax(logits, dim=-1)  # row j predicts text token j; row n the next token
        nxt = log_probs[n, list(request.tokens)] if request.tokens else log_probs.new_zeros(0)
        if request.span is None:
            return nxt, log_probs.new_zeros(0), tokens.ids[:0]
        j0, j1 = tokens.span_tokens(request.span, text)
        targets = tokens.ids[j0:j1]
        rows = torch.arange(j0, j1, device=log_probs.device)
        return nxt, log_probs[rows, targets.to(log_probs.device)], targets

    def last_token_log_probs(
        self,
        frames: np.ndarray,
        fps: float,
        indices: list[int],
        before: str,
        after: str,
        extra: tuple[int, ...] = (),
        *,
        upcast: bool = True,
    ) -> np.ndarray:
        """Log-probs at the position that predicts the last token of [before, video, after]: that token's,
        then those of the `extra` ids — one plain forward (the peer pipelines of `topreward.scorers.conventions`).

        `frames` (T, h, w, 3) are at their final size, uint8 or float in [0, 255] (no resizing or frame
        sampling by the processor); `fps` and `indices` are the video metadata the processor turns into
        timestamps. `upcast`: log-softmax in float32 (else in the logits' own dtype, e.g. bf16).
        """
        from transformers.video_utils import VideoMetadata

        meta = VideoMetadata(total_num_frames=len(indices), fps=float(fps), frames_indices=list(indices))
        inputs = self.processor(
            text=[before + self.family.video_placeholder + after],
            videos=[frames],
            video_metadata=[meta],
            return_tensors="pt",
            **self.processor_kwargs(),
        )
        ids = inputs["input_ids"][0]
        self.check_context(len(ids))
        logits = self.model(**self.to_device(inputs), logits_to_keep=2).logits[0, 0]
        log_probs = torch.log_softmax(logits.float() if upcast else logits, dim=-1)
        return log_probs[[int(ids[-1]), *extra]].float().detach().cpu().numpy().astype(np.float64)

    # ---- the video cache (both paths) -------------------------------------------------------------
    def video_cache(
        self,
        video: ModelVideo,
        before: str,
        *,
        path: ScoringPath | None = None,
        batch_size: int | None = None,
    ):
        """The family's fast cache (`VideoCache`, `RecurrentVideoCache`) or `ReferenceVideoCache` over `video`
        with `before` in front of it.

        `path` and `batch_size` default to the backend's own. A family without an exact fast path (Molmo2)
        answers "fast" on the reference path; constructing its `VideoCache` directly is an error.
        """
        path = path or self.path
        if path not in ("fast", "reference"):
            raise ValueError(f"path={path!r}; choose 'fast' or 'reference'")
        if path == "reference" or self.family.fast_path is None:
            return ReferenceVideoCache(self, video, before)
        if self.family.fast_path == "recurrent":
            from topreward.backends.recurrent_cache import RecurrentVideoCache

            return RecurrentVideoCache(self, video, before, batch_size=batch_size or self.batch_size)
        from topreward.backends.video_cache import VideoCache

        return VideoCache(self, video, before, batch_size=batch_size or self.batch_size)

    def reference_log_probs(
        self, video: ModelVideo, prefixes: list[int], prompt: PromptText, token_ids: list[int]
    ) -> np.ndarray:
        """(K, len(token_ids)) next-token log-probs after each prefix, one plain forward each."""
        cache = ReferenceVideoCache(self, video, prompt.before)
        return _stack(cache.score([Request(k, prompt.after, tuple(token_ids)) for k in prefixes]))

    def fast_log_probs(
        self,
        video: ModelVideo,
        prefixes: list[int],
        prompt: PromptText,
        token_ids: list[int],
        batch_size: int = 8,
    ) -> np.ndarray:
        """Prefix-shared scoring; same numbers as `reference_log_probs` (see `video_cache`)."""
        cache = self.video_cache(video, prompt.before, path="fast", batch_size=batch_size)
        return _stack(cache.score([Request(k, prompt.after, tuple(token_ids)) for k in prefixes]))

    # ---- generation -------------------------------------------------------------------------------
    def chat(self, parts: list, generation: Generation | None = None) -> str:
        """The model's answer to one user turn of text, images (uint8 (H, W, 3)) and videos (`ModelVideo`),
        after `generation.system` as a system turn if given.

        The chat template with its generation prompt; images at the processor's own resizing, videos as
        prepared (no resizing or frame sampling, their real timestamps). Greedy unless
        `generation.temperature` > 0 (then sampled with `generation.seed`); the text is cut before the
        first stop string.
        """
        generation = generation or Generation()
        check_parts(parts)
        content, images, videos, metas = [], [], [], []
        for p in parts:
            if isinstance(p, str):
                content.append({"type": "text", "text": p})
            elif isinstance(p, ModelVideo):
                content.append({"type": "video"})
                videos.append(p.frames)
                metas.append(self.prefix_metadata(p, p.num_frames))
            else:
                content.append({"type": "image"})
                images.append(p)
        system = [{"role": "system", "content": generation.system}] if generation.system is not None else []
        text = self.processor.apply_chat_template(
            [*system, {"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        kwargs: dict[str, Any] = {}
        if videos:
            kwargs.update(videos=videos, video_metadata=metas, **self.processor_kwargs())
        if images:
            kwargs["images"] = images
        inputs = self.processor(text=[text], return_tensors="pt", **kwargs)
        n = inputs["input_ids"].shape[1]
        self.check_context(n + generation.max_new_tokens)
        sample = generation.temperature > 0
        if sample:
            torch.manual_seed(generation.seed)
        out = self.model.generate(
            **self.to_device(inputs),
            max_new_tokens=generation.max_new_tokens,
            do_sample=sample,
            temperature=generation.temperature if sample else None,
            top_p=generation.top_p if sample and generation.top_p < 1 else None,
            top_k=generation.top_k if sample and generation.top_k else None,
            stop_strings=list(generation.stop) or None,
            tokenizer=self.processor.tokenizer if generation.stop else None,
        )
        answer = self.processor.tokenizer.decode(out[0, n:], skip_special_tokens=True)
        return cut_at_stop(answer, generation.stop)

    # ---- several images in one prompt (reference path) ------------------------------------------
    def image_chat(self, parts: list[str | np.ndarray]) -> tuple[str, list[np.ndarray]]:
        """A user turn of the model's chat template from text and image parts, and the images in order."""
        content = [
            {"type": "image"} if isinstance(p, np.ndarray) else {"type": "text", "text": p} for p in parts
        ]
        messages = [{"role": "user", "content": content}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text, [p for p in parts if isinstance(p, np.ndarray)]

    def image_log_probs(
        self,
        prompt: str,
        images: list[np.ndarray],
        requests: list[Request],
        *,
        path: ScoringPath | None = None,
        batch_size: int | None = None,
        resize: bool = False,
    ) -> list[Answer]:
        """Answers to requests whose `text` follows `prompt`, a text with one image marker per image (as
        given, or with `resize` at the processor's own resizing).

        `path="fast"`: the prompt (images included) runs once and keeps its KV cache; the requests' texts
        are packed on top of it (`video_cache.score_on_cache`), `batch_size` at a time. `"reference"`:
        one plain forward of prompt + text per request. `Request.prefix` is not used here. Families whose
        cache is not plain keys and values (Qwen3.5's recurrent layers, Molmo2) answer on the reference path.
        """
        path = path or self.path
        if path == "reference" or self.family.fast_path != "packed":
            answers = []
            for r in requests:
                answers.append(
                    self.forward_answer(self.image_inputs(prompt, images, r.text, resize), r.text, r)
                )
            return answers
        return self._image_log_probs_shared(prompt, images, requests, batch_size or self.batch_size, resize)

    def _image_log_probs_shared(
        self, prompt: str, images: list[np.ndarray], requests: list[Request], batch_size: int, resize: bool
    ) -> list[Answer]:
        from topreward.backends.video_cache import Piece, score_on_cache

        inputs = self.image_inputs(prompt, images, "", resize)
        ids = inputs["input_ids"][0]
        texts = {r.text: TextTokens.of(self.processor.tokenizer, r.text) for r in requests}
        self.check_context(len(ids) + max(len(t.ids) for t in texts.values()))
        prompt_ids = self.tokenize(prompt)
        for text, tokens in texts.items():  # a text's tokens must not depend on the prompt before it
            if self.tokenize(prompt + text) != prompt_ids + tokens.ids.tolist():
                raise RuntimeError(
                    f"the tokens of {text[:60]!r} change after the prompt; start it with a space or use path='reference'"
                )
        pos = self.family.position_ids(self.model, ids, image_grid_thw=inputs.get("image_grid_thw"))
        if ids[-1] == self.model.config.image_token_id or len(set(pos[:, -1].tolist())) != 1:
            raise RuntimeError(
                "an image prompt must end with text (e.g. the assistant header) before the answer"
            )
        out = self.model(**self.to_device(inputs), use_cache=True, logits_to_keep=1)
        cache = out.cache if "cache" in out else out.past_key_values  # renamed `cache` in transformers 5.24
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        item = (Piece.empty(), len(ids), int(pos[0, -1]) + 1)
        # a span at the text's first token is read at the prompt's last token: that request runs the last
        # token again as its own piece, seeing the cache without it
        last = (Piece(ids[-1:], pos[:, -1:], torch.zeros(0, dtype=torch.long)), len(ids) - 1, item[2])
        items = [
            last if r.span is not None and texts[r.text].span_tokens(r.span, r.text)[0] == 0 else item
            for r in requests
        ]
        answers = []
        for i in range(0, len(requests), batch_size):
            got, _ = score_on_cache(
                self, kv, requests[i : i + batch_size], items[i : i + batch_size], texts.__getitem__
            )
            answers += got
        return answers


class ReferenceVideoCache:
    """The definition: every request is one plain forward of [before, frames 1..k, text] through the processor."""

    side_by_side = False

    def __init__(self, backend: HFBackend, video: ModelVideo, before: str) -> None:
        self.backend, self.before = backend, before
        self.video = dataclasses.replace(video)  # its own: `extend` replaces it, never the caller's

    def score(self, requests: list[Request]) -> list[Answer]:
        b = self.backend
        answers = []
        for r in requests:
            if not 1 <= r.prefix <= self.video.num_frames:
                raise ValueError(
                    f"prefix {r.prefix} is outside the video's 1..{self.video.num_frames} frames"
                )
            inputs = b.video_inputs(self.video, r.prefix, self.before, r.text)
            answers.append(b.forward_answer(inputs, r.text, r))
        return answers

    def extend(self, frames: np.ndarray, source_indices) -> None:
        self.video = appended(self.video, frames, source_indices)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def _stack(answers: list[Answer]) -> np.ndarray:
    return np.stack([a.next for a in answers])

"""The video cache for hybrid language models with recurrent layers (Qwen3.5: Gated DeltaNet + full attention).

`video_cache.VideoCache` packs every request on top of one KV cache and lets a 4-D mask hide, for
each request, the cached tokens after its own prefix. That is exact for attention layers only. A Gated
DeltaNet layer does not look back through a mask: it carries a recurrent state (and a short causal-conv
state) forward token by token, so after one pass over the whole video its state holds every frame, and no
mask can take the later frames out again. Prefix sharing therefore needs that state as it was at each
prefix's boundary:
  1. Layouts, shared lengths and vision features are `VideoCache`'s (Qwen3.5 has Qwen3-VL's processor,
     vision tower and M-RoPE); the boundaries are the distinct shared lengths of prefixes 1..N.
  2. One language-model pass over the whole video's shared part, run in segments that end at the
     boundaries; after each segment the conv and recurrent states of every linear-attention layer are
     copied (a snapshot). The full-attention layers' keys and values are kept once, for the whole video.
  3. `score(requests)`: each request runs its own part (a re-encoded last group, the video's closing
     tokens, its text) on a cache made of the full-attention keys and values cut at its boundary and the
     linear-attention snapshot taken there — one forward per request, as the recurrent states differ.
  4. `extend(frames)` runs the pass again over the longer video (the snapshots depend on where the
     boundaries fall).
Cost: the video runs through the language model once; each request runs only its own tokens. Memory: one
snapshot per boundary, (linear layers) x (value heads x key dim x value dim + conv channels x kernel)
floats — e.g. 24 layers x 32 x 128 x 128 in float32 is ~50 MB per boundary, ~1.6 GB for 32 frames.
Tests hold it equal to the reference path (one plain forward per request) to 1e-4 in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from topreward.backends.base import Answer, ModelVideo, Request
from topreward.backends.video_cache import Piece, VideoCache, _embed, cache_arg, collect_answers

if TYPE_CHECKING:
    from topreward.backends.hf import HFBackend

#: per layer: None for an attention layer, else (conv state, recurrent state) of a linear-attention layer
Snapshot = list[tuple[torch.Tensor, torch.Tensor] | None]


class RecurrentVideoCache(VideoCache):
    """`VideoCache` for models whose language model mixes recurrent (linear-attention) and attention layers.

    Args:
        backend: the loaded `HFBackend` (a family with `fast_path == "recurrent"`).
        video: the frames the model sees (sampled and resized).
        before: text before the video.
        batch_size: kept for the common signature; requests run one per forward (their states differ).
    """

    side_by_side = False  # its requests cannot be packed beside other caches' in one sequence

    def __init__(self, backend: HFBackend, video: ModelVideo, before: str, *, batch_size: int = 8) -> None:
        self._snapshots: dict[int, Snapshot] = {}
        self._linear = [t == "linear_attention" for t in backend.model.config.get_text_config().layer_types]
        super().__init__(backend, video, before, batch_size=batch_size)

    def _sync(self) -> None:
        """One segmented pass over the whole video's shared part, snapshotting the states at each boundary."""
        from transformers import DynamicCache

        n = self.video.num_frames
        full = self.layout(n)
        self._encode_missing([full])
        target = int(full.video_positions[-1]) + 1
        cuts = sorted({self.shared(k) for k in range(1, n + 1)} | {target})
        cache = DynamicCache(config=self.backend.model.config)
        self._snapshots, start = {}, 0
        for end in cuts:
            if end > start:
                embeds, pos, kwargs = _embed(
                    self.backend, [Piece.of_layout(full, start, end, self.bank)], self.bank
                )
                lm = self.backend.model.model.language_model
                lm(inputs_embeds=embeds, position_ids=pos, use_cache=True, **cache_arg(lm, cache), **kwargs)
                self.lm_tokens += end - start
            self._snapshots[end] = self._snapshot(cache) if end else []
            start = end
        self._kv = [
            None if linear else (layer.keys, layer.values)
            for linear, layer in zip(self._linear, cache.layers)
        ]
        self._kv_layout, self._kv_len = full, target

    def _snapshot(self, cache) -> Snapshot:
        return [
            (layer.conv_states[0].clone(), layer.recurrent_states[0].clone()) if linear else None
            for linear, layer in zip(self._linear, cache.layers)
        ]

    def _cache_at(self, boundary: int):
        """A fresh cache holding the video's first `boundary` tokens: keys/values cut there, states taken there."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.backend.model.config)
        if boundary == 0:
            return cache
        snapshot = self._snapshots[boundary]
        for layer, kv, state in zip(cache.layers, self._kv, snapshot):
            if kv is not None:
                layer.update(kv[0][:, :, :boundary], kv[1][:, :, :boundary])
            else:
                layer.update_conv_state(state[0].clone())
                layer.update_recurrent_state(state[1].clone())
        return cache

    def score(self, requests: list[Request]) -> list[Answer]:
        """Answer every request (see `Request`); one forward of its own tokens on its boundary's cache each."""
        answers: list[Answer] = []
        for r, (own, sees, text_position) in zip(requests, self.items(requests)):
            text = self.text_tokens(r.text)
            n = len(text.ids)
            piece = Piece(
                torch.cat([own.ids, text.ids]),
                torch.cat([own.positions, (text_position + torch.arange(n)).expand(3, n)], dim=1),
                own.rows,
            )
            embeds, pos, kwargs = _embed(self.backend, [piece], self.bank)
            lm = self.backend.model.model.language_model
            hidden = lm(
                inputs_embeds=embeds,
                position_ids=pos,
                use_cache=True,
                **cache_arg(lm, self._cache_at(sees)),
                **kwargs,
            ).last_hidden_state[0]
            text_start, reads = len(own.ids), []
            if r.span is not None:
                j0, j1 = text.span_tokens(r.span, r.text)
                if text_start + j0 == 0:
                    raise RuntimeError("a span starting at the first token after the cache cannot be scored")
                reads += [(0, text_start + j - 1, int(text.ids[j])) for j in range(j0, j1)]
            if r.tokens:
                reads.append((0, len(piece.ids) - 1, -1))
            rows = torch.tensor([row for _, row, _ in reads], device=hidden.device)
            log_probs = torch.log_softmax(self.backend.model.lm_head(hidden[rows]).float(), dim=-1)
            answers += collect_answers([r], reads, log_probs)
            self.lm_tokens += len(piece.ids)
        return answers

    def extend(self, frames: np.ndarray, source_indices: np.ndarray | list[int]) -> None:
        """Append frames and run the language-model pass again (new boundaries need new snapshots)."""
        super().extend(frames, source_indices)

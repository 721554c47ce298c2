"""Prefix sharing: score K video prefixes with each frame's work done once.

The reference computes, for every prefix k, a full forward over [text before, video frames 1..k, prompt].
Most of that work repeats. Here:
  1. `build_layouts`: the token ids and M-RoPE positions every prefix would get from the processor and
     the model (text only, no pixels), and which frame pair feeds each temporal group of vision tokens.
  2. `shared_length`: how many leading tokens prefix k shares exactly with the whole episode's sequence —
     same ids, same positions, vision tokens from the same frame pair. A prefix ending inside a temporal
     group (odd k with 2-frame groups) gets that last group padded by repeating its frame, so that group's
     features differ and it moves to the suffix.
  3. `encode_frame_pairs`: the vision encoder runs once per distinct frame pair (Qwen-VL encoders attend
     only within a temporal group, so this equals per-prefix encoding).
  4. `build_video_cache`: one language-model forward over the longest shared part gives a KV cache.
  5. `score_suffixes`: each prefix's remaining tokens (its suffix: a re-encoded last group if any, then
     the prompt) are packed into one sequence on top of the cache, with a 4-D mask so each suffix sees the
     cache up to its own shared length and itself; chunked by `batch_size` prefixes to bound memory.
Nothing here assumes the sharing is possible: where ids, positions or frames differ, the shared part
just ends earlier and the suffix is longer. Several prompts over one cache (ensembles) are more suffixes;
frames arriving during an RL episode extend the cache (step 4 again from the old length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from topreward.backends.hf import HFBackend, ModelVideo, PromptText

FramePair = tuple[int, int]


@dataclass
class Layout:
    """One prefix's input as the model sees it (token ids, positions) and where its vision tokens come from."""

    num_frames: int
    input_ids: torch.Tensor  # (L,)
    position_ids: torch.Tensor  # (3, L)
    video_positions: torch.Tensor  # (V,) token positions of the video placeholders, in order
    group_pairs: list[FramePair]  # sampled-frame pair of each temporal group
    tokens_per_group: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def group_pairs(k: int, temporal_patch: int) -> list[FramePair]:
    """Frame pairs of a k-frame clip; the processor pads the last group by repeating the last frame."""
    return [(s, min(s + temporal_patch - 1, k - 1)) for s in range(0, k, temporal_patch)]


def build_layouts(
    backend: HFBackend, video: ModelVideo, lengths: list[int], prompt: PromptText
) -> dict[int, Layout]:
    proc, fam, model = backend.processor, backend.family, backend.model
    h, w = video.frames.shape[1:3]
    ps = backend.patch_factor // proc.video_processor.merge_size
    tpg = (h // ps) * (w // ps) // proc.video_processor.merge_size**2
    video_token_id = model.config.video_token_id
    layouts = {}
    for k in sorted(set(lengths)):
        pairs = group_pairs(k, backend.temporal_patch)
        grid = torch.tensor([[len(pairs), h // ps, w // ps]])
        meta = backend.prefix_metadata(video, k)
        expansion = proc.replace_video_token({"video_grid_thw": grid, "video_metadata": [meta]}, 0)
        text = prompt.before + fam.video_placeholder.replace(proc.video_token, expansion) + prompt.after
        ids = torch.tensor(proc.tokenizer(text)["input_ids"], dtype=torch.long)
        backend.check_context(len(ids))
        pos = fam.position_ids(model, ids, grid, fam.rope_extra_kwargs(proc, meta))
        vpos = torch.nonzero(ids == video_token_id).flatten()
        if len(vpos) != len(pairs) * tpg:
            raise RuntimeError(f"layout of prefix {k}: {len(vpos)} video tokens, expected {len(pairs) * tpg}")
        layouts[k] = Layout(k, ids, pos, vpos, pairs, tpg)
    return layouts


def shared_length(layout: Layout, full: Layout) -> int:
    """Leading tokens `layout` shares exactly with `full`; never past its own last video token."""
    n = min(len(layout), len(full))
    differs = (layout.input_ids[:n] != full.input_ids[:n]) | (
        layout.position_ids[:, :n] != full.position_ids[:, :n]
    ).any(0)
    first = torch.nonzero(differs)
    p = int(first[0]) if len(first) else n
    for g, (mine, theirs) in enumerate(zip(layout.group_pairs, full.group_pairs)):
        if mine != theirs:
            p = min(p, int(layout.video_positions[g * layout.tokens_per_group]))
            break
    return min(p, int(layout.video_positions[-1]) + 1)


@dataclass
class FeatureBank:
    """Vision features of distinct frame pairs, stacked: pair p's group occupies rows start[p] .. + tokens."""

    embeds: torch.Tensor  # (R, D)
    deepstack: list[torch.Tensor]  # per DeepStack layer, (R, D)
    start: dict[FramePair, int]

    def rows(self, layout: Layout, video_token_index: torch.Tensor) -> torch.Tensor:
        """Rows of the given video tokens (indices into `layout.video_positions`)."""
        tpg = layout.tokens_per_group
        starts = torch.tensor([self.start[p] for p in layout.group_pairs], dtype=torch.long)
        return starts[video_token_index // tpg] + video_token_index % tpg


def encode_frame_pairs(
    backend: HFBackend, video: ModelVideo, pairs: set[FramePair], groups_per_clip: int = 16
) -> FeatureBank:
    """Vision features of every distinct frame pair, one encoder pass each.

    Runs of consecutive full pairs (s, s+1), (s+2, s+3), ... are encoded as clips of up to
    `groups_per_clip` groups; a padded pair (s, s) as a one-frame clip, which the processor pads exactly as
    it pads a prefix's last frame.
    """
    tp = backend.temporal_patch
    runs: list[list[FramePair]] = []
    for pair in sorted(pairs):
        full_pair = pair[1] - pair[0] == tp - 1
        prev = runs[-1][-1] if runs else None
        if (
            full_pair
            and prev is not None
            and prev[1] - prev[0] == tp - 1
            and prev[1] + 1 == pair[0]
            and len(runs[-1]) < groups_per_clip
        ):
            runs[-1].append(pair)
        else:
            runs.append([pair])
    clips = [video.frames[run[0][0] : run[-1][1] + 1] for run in runs]
    inputs = backend.processor.video_processor(
        videos=clips, return_tensors="pt", **backend.processor_kwargs()
    )
    pixels = inputs["pixel_values_videos"].to(backend.device, backend.dtype)
    grid = inputs["video_grid_thw"].to(backend.device)
    with torch.inference_mode():
        per_clip = backend.family.encode(backend.model, pixels, grid)
    start: dict[FramePair, int] = {}
    embeds, deep, row = [], [], 0
    for run, groups in zip(runs, per_clip):
        if len(run) != len(groups):
            raise RuntimeError(f"the encoder returned {len(groups)} groups for frame pairs {run}")
        for pair, feat in zip(run, groups):
            start[pair] = row
            row += feat.embeds.shape[0]
            embeds.append(feat.embeds)
            deep.append(feat.deepstack)
    deepstack = [torch.cat([d[i] for d in deep]) for i in range(len(deep[0]))] if deep and deep[0] else []
    return FeatureBank(torch.cat(embeds), deepstack, start)


def _embed(backend: HFBackend, segments: list[tuple[Layout, int, int]], bank: FeatureBank):
    """Input embeddings, positions and vision kwargs for the concatenation of token ranges [a, b) of layouts."""
    model = backend.model
    ids = torch.cat([lay.input_ids[a:b] for lay, a, b in segments])
    pos = torch.cat([lay.position_ids[:, a:b] for lay, a, b in segments], dim=1).to(backend.device)
    rows = []
    for lay, a, b in segments:
        lo, hi = torch.searchsorted(lay.video_positions, torch.tensor([a, b])).tolist()
        rows.append(bank.rows(lay, torch.arange(lo, hi)))
    rows_t = torch.cat(rows).to(backend.device)
    visual_mask = (ids == model.config.video_token_id).to(backend.device)
    embeds = model.get_input_embeddings()(ids.to(backend.device))
    if not len(rows_t):
        return embeds[None], pos[:, None], {}
    embeds[visual_mask] = bank.embeds[rows_t].to(embeds.dtype)
    deepstack = [d[rows_t].to(embeds.dtype) for d in bank.deepstack]
    return embeds[None], pos[:, None], backend.family.language_model_kwargs(visual_mask[None], deepstack)


@torch.inference_mode()
def build_video_cache(
    backend: HFBackend, full: Layout, length: int, bank: FeatureBank
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """KV cache (per layer keys, values) of the first `length` tokens of `full`."""
    from transformers import DynamicCache

    embeds, pos, kwargs = _embed(backend, [(full, 0, length)], bank)
    cache = DynamicCache(config=backend.model.config)
    backend.model.model.language_model(
        inputs_embeds=embeds, position_ids=pos, past_key_values=cache, use_cache=True, **kwargs
    )
    return [(layer.keys, layer.values) for layer in cache.layers]


def suffix_mask(
    shared: list[int], lengths: list[int], cache_len: int, dtype: torch.dtype, device
) -> torch.Tensor:
    """Additive 4-D mask (1, 1, S, cache_len + S): suffix i sees cache[:shared[i]] and itself, causally."""
    total = sum(lengths)
    allowed = torch.zeros(total, cache_len + total, dtype=torch.bool, device=device)
    start = 0
    for s, n in zip(shared, lengths):
        allowed[start : start + n, :s] = True
        allowed[start : start + n, cache_len + start : cache_len + start + n] = torch.ones(
            n, n, dtype=torch.bool, device=device
        ).tril()
        start += n
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


@torch.inference_mode()
def score_suffixes(
    backend: HFBackend,
    kv: list[tuple[torch.Tensor, torch.Tensor]],
    items: list[tuple[Layout, int]],
    bank: FeatureBank,
    token_ids: list[int],
) -> np.ndarray:
    """Log-probs at the end of each (layout, shared length) suffix, in one packed forward; (n, len(token_ids))."""
    from transformers import DynamicCache

    cache_len = max(s for _, s in items)
    lengths = [len(lay) - s for lay, s in items]
    embeds, pos, kwargs = _embed(backend, [(lay, s, len(lay)) for lay, s in items], bank)
    mask = suffix_mask([s for _, s in items], lengths, cache_len, embeds.dtype, backend.device)
    cache = DynamicCache(ddp_cache_data=[(k[:, :, :cache_len], v[:, :, :cache_len]) for k, v in kv])
    hidden = backend.model.model.language_model(
        inputs_embeds=embeds,
        position_ids=pos,
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        **kwargs,
    ).last_hidden_state[0]
    last = torch.tensor(np.cumsum(lengths) - 1, device=hidden.device)
    logits = backend.model.lm_head(hidden[last])
    return torch.log_softmax(logits.float(), dim=-1)[:, token_ids].cpu().numpy().astype(np.float64)


def score_prefixes(
    backend: HFBackend,
    video: ModelVideo,
    prefixes: list[int],
    prompt: PromptText,
    token_ids: list[int],
    batch_size: int = 8,
) -> np.ndarray:
    """Log-probs of `token_ids` after each prefix length in `prefixes`; (K, len(token_ids))."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = video.num_frames
    layouts = build_layouts(backend, video, [*prefixes, n], prompt)
    full = layouts[n]
    shared = {k: shared_length(layouts[k], full) for k in prefixes}
    bank = encode_frame_pairs(backend, video, {p for lay in layouts.values() for p in lay.group_pairs})
    kv = build_video_cache(backend, full, max(shared.values()), bank)
    out = []
    for i in range(0, len(prefixes), batch_size):
        chunk = prefixes[i : i + batch_size]
        out.append(score_suffixes(backend, kv, [(layouts[k], shared[k]) for k in chunk], bank, token_ids))
    return np.concatenate(out)

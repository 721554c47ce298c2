"""Several videos' caches in one packed forward: the sessions of a server round or of a vector env.

`score_on_caches` answers requests to several caches together and `extend_caches` grows several caches
together. Both stand the caches' KV side by side as one past and the pieces after it, and both use the range
mask of `suffix_mask` so each piece sees only its own cache's part and itself; keys keep the rotary positions
of their own sequence, so the results equal each cache alone (tests: 1e-4).
"""

from __future__ import annotations

import numpy as np
import torch

from topreward.backends.base import Answer, Request, appended
from topreward.backends.video_cache import (
    FeatureBank,
    Piece,
    TextTokens,
    VideoCache,
    _embed,
    build_layout,
    cache_arg,
    encode_frame_pairs_many,
    score_on_cache,
    suffix_mask,
)


def extend_caches(jobs: list[tuple[VideoCache, np.ndarray, np.ndarray | list[int]]]) -> dict[str, int]:
    """`cache.extend(frames, source_indices)` for several caches of one backend at once; returns the forwards
    run (`vision`, `language`).

    Every cache's new frame pairs go through the vision encoder in one call; every KV cache grows in one
    packed language-model forward: the caches' kept parts stand side by side as the past, the new pieces
    follow, and the mask of `score_on_caches` lets each piece see only its own cache's part and itself. Keys
    carry their own sequence's rotary positions, so each cache ends as `extend` alone leaves it (tests hold
    the answers to 1e-4). A cache that cannot stand beside others (`side_by_side` False: recurrent models,
    the reference path, served models) is extended on its own. Nothing changes if the forward fails.
    """
    from transformers import DynamicCache

    jobs = [(c, f, i) for c, f, i in jobs if len(f)]
    counts = {"vision": 0, "language": 0}
    packed = [j for j in jobs if type(j[0]) is VideoCache]
    for cache, frames, indices in jobs:
        if type(cache) is not VideoCache:
            cache.extend(frames, indices)
    if not packed:
        return counts
    backend = packed[0][0].backend
    if any(c.backend is not backend for c, _, _ in packed):
        raise ValueError("extend_caches needs caches of one backend (one model)")
    plans = []
    for cache, frames, indices in packed:
        video = appended(cache.video, frames, indices)
        full = build_layout(backend, video, video.num_frames, cache.before)
        plans.append((cache, video, full, set(full.group_pairs) - set(cache.bank.start)))
    encoded = encode_frame_pairs_many(backend, [(video, missing) for _, video, _, missing in plans])
    counts["vision"] = int(any(missing for *_, missing in plans))
    banks, pieces, visible, past, keeps = [], [], [], [], []
    row_offset = kv_offset = 0
    for (cache, _, full, _), new in zip(plans, encoded):
        bank = FeatureBank(cache.bank.embeds, list(cache.bank.deepstack), dict(cache.bank.start))
        bank.add(new)
        keep, target = cache._kept(full)
        piece = Piece.of_layout(full, keep, target, bank)
        pieces.append(Piece(piece.ids, piece.positions, piece.rows + row_offset))
        visible.append((kv_offset, kv_offset + keep))
        past.append([(k[:, :, :keep], v[:, :, :keep]) for k, v in cache.kv] if keep else None)
        banks.append(bank)
        keeps.append(keep)
        row_offset += bank.embeds.shape[0]
        kv_offset += keep
    lengths = [len(p.ids) for p in pieces]
    layers = None
    if sum(lengths):
        bank = FeatureBank(
            torch.cat([b.embeds for b in banks]),
            [torch.cat(layer) for layer in zip(*(b.deepstack for b in banks))],
        )
        parts = [p for p in past if p is not None]
        if parts:
            cache = DynamicCache(
                ddp_cache_data=[
                    (torch.cat([p[i][0] for p in parts], dim=2), torch.cat([p[i][1] for p in parts], dim=2))
                    for i in range(len(parts[0]))
                ]
            )
        else:
            cache = DynamicCache(config=backend.model.config)
        embeds, pos, kwargs = _embed(backend, [p for p in pieces if len(p.ids)], bank)
        mask = suffix_mask(
            [v for v, n in zip(visible, lengths) if n],
            [n for n in lengths if n],
            kv_offset,
            embeds.dtype,
            backend.device,
        )
        lm = backend.model.model.language_model
        lm(
            inputs_embeds=embeds,
            position_ids=pos,
            attention_mask=mask,
            use_cache=True,
            **cache_arg(lm, cache),
            **kwargs,
        )
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        counts["language"] = 1
    start = kv_offset
    for (cache, video, full, _), bank, keep, kept, n in zip(plans, banks, keeps, past, lengths):
        kv = kept
        if n:
            new = [(k[:, :, start : start + n], v[:, :, start : start + n]) for k, v in layers]
            kv = (
                new
                if kept is None
                else [
                    (torch.cat([a, c], dim=2), torch.cat([b, d], dim=2)) for (a, b), (c, d) in zip(kept, new)
                ]
            )
        start += n
        cache.video, cache.bank = video, bank
        cache._layouts = {video.num_frames: full}
        cache._kv, cache._kv_layout, cache._kv_len = kv or [], full, keep + n
        cache.lm_tokens += n
    return counts


def score_on_caches(jobs: list[tuple[VideoCache, list[Request]]], batch_size: int = 8) -> list[list[Answer]]:
    """Requests to several videos' caches in shared packed forwards; one answer list per job.

    The caches stand side by side in one KV cache (keys keep the rotary positions of their own sequence)
    and their vision features in one bank; the mask lets each request see only its own video's part.
    Equal to asking each cache alone (tests hold it to 1e-4).
    """
    caches = [c for c, _ in jobs]
    backend = caches[0].backend
    if any(c.backend is not backend for c in caches):
        raise ValueError("score_on_caches needs caches of one backend (one model)")
    kv_offset, row_offset = 0, 0
    kv_parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    flat_requests: list[Request] = []
    flat_items: list[tuple[Piece, tuple[int, int], int]] = []
    tokens: dict[str, TextTokens] = {}
    for cache, requests in jobs:
        for (piece, sees, text_position), r in zip(cache.items(requests), requests):
            moved = Piece(piece.ids, piece.positions, piece.rows + row_offset)
            flat_items.append((moved, (kv_offset, kv_offset + sees), text_position))
            flat_requests.append(r)
            tokens[r.text] = cache.text_tokens(r.text)
        row_offset += cache.bank.embeds.shape[0]
        kv_parts.append(cache.kv)
        kv_offset += cache.kv_length
    banks = [c.bank for c in caches]  # every cache holds at least one frame's features
    bank = FeatureBank(
        torch.cat([b.embeds for b in banks]),
        [torch.cat(layer) for layer in zip(*(b.deepstack for b in banks))],
    )
    kv = [
        (
            torch.cat([part[layer][0] for part in kv_parts], dim=2),
            torch.cat([part[layer][1] for part in kv_parts], dim=2),
        )
        for layer in range(len(kv_parts[0]))
    ]
    answers: list[Answer] = []
    for i in range(0, len(flat_requests), batch_size):
        chunk = slice(i, i + batch_size)
        got, _ = score_on_cache(
            backend, kv, flat_requests[chunk], flat_items[chunk], tokens.__getitem__, bank
        )
        answers += got
    out, start = [], 0
    for _, requests in jobs:
        out.append(answers[start : start + len(requests)])
        start += len(requests)
    return out

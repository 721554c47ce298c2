"""The video cache: many requests about one video's prefixes, with each frame's work done once.

The reference computes, for every request (prefix k, text), a full forward over [text before, frames
1..k, text]. Most of that work repeats. A `VideoCache` is built once per (episode frames, text before
the video) and keeps what the requests share:
  1. `build_layout`: the token ids and M-RoPE positions of [before, frames 1..k] as the processor and the
     model would make them (text only, no pixels), and which frame pair feeds each temporal group of
     vision tokens.
  2. `shared_length`: how many leading tokens prefix k shares exactly with the whole video's sequence —
     same ids, same positions, vision tokens from the same frame pair. A prefix ending inside a temporal
     group (odd k with 2-frame groups) gets that last group padded by repeating its frame, so that group's
     features differ and it moves to the request's own part.
  3. `encode_frame_pairs`: the vision encoder runs once per distinct frame pair (Qwen-VL encoders attend
     only within a temporal group, so this equals per-prefix encoding); the cache keeps the features.
  4. One language-model forward over the whole video's shared part gives a KV cache, kept.
  5. `VideoCache.score(requests)`: each request's remaining tokens (a re-encoded last group if any, then
     its text) are packed into one sequence on top of the cache, with a 4-D mask so each request sees the
     cache up to its own shared length and itself; `batch_size` requests per forward. Next-token
     log-probs are read at the last position, teacher-forced log-probs at every token of a span.
  6. `VideoCache.extend(frames)`: new frames are appended; only new frame pairs are encoded and the KV
     cache is extended from where the old and new sequences stop agreeing.
Nothing here assumes sharing is possible: where ids, positions or frames differ, the shared part just
ends earlier. That a text's tokens and positions after the video do not depend on the video is checked
once per distinct text against the tokenizer and `get_rope_index` on the whole sequence.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from topreward.backends.base import Answer, ModelVideo, Request, appended

if TYPE_CHECKING:
    from topreward.backends.hf import HFBackend

FramePair = tuple[int, int]


@dataclass
class Layout:
    """[text before, frames 1..k] as the model sees it (token ids, positions), and where its vision tokens come from."""

    num_frames: int
    input_ids: torch.Tensor  # (L,)
    position_ids: torch.Tensor  # (3, L)
    video_positions: torch.Tensor  # (V,) token positions of the video placeholders, in order
    group_pairs: list[FramePair]  # sampled-frame pair of each temporal group
    tokens_per_group: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def next_position(self) -> int:
        """M-RoPE position of the first text token after this layout (all three axes).

        Text continues from the last token's position (a text token such as `<|vision_end|>`, whose three
        axes are equal, checked in `build_layout`) + 1 — not from the largest position so far: Qwen2.5-VL's
        temporal positions can run ahead of the text's.
        """
        return int(self.position_ids[0, -1]) + 1


def group_pairs(k: int, temporal_patch: int) -> list[FramePair]:
    """Frame pairs of a k-frame clip; the processor pads the last group by repeating the last frame."""
    return [(s, min(s + temporal_patch - 1, k - 1)) for s in range(0, k, temporal_patch)]


def video_expansion(backend: HFBackend, video: ModelVideo, k: int, before: str) -> tuple[str, torch.Tensor]:
    """The text [before, frames 1..k] with the video placeholder expanded as the processor does, and its grid."""
    proc = backend.processor
    h, w = video.frames.shape[1:3]
    ps = backend.patch_factor // proc.video_processor.merge_size
    grid = torch.tensor([[len(group_pairs(k, backend.temporal_patch)), h // ps, w // ps]])
    meta = backend.prefix_metadata(video, k)
    expansion = proc.replace_video_token({"video_grid_thw": grid, "video_metadata": [meta]}, 0)
    return before + backend.family.video_placeholder.replace(proc.video_token, expansion), grid


def build_layout(backend: HFBackend, video: ModelVideo, k: int, before: str) -> Layout:
    proc, fam, model = backend.processor, backend.family, backend.model
    text, grid = video_expansion(backend, video, k, before)
    ids = torch.tensor(proc.tokenizer(text)["input_ids"], dtype=torch.long)
    backend.check_context(len(ids))
    meta = backend.prefix_metadata(video, k)
    pos = fam.position_ids(model, ids, grid, fam.rope_extra_kwargs(proc, meta))
    vpos = torch.nonzero(ids == model.config.video_token_id).flatten()
    pairs = group_pairs(k, backend.temporal_patch)
    tpg = int(grid[0, 1] * grid[0, 2]) // proc.video_processor.merge_size**2
    if len(vpos) != len(pairs) * tpg:
        raise RuntimeError(f"layout of prefix {k}: {len(vpos)} video tokens, expected {len(pairs) * tpg}")
    if int(vpos[-1]) == len(ids) - 1 or len(set(pos[:, -1].tolist())) != 1:
        raise RuntimeError(
            f"layout of prefix {k} does not end with a text token after the video; the family's "
            "video_placeholder must close the video with a text token such as <|vision_end|>"
        )
    return Layout(k, ids, pos, vpos, pairs, tpg)


def build_layouts(
    backend: HFBackend, video: ModelVideo, lengths: list[int], before: str
) -> dict[int, Layout]:
    return {k: build_layout(backend, video, k, before) for k in sorted(set(lengths))}


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

    embeds: torch.Tensor | None = None  # (R, D)
    deepstack: list[torch.Tensor] = field(default_factory=list)  # per DeepStack layer, (R, D)
    start: dict[FramePair, int] = field(default_factory=dict)

    def rows(self, layout: Layout, video_token_index: torch.Tensor) -> torch.Tensor:
        """Rows of the given video tokens (indices into `layout.video_positions`)."""
        tpg = layout.tokens_per_group
        starts = torch.tensor([self.start[p] for p in layout.group_pairs], dtype=torch.long)
        return starts[video_token_index // tpg] + video_token_index % tpg

    def add(self, other: FeatureBank) -> None:
        """Append another bank's pairs (pairs already here are kept as they are)."""
        offset = 0 if self.embeds is None else self.embeds.shape[0]
        for pair, row in other.start.items():
            self.start.setdefault(pair, offset + row)
        if other.embeds is None:
            return
        if self.embeds is None:
            self.embeds, self.deepstack = other.embeds, list(other.deepstack)
        else:
            self.embeds = torch.cat([self.embeds, other.embeds])
            self.deepstack = [torch.cat([a, b]) for a, b in zip(self.deepstack, other.deepstack)]


def encode_frame_pairs(
    backend: HFBackend, video: ModelVideo, pairs: set[FramePair], groups_per_clip: int = 16
) -> FeatureBank:
    """Vision features of every distinct frame pair, one encoder pass each.

    Runs of consecutive full pairs (s, s+1), (s+2, s+3), ... are encoded as clips of up to
    `groups_per_clip` groups; a padded pair (s, s) as a one-frame clip, which the processor pads exactly as
    it pads a prefix's last frame.
    """
    return encode_frame_pairs_many(backend, [(video, pairs)], groups_per_clip)[0]


def _runs(pairs: set[FramePair], tp: int, groups_per_clip: int) -> list[list[FramePair]]:
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
    return runs


def encode_frame_pairs_many(
    backend: HFBackend, wanted: list[tuple[ModelVideo, set[FramePair]]], groups_per_clip: int = 16
) -> list[FeatureBank]:
    """`encode_frame_pairs` for several videos in one processor call and one vision-encoder call (the
    encoder attends within a temporal group only, so batching clips changes no feature); a bank per video."""
    tp = backend.temporal_patch
    runs = [_runs(pairs, tp, groups_per_clip) for _, pairs in wanted]
    clips = [video.frames[run[0][0] : run[-1][1] + 1] for (video, _), rs in zip(wanted, runs) for run in rs]
    if not clips:
        return [FeatureBank() for _ in wanted]
    inputs = backend.processor.video_processor(
        videos=clips, return_tensors="pt", **backend.processor_kwargs()
    )
    pixels = inputs["pixel_values_videos"].to(backend.device, backend.dtype)
    grid = inputs["video_grid_thw"].to(backend.device)
    per_clip = iter(backend.family.encode(backend.model, pixels, grid))
    banks = []
    for rs in runs:
        start: dict[FramePair, int] = {}
        embeds, deep, row = [], [], 0
        for run in rs:
            groups = next(per_clip)
            if len(run) != len(groups):
                raise RuntimeError(f"the encoder returned {len(groups)} groups for frame pairs {run}")
            for pair, feat in zip(run, groups):
                start[pair] = row
                row += feat.embeds.shape[0]
                embeds.append(feat.embeds)
                deep.append(feat.deepstack)
        if not embeds:
            banks.append(FeatureBank())
            continue
        deepstack = [torch.cat([d[i] for d in deep]) for i in range(len(deep[0]))] if deep[0] else []
        banks.append(FeatureBank(torch.cat(embeds), deepstack, start))
    return banks


@dataclass
class Piece:
    """A run of tokens to embed: ids, positions (3, n), and the bank rows of its video tokens, in order."""

    ids: torch.Tensor
    positions: torch.Tensor
    rows: torch.Tensor

    @classmethod
    def empty(cls) -> Piece:
        return cls(
            torch.zeros(0, dtype=torch.long),
            torch.zeros(3, 0, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
        )

    @classmethod
    def of_layout(cls, lay: Layout, a: int, b: int, bank: FeatureBank) -> Piece:
        lo, hi = torch.searchsorted(lay.video_positions, torch.tensor([a, b])).tolist()
        return cls(lay.input_ids[a:b], lay.position_ids[:, a:b], bank.rows(lay, torch.arange(lo, hi)))


@functools.cache
def _cache_keyword(module_type: type) -> str:
    params = inspect.signature(module_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_arg(module: torch.nn.Module, cache) -> dict:
    """`{keyword: cache}` for `module`'s forward: transformers 5.24 renamed `past_key_values=` to `cache=`
    (the old name warns, and goes in 5.40); the package admits releases before and after."""
    return {_cache_keyword(type(module)): cache}


def _embed(backend: HFBackend, pieces: list[Piece], bank: FeatureBank):
    """Input embeddings, positions and vision kwargs for the concatenation of `pieces`."""
    model = backend.model
    ids = torch.cat([p.ids for p in pieces])
    pos = torch.cat([p.positions for p in pieces], dim=1).to(backend.device)
    rows = torch.cat([p.rows for p in pieces]).to(backend.device)
    visual_mask = (ids == model.config.video_token_id).to(backend.device)
    embeds = model.get_input_embeddings()(ids.to(backend.device))
    if not len(rows):
        return embeds[None], pos[:, None], {}
    embeds[visual_mask] = bank.embeds[rows].to(embeds.dtype)
    deepstack = [d[rows].to(embeds.dtype) for d in bank.deepstack]
    return embeds[None], pos[:, None], backend.family.language_model_kwargs(visual_mask[None], deepstack)


def suffix_mask(
    shared: list[int | tuple[int, int]], lengths: list[int], cache_len: int, dtype: torch.dtype, device
) -> torch.Tensor:
    """Additive 4-D mask (1, 1, S, cache_len + S): suffix i sees its cache range and itself, causally.

    `shared[i]` is the cache range suffix i sees: `(start, end)`, or `end` for `(0, end)` (several videos'
    caches can stand side by side in one cache, each suffix seeing only its own).
    """
    total = sum(lengths)
    allowed = torch.zeros(total, cache_len + total, dtype=torch.bool, device=device)
    start = 0
    for s, n in zip(shared, lengths):
        lo, hi = s if isinstance(s, tuple) else (0, s)
        allowed[start : start + n, lo:hi] = True
        allowed[start : start + n, cache_len + start : cache_len + start + n] = torch.ones(
            n, n, dtype=torch.bool, device=device
        ).tril()
        start += n
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


@dataclass
class TextTokens:
    """A request text's token ids and the character range of each token."""

    ids: torch.Tensor
    offsets: list[tuple[int, int]]

    @classmethod
    def of(cls, tokenizer, text: str) -> TextTokens:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return cls(
            torch.tensor(enc["input_ids"], dtype=torch.long), [tuple(o) for o in enc["offset_mapping"]]
        )

    def span_tokens(self, span: tuple[int, int], text: str) -> tuple[int, int]:
        """Token index range [j0, j1) that covers the character span exactly; error if it cuts a token."""
        starts = [a for a, _ in self.offsets]
        ends = [b for _, b in self.offsets]
        if span[0] not in starts or span[1] not in ends:
            raise ValueError(
                f"span {span} of {text!r} does not fall on token boundaries; move it to whole tokens "
                "(e.g. start it at the space before a word)"
            )
        return starts.index(span[0]), ends.index(span[1]) + 1


class VideoCache:
    """One video (and the text before it) held by the transformers backend; answers many requests.

    Args:
        backend: the loaded `HFBackend`.
        video: the frames the model sees (sampled and resized).
        before: text before the video (e.g. the user-turn header of the `authors` prompt style).
        batch_size: requests per packed forward (a memory knob; results do not depend on it).
    """

    #: `score_on_caches` may stand this cache beside others in one packed forward
    side_by_side = True

    def __init__(self, backend: HFBackend, video: ModelVideo, before: str, *, batch_size: int = 8) -> None:
        if backend.family.fast_path is None or (
            type(self) is VideoCache and backend.family.fast_path != "packed"
        ):
            raise ValueError(
                f"model {backend.model_id} ({backend.family.name}) has no packed video cache: "
                f"{backend.family.no_fast_path_reason or 'its fast path is ' + str(backend.family.fast_path)}; "
                "use backend.video_cache(...), which picks the family's exact path"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backend, self.before, self.batch_size = backend, before, batch_size
        self.video = dataclasses.replace(video)  # its own: `extend` replaces it, never the caller's
        self.bank = FeatureBank()
        self.lm_tokens = 0  # language-model tokens run so far (accounting for tests and benchmarks)
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._kv_layout: Layout | None = None
        self._kv_len = 0
        self._layouts: dict[int, Layout] = {}
        self._texts: dict[str, TextTokens] = {}
        self._checked: set[str] = set()
        self._sync()

    # ---- layouts and shared state -------------------------------------------------------------------
    @property
    def kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the keys and values of the whole video's shared part (what requests are packed on)."""
        return self._kv

    @property
    def kv_length(self) -> int:
        """Tokens the KV cache holds."""
        return self._kv_len

    def layout(self, k: int) -> Layout:
        if not 1 <= k <= self.video.num_frames:
            raise ValueError(f"prefix {k} is outside the video's 1..{self.video.num_frames} frames")
        if k not in self._layouts:
            self._layouts[k] = build_layout(self.backend, self.video, k, self.before)
        return self._layouts[k]

    def shared(self, k: int) -> int:
        return shared_length(self.layout(k), self.layout(self.video.num_frames))

    def _encode_missing(self, layouts: list[Layout]) -> None:
        missing = {p for lay in layouts for p in lay.group_pairs} - set(self.bank.start)
        self.bank.add(encode_frame_pairs(self.backend, self.video, missing))

    def _sync(self) -> None:
        """Make the KV cache cover the whole video's shared part, reusing what still agrees."""
        from transformers import DynamicCache

        full = self.layout(self.video.num_frames)
        self._encode_missing([full])
        keep, target = self._kept(full)
        cache = DynamicCache(config=self.backend.model.config)
        if keep:
            cache = DynamicCache(ddp_cache_data=[(k[:, :, :keep], v[:, :, :keep]) for k, v in self._kv])
        if target > keep:
            embeds, pos, kwargs = _embed(
                self.backend, [Piece.of_layout(full, keep, target, self.bank)], self.bank
            )
            lm = self.backend.model.model.language_model
            lm(inputs_embeds=embeds, position_ids=pos, use_cache=True, **cache_arg(lm, cache), **kwargs)
            self.lm_tokens += target - keep
        self._kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._kv_layout, self._kv_len = full, target

    def _kept(self, full: Layout) -> tuple[int, int]:
        """(tokens of the KV cache that stay valid for the video laid out as `full`, tokens it must hold)."""
        target = int(full.video_positions[-1]) + 1
        if self._kv_layout is None:
            return 0, target
        return min(shared_length(self._kv_layout, full), self._kv_len, target), target

    def extend(self, frames: np.ndarray, source_indices: np.ndarray | list[int]) -> None:
        """Append frames (same size as the video's, source indices after its last one) and extend the cache.

        Only frame pairs not seen before are encoded; the KV cache is kept up to where the old and the new
        sequence agree (a group completed by the new frames, or times that moved, start the new part).
        """
        if not len(frames):
            return
        self.video = appended(self.video, frames, source_indices)
        self._layouts.clear()  # frame times (hence positions) of earlier prefixes can depend on the whole video
        self._sync()

    # ---- requests ---------------------------------------------------------------------------------
    def text_tokens(self, text: str) -> TextTokens:
        if text not in self._texts:
            self._texts[text] = TextTokens.of(self.backend.processor.tokenizer, text)
        return self._texts[text]

    def _check_text(self, text: str, lay: Layout) -> None:
        """Tokens and positions of `text` after the video equal those of the whole sequence (once per text)."""
        if text in self._checked:
            return
        backend = self.backend
        head, grid = video_expansion(backend, self.video, lay.num_frames, self.before)
        ids = torch.tensor(backend.processor.tokenizer(head + text)["input_ids"], dtype=torch.long)
        tokens = self.text_tokens(text)
        meta = backend.prefix_metadata(self.video, lay.num_frames)
        pos = backend.family.position_ids(
            backend.model, ids, grid, backend.family.rope_extra_kwargs(backend.processor, meta)
        )
        composed_ids = torch.cat([lay.input_ids, tokens.ids])
        n = len(tokens.ids)
        composed_pos = torch.cat(
            [lay.position_ids, (lay.next_position + torch.arange(n)).expand(3, n)], dim=1
        )
        if not (torch.equal(ids, composed_ids) and torch.equal(pos, composed_pos)):
            raise RuntimeError(
                f"the tokens or positions of {text[:60]!r} after the video depend on what precedes them; "
                "start the text with a space or a special token, or use path='reference'"
            )
        self._checked.add(text)

    def score(self, requests: list[Request]) -> list[Answer]:
        """Answer every request (see `Request`); packed `batch_size` at a time on top of the cache."""
        if not requests:
            return []
        items = self.items(requests)
        answers: list[Answer] = []
        for i in range(0, len(requests), self.batch_size):
            chunk = slice(i, i + self.batch_size)
            got, tokens = score_on_cache(
                self.backend, self._kv, requests[chunk], items[chunk], self.text_tokens, self.bank
            )
            answers += got
            self.lm_tokens += tokens
        return answers

    def items(self, requests: list[Request]) -> list[tuple[Piece, int, int]]:
        """Per request: the part of its prefix the whole video does not share (a re-encoded last group, the
        video's closing tokens), how much of the cache it sees, and the position its text starts at."""
        layouts = {k: self.layout(k) for k in sorted({r.prefix for r in requests})}
        self._encode_missing(list(layouts.values()))
        full = self.layout(self.video.num_frames)
        shared = {k: shared_length(lay, full) for k, lay in layouts.items()}
        items = []
        for r in requests:
            lay = layouts[r.prefix]
            self._check_text(r.text, lay)
            self.backend.check_context(len(lay) + len(self.text_tokens(r.text).ids))
            items.append(
                (
                    Piece.of_layout(lay, shared[r.prefix], len(lay), self.bank),
                    shared[r.prefix],
                    lay.next_position,
                )
            )
        return items


def score_on_cache(
    backend: HFBackend,
    kv: list[tuple[torch.Tensor, torch.Tensor]],
    requests: list[Request],
    items: list[tuple[Piece, int | tuple[int, int], int]],
    text_tokens,
    bank: FeatureBank | None = None,
) -> tuple[list[Answer], int]:
    """Answer requests in one packed forward on top of a KV cache; returns (answers, tokens run).

    Each request i comes with `items[i]` = (a piece of its own to run before its text — may be empty —,
    the cached tokens it sees: a count from the start or a (start, end) range, the position its text
    starts at). `text_tokens(text)` tokenises a request's text (a `TextTokens`).
    """
    from transformers import DynamicCache

    pieces, visible, reads = [], [], []  # reads: (request index, row in the packed sequence, target id or -1)
    offset = 0
    for i, (r, (own, sees, text_position)) in enumerate(zip(requests, items)):
        text = text_tokens(r.text)
        n = len(text.ids)
        text_pos = (text_position + torch.arange(n)).expand(3, n)
        pieces.append(
            Piece(torch.cat([own.ids, text.ids]), torch.cat([own.positions, text_pos], dim=1), own.rows)
        )
        visible.append(sees)
        length = len(own.ids) + n
        text_start = offset + len(own.ids)
        if r.span is not None:
            j0, j1 = text.span_tokens(r.span, r.text)
            if j0 == 0 and len(own.ids) == 0:  # its distribution is the cached last token's: not run here
                raise ValueError(
                    "a span at a request text's first token needs the last cached token in the request's own "
                    "piece (run again on top of the cache without it)"
                )
            reads += [(i, text_start + j - 1, int(text.ids[j])) for j in range(j0, j1)]
        if r.tokens:
            reads.append((i, offset + length - 1, -1))
        offset += length
    lengths = [len(p.ids) for p in pieces]
    embeds, pos, kwargs = _embed(backend, pieces, bank or FeatureBank())
    cache_len = max(v[1] if isinstance(v, tuple) else v for v in visible)
    mask = suffix_mask(visible, lengths, cache_len, embeds.dtype, backend.device)
    cache = DynamicCache(ddp_cache_data=[(k[:, :, :cache_len], v[:, :, :cache_len]) for k, v in kv])
    lm = backend.model.model.language_model
    hidden = lm(
        inputs_embeds=embeds,
        position_ids=pos,
        attention_mask=mask,
        use_cache=True,
        **cache_arg(lm, cache),
        **kwargs,
    ).last_hidden_state[0]
    rows = torch.tensor([row for _, row, _ in reads], device=hidden.device)
    log_probs = torch.log_softmax(backend.model.lm_head(hidden[rows]).float(), dim=-1)
    return collect_answers(requests, reads, log_probs), sum(lengths)


def collect_answers(
    requests: list[Request], reads: list[tuple[int, int, int]], log_probs: torch.Tensor
) -> list[Answer]:
    """Group the rows read for each request into its `Answer`.

    `reads[i]` = (request index, row, target): row i of `log_probs` is a span token's distribution when
    target >= 0 (its log-prob at `target` is kept), else the next-token distribution after the request.
    """
    log_probs = log_probs.detach()  # answers are numbers; autograd stays with the caller of the forward
    spans: list[list[tuple[float, int]]] = [[] for _ in requests]
    nexts = [np.zeros(0) for _ in requests]
    for row, (i, _, target) in enumerate(reads):
        if target >= 0:
            spans[i].append((float(log_probs[row, target]), target))
        else:
            nexts[i] = log_probs[row, list(requests[i].tokens)].detach().cpu().numpy().astype(np.float64)
    return [
        Answer(
            nexts[i], np.array([lp for lp, _ in spans[i]], dtype=np.float64), tuple(t for _, t in spans[i])
        )
        for i in range(len(requests))
    ]

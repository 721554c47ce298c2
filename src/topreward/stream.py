"""Online scoring: a session receives an episode's frames as they come and scores the newest prefix.

`session = scorer.stream(instruction, source_fps=30, every=15)` for any method, then per step
`session.push(frame_or_frames)` and, whenever a reward is wanted, `session.score()`; `score_many(sessions)`
scores several sessions (a vector env's) in shared forwards. A session talks to its method through two
declared interfaces, nothing else: `OnlineMethod` (every method) and `CacheMethod` (methods on the video
cache: `topreward`, `ensemble`, `instruction`, i.e. `topreward.scorers.base.CacheScorer`). Cache methods
grow one cache (step 2 below); the LRM heads look at single frames, so their session only keeps the frames
and each query asks the head about the newest one (`compute_online`: `lrm-progress` and `lrm-completion` for
the newest frame, `lrm-contrast` the newest frame against the previous query's, as LRM's online r_cont).

What the session does:
  1. **Frame choice.** It keeps every `every`-th frame it is pushed (pushed frame i is kept when
     i % every == 0, so the first frame always is): a uniform sampling at `source_fps / every` frames per
     second of video time. Offline scoring picks its frames from the whole episode (`max_frames` spread
     over it), which a stream cannot know in advance, so choose `every` for the rate you want (e.g. 2 fps
     from a 30 fps camera: `every=15`). Each kept frame is resized once, to the size the scorer's sampling
     options give the first frame (one resolution per episode, as offline).
  2. **Work per frame.** Kept frames go into one video cache (`VideoCache.extend`): each completed
     temporal group of frames is encoded once and the KV cache grows by the new frames' tokens only; a
     query runs just the method's prompt suffix(es) on top. So a query's cost does not grow with the
     episode's length the way re-scoring the whole prefix does.
  3. **Value.** `score()` returns the method's raw value for the prefix of all kept frames — the same
     number (tests: <= 1e-4 in float32) as offline scoring of a video made of the same kept frames at that
     prefix length.
  4. **Online progress.** Running min-max (Eq.2) over the values scored so far in this session: 0 at the
     first query, 1 at a new maximum. It is what Eq.2 gives with what has been seen; it can move when a new
     extreme comes, so for RL prefer `value` differences or the raw value (the gym wrapper's choice).
  5. **Memory.** At most `max_frames` kept frames. When a push would exceed it, the session keeps every
     second frame it holds, doubles `every` (the video still covers the whole episode, as offline
     sampling's stride grows) and rebuilds its cache once; `StreamScore.every` says the current stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from topreward.backends.base import ModelVideo, Request, VideoCacheLike, appended, scoring_mode
from topreward.episode import validate_frames
from topreward.rewards import minmax_progress
from topreward.sampling import SamplingConfig, resize_frames
from topreward.task_text import check_task_text, clean_instruction, reserved_tokens


class MethodValues(Protocol):
    """A method's answer at its evaluation points (`topreward.scorers.base.MethodOutput`)."""

    values: np.ndarray
    signals: dict[str, Any]
    progress: np.ndarray | None  # the method's own progress (an absolute head), else None


class OnlineMethod(Protocol):
    """What a session asks of every scoring method (`topreward.scorers.base.Scorer`)."""

    sampling: SamplingConfig  # the frame size of the first kept frame
    backend: Any  # its `patch_factor` and `reserved_tokens`
    config: Any  # its `eps` (running min-max)
    backend_config: Any  # its `batch_size` (requests per packed forward in `score_many`)

    def compute_online(
        self, video: ModelVideo, instruction: str, point: int, previous: int | None
    ) -> MethodValues: ...

    def frame_size_for(self, height: int, width: int) -> tuple[int, int]: ...


@runtime_checkable
class CacheMethod(Protocol):
    """A method whose queries are requests on one video cache (`topreward.scorers.base.CacheScorer`)."""

    def text_before_video(self) -> str: ...

    def video_cache(self, video: ModelVideo, before: str) -> VideoCacheLike: ...

    def requests_for(self, instructions: list[str], points: list[int]) -> list[Request]: ...

    def outputs_from(
        self, answers: list, instructions: list[str], points: list[int]
    ) -> list[MethodValues]: ...


@dataclass
class StreamScore:
    """The session's answer for its newest prefix.

    Attributes:
        value: the method's raw value (TOPReward: log P(" True")) after all kept frames.
        progress: in [0, 1]: the method's own progress when it has one (an absolute head such as
            Robometer's), else the running min-max of the values scored so far in this session.
        num_frames: frames the session holds (the prefix length that was scored).
        end_frame: index, among all frames pushed, of the newest kept frame.
        every: the current stride (pushed frames per kept frame).
        signals: the method's per-point signals at this prefix (e.g. `log_p_true`, `log_p_false`).
    """

    value: float
    progress: float
    num_frames: int
    end_frame: int
    every: int
    signals: dict[str, Any] = field(default_factory=dict)


class StreamSession:
    """One episode scored online; see the module docstring. Built by `Scorer.stream`."""

    def __init__(
        self,
        scorer: OnlineMethod,
        instruction: str,
        *,
        source_fps: float,
        every: int = 1,
        max_frames: int = 256,
    ) -> None:
        if not (isinstance(source_fps, (int, float)) and math.isfinite(source_fps) and source_fps > 0):
            raise ValueError(
                f"source_fps must be a positive number (the camera's frame rate), got {source_fps!r}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number >= 1 (keep every n-th frame), got {every!r}")
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
            raise ValueError(f"max_frames must be a whole number >= 2, got {max_frames!r}")
        self.scorer = scorer
        self.instruction = check_task_text(clean_instruction(instruction), reserved_tokens(scorer.backend))
        self.source_fps, self.every, self.max_frames = float(source_fps), every, max_frames
        self.pushed = 0  # frames pushed so far (kept or not)
        self.history: list[tuple[int, float]] = []  # (end_frame, value) of every score()
        self.closed = False
        self._cache = None  # a video cache (cache methods) or a plain ModelVideo (the others)
        self._cached = isinstance(scorer, CacheMethod)
        self._queried: int | None = None  # prefix length of the previous query
        self._size: tuple[int, int] | None = None
        self._raw_shape: tuple[int, ...] | None = None

    # ---- frames -------------------------------------------------------------------------------------
    @property
    def video(self) -> ModelVideo | None:
        """The frames the session holds, as the model sees them (None before the first kept frame)."""
        if self._cache is None:
            return None
        return self._cache.video if self._cached else self._cache

    def push(self, frames: Any) -> int:
        """Append one frame (H, W, 3) or several (n, H, W, 3), uint8 RGB; returns how many were kept."""
        with scoring_mode():
            return self._push(frames)

    def _push(self, frames: Any) -> int:
        arr, kept, idx = self._prepare(frames)
        if kept is not None:
            self._place(kept, idx)
        return self._commit(arr, kept)

    def _prepare(self, frames: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Check pushed frames; (all of them, the kept ones resized or None, their source indices)."""
        if self.closed:
            raise ValueError("this stream session is closed; start a new one with scorer.stream(...)")
        arr = np.asarray(frames)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = arr[None]
        arr = validate_frames(arr, what="pushed frames")
        if self._raw_shape is not None and arr.shape[1:] != self._raw_shape:
            raise ValueError(
                f"pushed frames have shape {arr.shape[1:]}, but this session's frames are {self._raw_shape}; "
                "push frames of one camera at one resolution"
            )
        positions = self.pushed + np.arange(len(arr))
        keep = positions % self.every == 0
        if not keep.any():
            return arr, None, None
        return arr, self._resize(arr[keep]), positions[keep].astype(np.int64)

    def _appends(self, kept: np.ndarray) -> bool:
        """Whether kept frames just grow this session's shareable cache (no first build, no thinning)."""
        return self.shared_cache is not None and self.video.num_frames + len(kept) <= self.max_frames

    def _place(self, kept: np.ndarray, idx: np.ndarray) -> None:
        held = 0 if self._cache is None else self.video.num_frames
        if held + len(kept) > self.max_frames:
            self._thin(kept, idx)
        elif self._cache is None:
            self._rebuild(kept, idx)
        elif self._cached:
            self._cache.extend(kept, idx)
        else:
            self._cache = appended(self._cache, kept, idx)

    def _commit(self, arr: np.ndarray, kept: np.ndarray | None) -> int:
        self._raw_shape = arr.shape[1:]
        self.pushed += len(arr)  # only once the frames are in: a failed push changes nothing
        return 0 if kept is None else len(kept)

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        if self._size is None:
            self._size = self.scorer.frame_size_for(frames.shape[1], frames.shape[2])
        return resize_frames(frames, self._size)

    def _rebuild(self, frames: np.ndarray, indices: np.ndarray) -> None:
        video = ModelVideo(frames, indices, self.source_fps, self.source_fps / self.every)
        self._cache = (
            self.scorer.video_cache(video, self.scorer.text_before_video()) if self._cached else video
        )
        self._queried = None  # the frames moved: the previous query's prefix no longer names a frame

    def _thin(self, new: np.ndarray, idx: np.ndarray) -> None:
        """Over `max_frames`: keep every second frame (the stride doubles, again if needed); one rebuild."""
        frames, indices = new, idx
        if self._cache is not None:
            frames = np.concatenate([self.video.frames, new])
            indices = np.concatenate([self.video.source_indices, idx])
        keep = indices % self.every == 0
        while keep.sum() > self.max_frames:
            self.every *= 2
            keep = indices % self.every == 0
        self._rebuild(frames[keep], indices[keep])

    # ---- scores -------------------------------------------------------------------------------------
    def ready(self) -> int:
        """The prefix length a query scores now (every kept frame); error if closed or still empty."""
        if self.closed:
            raise ValueError("this stream session is closed; start a new one with scorer.stream(...)")
        if self._cache is None:
            raise ValueError("no frame yet: push at least one frame before score()")
        return self.video.num_frames

    @property
    def shared_cache(self) -> VideoCacheLike | None:
        """The session's video cache when its requests can share packed forwards with other sessions'
        (`score_many`), else None (a method without a cache, the reference path, a recurrent model)."""
        if self._cached and self._cache is not None and self._cache.side_by_side:
            return self._cache
        return None

    def requests(self) -> list[Request]:
        """The requests of a query now, on `shared_cache` (a cache method's session)."""
        return self.scorer.requests_for([self.instruction], [self.ready()])

    def answer(self, answers: list) -> StreamScore:
        """Record the answers to `requests()` as this session's newest score."""
        return self._record(self.scorer.outputs_from(answers, [self.instruction], [self.video.num_frames])[0])

    def score(self) -> StreamScore:
        """The method's value for the prefix of every kept frame, and the running progress."""
        n = self.ready()
        with scoring_mode():
            if self._cached:
                return self.answer(self._cache.score(self.requests()))
            return self._record(self.scorer.compute_online(self._cache, self.instruction, n, self._queried))

    def _record(self, out: MethodValues) -> StreamScore:
        self._queried = self.video.num_frames
        value = float(np.asarray(out.values)[-1])
        end = int(self.video.source_indices[-1])
        self.history.append((end, value))
        values = np.array([v for _, v in self.history])
        if out.progress is not None:
            progress = float(np.asarray(out.progress)[-1])
        else:
            progress = float(minmax_progress(values, self.scorer.config.eps)[-1])
        signals = {
            k: float(np.asarray(v)[-1])
            for k, v in out.signals.items()
            if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) == 1
        }
        return StreamScore(value, progress, self.video.num_frames, end, self.every, signals)

    def close(self) -> None:
        """Free the cache (vision features and KV); the session cannot be used afterwards."""
        self._cache = None
        self.closed = True


def push_many(sessions: list[StreamSession], frames: list[Any]) -> list[int | Exception]:
    """Push frames to several sessions in one round: per session, the frames kept (as `push` returns) or the
    error its push raised (that push changed nothing; the others go on).

    Frames that just grow a shareable cache (`shared_cache`) go through the vision encoder together and grow
    every cache in one packed language-model forward (`topreward.backends.video_cache.extend_caches`); the
    rest (a first frame, a thinning, a method without a cache) are pushed one by one. A session named twice
    gets its pushes in order. Equal to `[s.push(f) for s, f in zip(sessions, frames)]` (tests: 1e-4).
    """
    from topreward.backends.side_by_side import extend_caches

    if len(sessions) != len(frames):
        raise ValueError(f"{len(sessions)} sessions but {len(frames)} frame batches; give one per session")
    results: list[int | Exception | None] = [None] * len(sessions)
    todo = list(range(len(sessions)))
    with scoring_mode():
        while todo:  # waves: one push per session each, in the order given
            wave, later, seen = [], [], set()
            for i in todo:
                (later if id(sessions[i]) in seen else wave).append(i)
                seen.add(id(sessions[i]))
            batch = []
            for i in wave:
                session = sessions[i]
                try:
                    arr, kept, idx = session._prepare(frames[i])
                    if kept is not None and session._appends(kept):
                        batch.append((i, arr, kept, idx))
                        continue
                    if kept is not None:
                        session._place(kept, idx)
                    results[i] = session._commit(arr, kept)
                except Exception as e:  # this push failed and changed nothing; the others go on
                    results[i] = e
            if batch:
                try:
                    extend_caches([(sessions[i]._cache, kept, idx) for i, _, kept, idx in batch])
                    done = [(i, arr, kept) for i, arr, kept, _ in batch]
                except Exception:  # nothing changed: one by one, so one bad push fails alone
                    done = []
                    for i, arr, kept, idx in batch:
                        try:
                            sessions[i]._cache.extend(kept, idx)
                            done.append((i, arr, kept))
                        except Exception as e:
                            results[i] = e
                for i, arr, kept in done:
                    results[i] = sessions[i]._commit(arr, kept)
            todo = later
    return results  # type: ignore[return-value]


def score_many(sessions: list[StreamSession]) -> list[StreamScore]:
    """Score several sessions' newest prefixes together: their requests share packed forwards.

    For the sub-environments of a vector env, say: one forward per `batch_size` requests instead of one per
    session, each request seeing only its own session's cache (`topreward.backends.side_by_side.score_on_caches`). Equal to
    `[s.score() for s in sessions]`. Sessions without a shareable cache are scored one by one.
    """
    from topreward.backends.side_by_side import score_on_caches

    if not sessions:
        return []
    for s in sessions:
        s.ready()
    shared = [i for i, s in enumerate(sessions) if s.shared_cache is not None]
    results = {i: s.score() for i, s in enumerate(sessions) if i not in shared}
    if shared:
        jobs = [(sessions[i].shared_cache, sessions[i].requests()) for i in shared]
        batch = max(sessions[i].scorer.backend_config.batch_size for i in shared)
        with scoring_mode():
            answered = score_on_caches(jobs, batch_size=batch)
        for i, answers in zip(shared, answered):
            results[i] = sessions[i].answer(answers)
    return [results[i] for i in range(len(sessions))]

"""The service behind `topreward serve`: sessions, limits and the one worker thread that runs the model.

`RewardService` holds the sessions and a bounded job queue; its worker takes every queued job at once (a
round): the round's pushes together (`push_many`), one-shot videos, then the session queries together
(`score_many`). `ServeLimits` are the limits a client meets (the HTTP layer, `topreward.serve.server`, and
the Ray replicas, `topreward.serve.ray`, both answer them); `HTTPError` is an answer with a status, a message
and headers, picklable so it crosses Ray actors. The endpoints and status codes are listed in
`topreward.serve.server`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class ServeLimits:
    """What one client may ask of the server, and how long anyone waits (seconds)."""

    max_request_bytes: int = 64 * 2**20
    max_side: int = 2048
    max_session_frames: int = 4096
    max_sessions: int = 64
    idle_s: float = 600.0
    token: str | None = None
    request_timeout: float = 60.0
    max_queue: int = 256
    read_timeout: float = 30.0
    max_kept_frames: int = 256

    def __post_init__(self) -> None:
        counts = ("max_request_bytes", "max_side", "max_session_frames", "max_sessions", "max_queue")
        for name, least in [*((n, 1) for n in counts), ("max_kept_frames", 2)]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
        for name in ("idle_s", "request_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty; give a secret or leave it out (no authentication)")


class HTTPError(Exception):
    """An answer with a status code, a message and headers for the client (picklable: it crosses Ray
    actors)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.status, self.message, self.headers = status, message, dict(headers or {})

    def __str__(self) -> str:
        return self.message


@dataclass
class _Session:
    stream: Any
    frames: int = 0  # frames pushed (the `max_session_frames` count)
    seq: int = -1  # the last applied `X-Push-Seq`
    last_used: float = field(default_factory=time.monotonic)

    def held(self) -> int:
        return self.stream.video.num_frames if self.stream.video is not None else 0


class Job(NamedTuple):
    """One piece of model work: `push` (args: `_Session`, frames, seq or None), `score` (a stream session)
    or `video` (frames, instruction, fps). Its answer, or error, goes to `future`."""

    kind: str
    args: tuple
    future: Future
    deadline: float = math.inf  # time.monotonic() after which nobody waits for the answer


class RewardService:
    """Sessions and the model worker behind the HTTP layer (usable without HTTP, e.g. in a Ray actor)."""

    def __init__(self, scorer, limits: ServeLimits | None = None, *, batch_pushes: bool = True) -> None:
        self.scorer, self.limits = scorer, limits or ServeLimits()
        self.batch_pushes = batch_pushes  # False: each push in a forward of its own (the reference path)
        self.sessions: dict[str, _Session] = {}
        self.lock = threading.Lock()
        self.jobs: queue.Queue = queue.Queue(maxsize=self.limits.max_queue)
        self.batches: list[int] = []  # how many session queries each batched forward served (for benchmarks)
        self.rounds = 0
        self.last_round_s = 0.0
        self._round_started: float | None = None
        self._deferred: list[Job] = []  # a session's second push of a round waits for the next round
        self._worker = threading.Thread(target=self._work, name="topreward-model", daemon=True)
        self._stop = threading.Event()
        self._worker.start()

    # ---- the model worker -----------------------------------------------------------------------
    def submit(self, kind: str, *args, deadline: float = math.inf) -> Future:
        """Queue a job for the worker; 429 with `Retry-After` when `max_queue` jobs already wait."""
        future: Future = Future()
        try:
            self.jobs.put_nowait(Job(kind, args, future, deadline))
        except queue.Full:
            raise HTTPError(
                429,
                f"{self.limits.max_queue} jobs are waiting for the model (the --max-queue limit); "
                "retry after Retry-After seconds",
                {"Retry-After": str(self._retry_after())},
            ) from None
        return future

    def _run(self, kind: str, *args) -> Any:
        """Submit a job and wait for it until the request's deadline (`request_timeout`), then 503."""
        deadline = time.monotonic() + self.limits.request_timeout
        future = self.submit(kind, *args, deadline=deadline)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if future.done():  # it finished just now, or the job itself raised a TimeoutError
                return future.result()
            future.cancel()  # not started yet: the worker skips it; started: it finishes unanswered
            raise self._late() from None

    def _late(self) -> HTTPError:
        return HTTPError(
            503,
            f"the request waited {self.limits.request_timeout:g} s for the model (request_timeout; "
            "`topreward serve --request-timeout`) and was dropped; the server is busy, retry later",
            {"Retry-After": str(self._retry_after())},
        )

    def _retry_after(self) -> int:
        """Whole seconds a refused client should wait: about one round (the queue drains once a round),
        the running round's age if it is longer."""
        started = self._round_started
        running = time.monotonic() - started if started is not None else 0.0
        return max(1, math.ceil(max(self.last_round_s, running)))

    def _work(self) -> None:
        while not self._stop.is_set():
            jobs, self._deferred = self._deferred, []  # already running: they go first, in their order
            fresh: list[Job] = []
            if not jobs:
                try:
                    fresh.append(Job(*self.jobs.get(timeout=0.1)))
                except queue.Empty:
                    continue
            while True:  # everything queued meanwhile goes into this round
                try:
                    fresh.append(Job(*self.jobs.get_nowait()))
                except queue.Empty:
                    break
            # a job whose request timed out before its turn was cancelled: nobody waits for its answer
            jobs += [j for j in fresh if j.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            self._round_started = started = time.monotonic()
            try:
                self._round(jobs)
            except Exception as e:  # a bug in a round must not stop the worker: its requests get a 500
                logger.exception("a worker round failed")
                self._deferred = []
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
            self.last_round_s, self._round_started = time.monotonic() - started, None
            self.rounds += 1

    def _round(self, jobs: list[Job]) -> None:
        """One round: pushes, then one-shot videos, then the queries (together), each skipped when its
        deadline passed before its turn."""
        for j in jobs:
            if j.kind not in ("push", "score", "video"):
                j.future.set_exception(ValueError(f"unknown job {j.kind!r}"))
        self._push_round(self._due([j for j in jobs if j.kind == "push"]))
        for job in [j for j in jobs if j.kind == "video"]:
            if self._due([job]):
                _settle(job.future, lambda args=job.args: self._score_video(*args))
        self._score_round(self._due([j for j in jobs if j.kind == "score"]))

    def _due(self, jobs: list[Job]) -> list[Job]:
        """The jobs still within their deadline; the others get the 503 (their requests answered it)."""
        now = time.monotonic()
        for j in jobs:
            if j.deadline < now:
                j.future.set_exception(self._late())
        return [j for j in jobs if j.deadline >= now]

    def _push_round(self, jobs: list[Job]) -> None:
        """Every push of one round: the admitted ones (`_admit_pushes`) go to the model together
        (`topreward.stream.push_many`: one vision call, one packed forward for all sessions), each answered by
        `_pushed` or with its own error (a failed push changes nothing, and fails no other push)."""
        from topreward.stream import push_many

        admitted = self._admit_pushes(jobs)
        if not admitted:
            return
        streams, frames = [j.args[0].stream for j in admitted], [j.args[1] for j in admitted]
        if self.batch_pushes:
            results = push_many(streams, frames)
        else:
            results = [_attempt(stream.push, f) for stream, f in zip(streams, frames)]
        for job, result in zip(admitted, results):
            s, pushed, seq = job.args
            if isinstance(result, Exception):
                job.future.set_exception(result)
            else:
                _settle(job.future, lambda s=s, f=pushed, seq=seq, n=result: self._pushed(s, f, seq, n))

    def _admit_pushes(self, jobs: list[Job]) -> list[Job]:
        """The pushes that go to the model this round: at most one per session (a later one waits for the
        next round, so a session's pushes apply in order). The others are answered here: a repeated
        sequence number as a duplicate, a skipped one with 409, one over `max_session_frames` with 413.
        Sequence numbers are checked on the worker, at their turn, so a retried push that meets its first
        attempt (still queued or running when the client gave up) is applied once."""
        todo: list[Job] = []
        seen: set[int] = set()
        for job in jobs:
            s, frames, seq = job.args
            if id(s) in seen:
                self._deferred.append(job)
                continue
            seen.add(id(s))
            if seq is not None and seq <= s.seq:
                job.future.set_result({"kept": 0, "frames": s.held(), "duplicate": True})
            elif seq is not None and seq != s.seq + 1:
                job.future.set_exception(
                    HTTPError(
                        409,
                        f"push {seq} arrived, but the session has applied pushes up to {s.seq}: the next "
                        f"X-Push-Seq is {s.seq + 1} (a push went missing; resend it or start a new session)",
                        {"X-Push-Expected": str(s.seq + 1)},
                    )
                )
            elif s.frames + len(frames) > self.limits.max_session_frames:
                job.future.set_exception(
                    HTTPError(
                        413,
                        f"a session takes at most {self.limits.max_session_frames} frames; start a new one",
                    )
                )
            else:
                todo.append(job)
        return todo

    def _pushed(self, s: _Session, frames: np.ndarray, seq: int | None, kept: int) -> dict:
        """Record an applied push; its answer."""
        s.frames += len(frames)
        if seq is not None:
            s.seq = seq
        return {"kept": kept, "frames": s.held()}

    def _score_video(self, frames: np.ndarray, instruction: str, fps: float) -> dict:
        return self.scorer.score(frames, instruction, fps=fps).to_dict()

    def _score_round(self, jobs: list[Job]) -> None:
        from topreward.stream import score_many

        if not jobs:
            return
        sessions = [j.args[0] for j in jobs]
        try:
            results = score_many(sessions)
            self.batches.append(len(sessions))
            for job, result in zip(jobs, results):
                job.future.set_result(result)
        except Exception:  # one bad session must not fail the others: score them one by one
            for job, session in zip(jobs, sessions):
                _settle(job.future, session.score)

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)

    # ---- the operations -------------------------------------------------------------------------
    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            for sid in [s for s, v in self.sessions.items() if now - v.last_used > self.limits.idle_s]:
                self.sessions.pop(sid).stream.close()

    def _get(self, sid: str) -> _Session:
        self._expire()
        with self.lock:
            if sid not in self.sessions:
                raise HTTPError(
                    404,
                    f"no session {sid!r} (closed, expired after {self.limits.idle_s:g} s idle, or never made)",
                )
            s = self.sessions[sid]
            s.last_used = time.monotonic()
            return s

    def start(self, instruction: Any, fps: Any, every: Any = 1) -> str:
        self._expire()
        if not isinstance(instruction, str) or not instruction.strip():
            raise HTTPError(400, "instruction must be a non-empty string, e.g. 'put the pen into the cup'")
        if not isinstance(fps, (int, float)) or isinstance(fps, bool):
            raise HTTPError(400, f"fps must be a number (the camera's frame rate), got {fps!r}")
        if not isinstance(every, int) or isinstance(every, bool):
            raise HTTPError(400, f"every must be a whole number, got {every!r}")
        try:
            stream = self.scorer.stream(
                instruction, source_fps=fps, every=every, max_frames=self.limits.max_kept_frames
            )
        except ValueError as e:
            raise HTTPError(400, str(e)) from e
        with self.lock:
            if len(self.sessions) >= self.limits.max_sessions:
                raise HTTPError(429, f"{len(self.sessions)} sessions are open (the limit); close one first")
            sid = uuid.uuid4().hex
            self.sessions[sid] = _Session(stream)
        return sid

    def push(self, sid: str, frames: np.ndarray, seq: int | None = None) -> dict:
        """Append frames to a session; `seq` (the client's `X-Push-Seq`) makes a repeated push a no-op."""
        s = self._get(sid)
        try:
            return self._run("push", s, frames, seq)
        except ValueError as e:
            raise HTTPError(400, str(e)) from e

    def score(self, sid: str) -> dict:
        s = self._get(sid)
        try:
            result = self._run("score", s.stream)
        except ValueError as e:
            raise HTTPError(400, str(e)) from e
        return {
            "value": result.value,
            "progress": result.progress,
            "num_frames": result.num_frames,
            "end_frame": result.end_frame,
            "every": result.every,
            "signals": result.signals,
        }

    def stop(self, sid: str) -> dict:
        self._get(sid)
        with self.lock:
            session = self.sessions.pop(sid, None)
        if session is not None:
            session.stream.close()
        return {"closed": sid}

    def health(self) -> dict:
        self._expire()
        model = self.scorer.backend.describe()
        return {
            "status": "ok",
            "method": self.scorer.name,
            "model": model["id"],
            "sessions": len(self.sessions),
            "queue": self.jobs.qsize() + len(self._deferred),
            "last_round_s": round(self.last_round_s, 6),
            "rounds": self.rounds,
        }

    def score_video(self, frames: np.ndarray, instruction: str, fps: float) -> dict:
        try:
            return self._run("video", frames, instruction, fps)
        except (ValueError, TypeError) as e:
            raise HTTPError(400, str(e)) from e


def _attempt(fn, *args) -> Any:
    """`fn(*args)`, or the exception it raised (as `push_many` answers)."""
    try:
        return fn(*args)
    except Exception as e:
        return e


def _settle(future: Future, fn) -> None:
    try:
        future.set_result(fn())
    except Exception as e:  # handed to the waiting request thread, which answers the client
        future.set_exception(e)

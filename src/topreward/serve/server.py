"""`topreward serve`: a reward server for RL workers — streaming sessions and one-shot scoring over HTTP.

Endpoints (JSON answers; frames travel as raw uint8 bytes with an `X-Shape: n,h,w,3` header, never pickle):
  GET    /health                      {"status": "ok", "method", "model", "sessions"}
  POST   /sessions                    JSON {"instruction", "fps", "every"?} -> {"session": id}
  POST   /sessions/{id}/frames        frames -> {"kept", "frames"} (frames the session holds)
  POST   /sessions/{id}/score         -> the newest prefix's {"value", "progress", "num_frames", ...}
  DELETE /sessions/{id}               -> {"closed": id}
  POST   /score?instruction=...&fps=  frames of a whole video -> the full result JSON (as `topreward score`)

Model work runs on one worker thread (one model, one device); the HTTP threads only parse, check and
queue. The worker takes every queued job at once and scores all pending session queries of different
sessions together (`topreward.stream.score_many`: one packed forward per `batch_size` queries), so
concurrent clients share forwards. Limits, each answered with a 4xx and a message: request size (413),
frame side (413), frames per session (413), open sessions (429), bad JSON, shape or dtype (400), unknown
or expired session (404), missing or wrong bearer token (401). Idle sessions expire after `idle_s`.
A failing request never stops the server.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class ServeLimits:
    """What one client may ask of the server."""

    max_request_bytes: int = 64 * 2**20
    max_side: int = 2048
    max_session_frames: int = 4096
    max_sessions: int = 64
    idle_s: float = 600.0
    token: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_side", "max_session_frames", "max_sessions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (isinstance(self.idle_s, (int, float)) and math.isfinite(self.idle_s) and self.idle_s > 0):
            raise ValueError(f"idle_s must be a positive number of seconds, got {self.idle_s!r}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty; give a secret or leave it out (no authentication)")


class HTTPError(Exception):
    """An answer with a status code and a message for the client (picklable: it crosses Ray actors)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message

    def __str__(self) -> str:
        return self.message


@dataclass
class _Session:
    stream: Any
    frames: int = 0
    last_used: float = field(default_factory=time.monotonic)


class RewardService:
    """Sessions and the model worker behind the HTTP layer (usable without HTTP, e.g. in a Ray actor)."""

    def __init__(self, scorer, limits: ServeLimits | None = None) -> None:
        self.scorer, self.limits = scorer, limits or ServeLimits()
        self.sessions: dict[str, _Session] = {}
        self.lock = threading.Lock()
        self.jobs: queue.Queue = queue.Queue()
        self.batches: list[int] = []  # how many session queries each batched forward served (for benchmarks)
        self._worker = threading.Thread(target=self._work, name="topreward-model", daemon=True)
        self._stop = threading.Event()
        self._worker.start()

    # ---- the model worker -----------------------------------------------------------------------
    def _run(self, kind: str, *args) -> Any:
        future: Future = Future()
        self.jobs.put((kind, args, future))
        return future.result()

    def _work(self) -> None:
        from topreward.stream import score_many

        while not self._stop.is_set():
            try:
                first = self.jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            jobs = [first]
            while True:  # everything queued meanwhile goes into this round
                try:
                    jobs.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            scores = [j for j in jobs if j[0] == "score"]
            for kind, args, future in jobs:
                if kind != "score":
                    _settle(future, lambda kind=kind, args=args: self._do(kind, *args))
            if scores:
                sessions = [args[0] for _, args, _ in scores]
                try:
                    results = score_many(sessions)
                    self.batches.append(len(sessions))
                    for (_, _, future), result in zip(scores, results):
                        future.set_result(result)
                except Exception:  # one bad session must not fail the others: score them one by one
                    for _, (session,), future in scores:
                        _settle(future, session.score)

    def _do(self, kind: str, *args) -> Any:
        if kind == "push":
            session, frames = args
            return session.push(frames)
        if kind == "video":
            frames, instruction, fps = args
            return self.scorer.score(frames, instruction, fps=fps).to_dict()
        raise ValueError(f"unknown job {kind!r}")

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
            stream = self.scorer.stream(instruction, source_fps=fps, every=every, max_frames=256)
        except ValueError as e:
            raise HTTPError(400, str(e)) from e
        with self.lock:
            if len(self.sessions) >= self.limits.max_sessions:
                raise HTTPError(429, f"{len(self.sessions)} sessions are open (the limit); close one first")
            sid = uuid.uuid4().hex
            self.sessions[sid] = _Session(stream)
        return sid

    def push(self, sid: str, frames: np.ndarray) -> dict:
        s = self._get(sid)
        if s.frames + len(frames) > self.limits.max_session_frames:
            raise HTTPError(
                413, f"a session takes at most {self.limits.max_session_frames} frames; start a new one"
            )
        try:
            kept = self._run("push", s.stream, frames)
        except ValueError as e:
            raise HTTPError(400, str(e)) from e
        s.frames += len(frames)
        return {"kept": kept, "frames": s.stream.video.num_frames if s.stream.video is not None else 0}

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
        }

    def score_video(self, frames: np.ndarray, instruction: str, fps: float) -> dict:
        try:
            return self._run("video", frames, instruction, fps)
        except (ValueError, TypeError) as e:
            raise HTTPError(400, str(e)) from e


def _settle(future: Future, fn) -> None:
    try:
        future.set_result(fn())
    except Exception as e:  # handed to the waiting request thread, which answers the client
        future.set_exception(e)


def decode_frames(body: bytes, shape_header: str | None, limits: ServeLimits) -> np.ndarray:
    """Raw uint8 frames from a request body and its `X-Shape: n,h,w,3` header; 400/413 on anything else."""
    if not shape_header:
        raise HTTPError(400, "frames need an X-Shape header: n,h,w,3 (uint8 RGB, C order)")
    try:
        shape = tuple(int(x) for x in shape_header.split(","))
    except ValueError as e:
        raise HTTPError(400, f"X-Shape must be n,h,w,3 with whole numbers, got {shape_header!r}") from e
    if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
        raise HTTPError(400, f"X-Shape must be n,h,w,3 with positive sizes, got {shape_header!r}")
    if max(shape[1:3]) > limits.max_side:
        raise HTTPError(413, f"frames of {shape[1]}x{shape[2]} exceed the {limits.max_side}-pixel side limit")
    if int(np.prod(shape)) != len(body):
        raise HTTPError(
            400, f"X-Shape {shape_header} needs {int(np.prod(shape))} bytes, the body has {len(body)}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def route(service, limits: ServeLimits, method: str, target: str, headers, body: bytes) -> tuple[int, dict]:
    """One request to (status, JSON payload); `service` is a `RewardService` or anything with its methods
    (the Ray router). Shared by the standard-library server and the Ray Serve ingress."""
    try:
        if limits.token is not None and headers.get("Authorization") != f"Bearer {limits.token}":
            raise HTTPError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        if len(body) > limits.max_request_bytes:
            raise HTTPError(
                413, f"the request has {len(body)} bytes; the limit is {limits.max_request_bytes}"
            )
        url = urlparse(target)
        parts = [p for p in url.path.split("/") if p]
        if method == "GET" and parts == ["health"]:
            return 200, service.health()
        if method == "POST" and parts == ["sessions"]:
            data = _json(body)
            return 200, {
                "session": service.start(data.get("instruction"), data.get("fps"), data.get("every", 1))
            }
        if len(parts) == 3 and parts[0] == "sessions" and method == "POST" and parts[2] == "frames":
            return 200, service.push(parts[1], decode_frames(body, headers.get("X-Shape"), limits))
        if len(parts) == 3 and parts[0] == "sessions" and method == "POST" and parts[2] == "score":
            return 200, service.score(parts[1])
        if len(parts) == 2 and parts[0] == "sessions" and method == "DELETE":
            return 200, service.stop(parts[1])
        if method == "POST" and parts == ["score"]:
            query = parse_qs(url.query)
            instruction = (query.get("instruction") or [""])[0]
            try:
                fps = float((query.get("fps") or ["nan"])[0])
            except ValueError as e:
                raise HTTPError(400, "fps must be a number") from e
            frames = decode_frames(body, headers.get("X-Shape"), limits)
            return 200, service.score_video(frames, instruction, fps)
        raise HTTPError(404, f"no endpoint {method} {url.path}; see GET /health")
    except HTTPError as e:
        return e.status, {"error": e.message}
    except Exception as e:  # the server boundary: a bug answers 500 and the server goes on
        logger.exception("request %s %s failed", method, target)
        return int(HTTPStatus.INTERNAL_SERVER_ERROR), {"error": f"{type(e).__name__}: {e}"}


def _json(body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}")
    except json.JSONDecodeError as e:
        raise HTTPError(400, f"the body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return data


def make_handler(service: RewardService):
    limits = service.limits

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args) -> None:
            logger.debug("%s " + fmt, self.client_address[0], *args)

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, allow_nan=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._send(400, {"error": "Content-Length must be a whole number"})
            if length > limits.max_request_bytes:
                # drain a moderately oversized body so the client reads its answer (not a broken pipe); a
                # huge one is cut off unread; either way the connection closes after the answer
                left = length if length <= 16 * limits.max_request_bytes else 0
                while left > 0:
                    chunk = self.rfile.read(min(left, 2**20))
                    left = left - len(chunk) if chunk else 0
                self.close_connection = True
                return self._send(
                    413, {"error": f"the request has {length} bytes; the limit is {limits.max_request_bytes}"}
                )
            body = self.rfile.read(length) if length else b""
            if len(body) < length:  # the client went away mid-request: nobody to answer
                self.close_connection = True
                return None
            status, payload = route(service, limits, method, self.path, self.headers, body)
            try:
                self._send(status, payload)
            except ValueError:  # a NaN in the payload: not JSON
                self._send(500, {"error": "the result holds a value that is not a finite number"})
            except OSError as e:  # the client closed the connection before reading its answer
                logger.debug("client %s left before its answer: %s", self.client_address[0], e)
                self.close_connection = True

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


def check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535 (0 = any free port), got {port!r}")


def serve(scorer, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None):
    """Start the server in a background thread; returns (server, service). `server.shutdown()` stops it."""
    check_port(port)
    service = RewardService(scorer, limits)
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="topreward-http", daemon=True).start()
    return server, service

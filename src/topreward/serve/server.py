"""`topreward serve`: a reward server for RL workers — streaming sessions and one-shot scoring over HTTP.

Endpoints (JSON answers; frames travel as raw uint8 bytes with an `X-Shape: n,h,w,3` header, never pickle):
  GET    /health                      {"status": "ok", "method", "model", "sessions", "queue", "last_round_s",
                                      "rounds"}: open sessions, jobs waiting for the model, the last worker
                                      round's seconds, rounds so far
  POST   /sessions                    JSON {"instruction", "fps", "every"?} -> {"session": id}
  POST   /sessions/{id}/frames        frames -> {"kept", "frames"} (frames this push kept, frames the session
                                      holds); with `X-Push-Seq: k` (0, 1, 2, ... per session) a repeated
                                      push is answered {"kept": 0, "frames", "duplicate": true} and not
                                      applied again, a skipped one gets 409
  POST   /sessions/{id}/score         -> the newest prefix's {"value", "progress", "num_frames", ...}
  DELETE /sessions/{id}               -> {"closed": id}
  POST   /score?instruction=...&fps=  frames of a whole video -> the full result JSON (as `topreward score`)

Model work runs on one worker thread (one model, one device); the HTTP threads only parse, check and
queue. The worker takes every queued job at once (a *round*): first the round's pushes, one per session, all
together (`_push_round`, `topreward.stream.push_many`: one vision-encoder call and one packed forward grow
every session's cache), then one-shot videos, then all session queries together
(`topreward.stream.score_many`: one packed forward per `batch_size` queries). So the forwards of a round do
not grow with the number of sessions.

Limits (`ServeLimits`, each a `topreward serve` flag), each answered with a status and a message that names
it: request size (413), frame side (413), frames per session (413), open sessions (429), bad JSON, shape,
dtype or `X-Push-Seq` (400), unknown or expired session (404), missing or wrong bearer token (401), a push
that skips a sequence number (409, with `X-Push-Expected`). Under load:
  * `max_queue` jobs waiting for the model: a new model request gets 429 with `Retry-After` (seconds);
  * `request_timeout`: a request still waiting for the model after it gets 503 with `Retry-After`; the
    worker drops jobs whose deadline passed when their turn comes, so nobody waits longer than the
    deadline (a job already running finishes; a push that did is deduplicated by its sequence number);
  * `read_timeout`: a client that sends nothing for that long (a stalled body, an idle keep-alive
    connection) is cut off (408 if it is mid-body); each connection has its own thread, so others go on;
  * `max_kept_frames`: the frames a session keeps (past it the session thins them, `topreward.stream`
    step 5), so a session's memory is bounded however long it runs.
Idle sessions expire after `idle_s`. A failing request never stops the server, nor a failing round the
worker. Behind `--engine ray` (`topreward.serve.ray`) the same limits hold inside each replica (the read
timeout is Ray Serve's own), a session whose replica died gets 410 ("session lost, re-create it"), a replica
that does not answer 503, and `/health` adds "replicas" and "replicas_lost" ("status": "degraded").
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

from topreward.serve.service import HTTPError, RewardService, ServeLimits

logger = logging.getLogger(__name__)

__all__ = ["HTTPError", "RewardService", "ServeLimits", "check_port", "decode_frames", "route", "serve"]


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


def push_seq(header: str | None) -> int | None:
    """The `X-Push-Seq` header as a whole number >= 0 (None without the header); 400 otherwise."""
    if header is None:
        return None
    try:
        seq = int(header)
    except ValueError:
        seq = -1
    if seq < 0:
        raise HTTPError(
            400, f"X-Push-Seq must be a whole number >= 0 (0 for a session's first push), got {header!r}"
        )
    return seq


def route(
    service, limits: ServeLimits, method: str, target: str, headers, body: bytes
) -> tuple[int, dict, dict[str, str]]:
    """One request to (status, JSON payload, extra headers such as `Retry-After`); `service` is a
    `RewardService` or anything with its methods (the Ray router). Shared by the standard-library server
    and the Ray Serve ingress."""
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
            return 200, service.health(), {}
        if method == "POST" and parts == ["sessions"]:
            data = _json(body)
            sid = service.start(data.get("instruction"), data.get("fps"), data.get("every", 1))
            return 200, {"session": sid}, {}
        if len(parts) == 3 and parts[0] == "sessions" and method == "POST" and parts[2] == "frames":
            seq = push_seq(headers.get("X-Push-Seq"))
            return 200, service.push(parts[1], decode_frames(body, headers.get("X-Shape"), limits), seq), {}
        if len(parts) == 3 and parts[0] == "sessions" and method == "POST" and parts[2] == "score":
            return 200, service.score(parts[1]), {}
        if len(parts) == 2 and parts[0] == "sessions" and method == "DELETE":
            return 200, service.stop(parts[1]), {}
        if method == "POST" and parts == ["score"]:
            query = parse_qs(url.query)
            instruction = (query.get("instruction") or [""])[0]
            try:
                fps = float((query.get("fps") or ["nan"])[0])
            except ValueError as e:
                raise HTTPError(400, "fps must be a number") from e
            frames = decode_frames(body, headers.get("X-Shape"), limits)
            return 200, service.score_video(frames, instruction, fps), {}
        raise HTTPError(404, f"no endpoint {method} {url.path}; see GET /health")
    except HTTPError as e:
        return e.status, {"error": e.message}, e.headers
    except Exception as e:  # the server boundary: a bug answers 500 and the server goes on
        logger.exception("request %s %s failed", method, target)
        return int(HTTPStatus.INTERNAL_SERVER_ERROR), {"error": f"{type(e).__name__}: {e}"}, {}


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
        # the socket's read timeout (StreamRequestHandler.setup): a stalled body or an idle keep-alive
        # connection ends after it instead of holding its thread forever
        timeout = limits.read_timeout

        def log_message(self, fmt: str, *args) -> None:
            logger.debug("%s " + fmt, self.client_address[0], *args)

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload, allow_nan=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._send(400, {"error": "Content-Length must be a whole number"})
            try:
                if length > limits.max_request_bytes:
                    # drain a moderately oversized body so the client reads its answer (not a broken pipe);
                    # a huge one is cut off unread; either way the connection closes after the answer
                    left = length if length <= 16 * limits.max_request_bytes else 0
                    while left > 0:
                        chunk = self.rfile.read(min(left, 2**20))
                        left = left - len(chunk) if chunk else 0
                    self.close_connection = True
                    return self._send(
                        413,
                        {"error": f"the request has {length} bytes; the limit is {limits.max_request_bytes}"},
                    )
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                self.close_connection = True
                logger.info("client %s stalled mid-body; cut off", self.client_address[0])
                with contextlib.suppress(OSError):
                    self._send(
                        408,
                        {
                            "error": f"the body stalled: nothing arrived for {limits.read_timeout:g} s "
                            "(read_timeout; `topreward serve --read-timeout`)"
                        },
                    )
                return None
            if len(body) < length:  # the client went away mid-request: nobody to answer
                self.close_connection = True
                return None
            status, payload, headers = route(service, limits, method, self.path, self.headers, body)
            try:
                self._send(status, payload, headers)
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


def serve(
    scorer,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    *,
    batch_pushes: bool = True,
):
    """Start the server in a background thread; returns (server, service). `server.shutdown()` stops it.
    `batch_pushes=False` runs each push in a forward of its own (the reference the benchmark compares)."""
    check_port(port)
    service = RewardService(scorer, limits, batch_pushes=batch_pushes)
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    # a short poll: `server.shutdown()` returns within it
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="topreward-http", daemon=True
    ).start()
    return server, service

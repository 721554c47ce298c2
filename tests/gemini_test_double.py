"""A loopback test double of the Gemini REST API, for the Gemini backend's tests (no network, no key).

`GeminiTestDouble` is a standard-library HTTP server on 127.0.0.1 that answers what the google-genai SDK
sends when its `http_options.base_url` points at it: `POST /v1beta/models/{model}:generateContent` with a
JSON body `{"contents": [{"role", "parts": [{"text"} | {"inlineData": {"mimeType"|"mime_type", "data"}}]}],
"generationConfig": {...}}`. It records every request, and answers either from a queue of scripted
replies (`reply(status, body)`) or with a default answer that counts the parts it got.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):generateContent$")


@dataclass
class RecordedRequest:
    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return [p for content in self.body["contents"] for p in content["parts"]]

    @property
    def generation_config(self) -> dict[str, Any]:
        return self.body.get("generationConfig", {})


def text_reply(text: str, finish: str = "STOP", logprobs: dict | None = None) -> dict[str, Any]:
    """A generateContent response body with one candidate saying `text`."""
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "finishReason": finish,
        "index": 0,
    }
    if logprobs is not None:
        candidate["logprobsResult"] = logprobs
    return {"candidates": [candidate], "modelVersion": "test-double"}


def error_reply(code: int, status: str, message: str) -> dict[str, Any]:
    """A Google API error body."""
    return {"error": {"code": code, "message": message, "status": status}}


class GeminiTestDouble:
    """Test double of the Gemini API: a loopback HTTP server answering generateContent like the real API.

    Attributes:
        requests: every request received, in order.
        delay_s: seconds to wait before answering (to test timeouts).
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.delay_s = 0.0
        self._script: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                double._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> GeminiTestDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.delay_s = 0.0

    def reply(self, status: int, body: dict[str, Any]) -> None:
        """Queue one scripted reply; the default answer comes back once the queue is empty."""
        with self._lock:
            self._script.append((status, body))

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length)
        match = PATH.match(handler.path)
        if match is None:
            self._send(handler, 404, error_reply(404, "NOT_FOUND", f"no route {handler.path}"))
            return
        body = json.loads(raw or b"{}")
        with self._lock:
            self.requests.append(RecordedRequest(handler.path, match["model"], dict(handler.headers), body))
            status, answer = self._script.pop(0) if self._script else (200, self._default(body))
        if self.delay_s:
            time.sleep(self.delay_s)
        self._send(handler, status, answer)

    @staticmethod
    def _default(body: dict[str, Any]) -> dict[str, Any]:
        parts = [p for content in body.get("contents", []) for p in content.get("parts", [])]
        texts = sum("text" in p for p in parts)
        images = sum("inlineData" in p or "inline_data" in p for p in parts)
        return text_reply(f"{texts} texts, {images} images")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

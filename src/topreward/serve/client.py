"""Client of `topreward serve` (standard library only): sessions for online rewards and one-shot scoring.

client = RewardClient("http://127.0.0.1:8000", token=None)
session = client.start("put the pen into the cup", fps=30, every=15)
session.push(frames)            # uint8 (H, W, 3) or (n, H, W, 3)
session.score()["value"]        # log P(True) of the newest prefix (TOPReward), progress, signals
session.close()
client.score_video(frames, "put the pen into the cup", fps=30)   # the whole result JSON
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import numpy as np


class ServerError(RuntimeError):
    """The server answered with an error: its status and message."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {message}")
        self.status, self.message = status, message


class RewardClient:
    """Talks to one `topreward serve` URL; every request has a timeout (seconds)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> dict:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except (json.JSONDecodeError, AttributeError):
                message = str(e.reason)
            raise ServerError(e.code, message, self.url + path) from None
        except urllib.error.URLError as e:
            raise ConnectionError(f"cannot reach the reward server at {self.url}: {e.reason}") from e

    def health(self) -> dict:
        return self._request("GET", "/health")

    def start(self, instruction: str, fps: float, every: int = 1) -> ClientSession:
        body = json.dumps({"instruction": instruction, "fps": fps, "every": every}).encode()
        sid = self._request("POST", "/sessions", body, {"Content-Type": "application/json"})["session"]
        return ClientSession(self, sid)

    def score_video(self, frames: Any, instruction: str, fps: float) -> dict:
        body, headers = _frames_body(frames)
        return self._request(
            "POST", "/score?" + urlencode({"instruction": instruction, "fps": fps}), body, headers
        )


class ClientSession:
    """One streaming session on the server."""

    def __init__(self, client: RewardClient, sid: str) -> None:
        self.client, self.id = client, sid

    def push(self, frames: Any) -> dict:
        body, headers = _frames_body(frames)
        return self.client._request("POST", f"/sessions/{self.id}/frames", body, headers)

    def score(self) -> dict:
        return self.client._request("POST", f"/sessions/{self.id}/score", b"")

    def close(self) -> dict:
        return self.client._request("DELETE", f"/sessions/{self.id}")


def _frames_body(frames: Any) -> tuple[bytes, dict]:
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB (H, W, 3) or (n, H, W, 3), got {arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(arr)
    return arr.tobytes(), {
        "X-Shape": ",".join(map(str, arr.shape)),
        "Content-Type": "application/octet-stream",
    }

"""Client of `topreward serve` (standard library only): sessions for online rewards and one-shot scoring.

client = RewardClient("http://127.0.0.1:8000", token=None, retries=3, backoff=0.5)
session = client.start("put the pen into the cup", fps=30, every=15)
session.push(frames)            # uint8 (H, W, 3) or (n, H, W, 3)
session.score()["value"]        # log P(True) of the newest prefix (TOPReward), progress, signals
session.close()
client.score_video(frames, "put the pen into the cup", fps=30)   # the whole result JSON

A busy or briefly unreachable server is retried: connection errors and timeouts, 429 (after its
`Retry-After`) and 503, with exponential back-off, `retries` times. Every call is safe to repeat except
`start` (it makes a session), which is retried only on a refused connection (nothing was sent) and on an
answered 429 or 503 (a repeat after a lost answer could leave a second session, idle until `idle_s`). Pushes carry a sequence number (`X-Push-Seq`), so a push whose answer was lost is
retried and the server applies it once. When a session's replica died (Ray Serve), its calls raise
`SessionLost`: start a new session.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import numpy as np

RETRIED_STATUSES = (429, 503)


class ServerError(RuntimeError):
    """The server answered with an error: its status, message and headers."""

    def __init__(self, status: int, message: str, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{url}: HTTP {status}: {message}")
        self.status, self.message, self.headers = status, message, dict(headers or {})


class SessionLost(ServerError):
    """The session is gone with the replica that held it (HTTP 410): start a new one."""


class RewardClient:
    """Talks to one `topreward serve` URL.

    Args:
        url: the server, e.g. `http://127.0.0.1:8000`.
        token: the server's bearer token, if it has one.
        timeout: seconds one try may take.
        retries: tries after the first on connection errors, timeouts, 429 and 503 (0: none).
        backoff: seconds before the first retry; doubled each retry (a 429's `Retry-After` wins).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
        if not backoff >= 0:
            raise ValueError(f"backoff must be >= 0 seconds, got {backoff!r}")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        self.retries, self.backoff = retries, backoff

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        *,
        idempotent: bool = True,
    ) -> dict:
        """One call, retried as the module docstring says; `ServerError` or `ConnectionError` at the end."""
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            wait = self.backoff * 2**attempt * random.uniform(0.5, 1.0)  # jitter: clients do not march
            try:
                return self._once(method, path, body, headers)
            except ServerError as e:
                if last or e.status not in RETRIED_STATUSES:
                    raise
                if e.headers.get("Retry-After", "").isdigit():
                    wait = float(e.headers["Retry-After"])
            except ConnectionError as e:
                # a request that never reached the server is safe to repeat; one that may have, only when
                # repeating it changes nothing
                if last or not (idempotent or isinstance(e.__cause__, ConnectionRefusedError)):
                    tries = "1 try" if attempt == 0 else f"{attempt + 1} tries"
                    raise ConnectionError(f"{e} ({tries})") from e.__cause__
            time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _once(self, method: str, path: str, body: bytes | None, headers: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except (json.JSONDecodeError, AttributeError, OSError):
                message = str(e.reason)
            kind = SessionLost if e.code == 410 else ServerError
            raise kind(e.code, message, self.url + path, dict(e.headers.items())) from None
        except urllib.error.URLError as e:
            reason = e.reason if isinstance(e.reason, BaseException) else None
            raise ConnectionError(f"cannot reach the reward server at {self.url}: {e.reason}") from reason
        except (OSError, http.client.HTTPException) as e:  # reset, timed out or cut off mid-answer
            raise ConnectionError(
                f"the reward server at {self.url} did not answer {method} {path}: {type(e).__name__}: {e}"
            ) from e

    def health(self) -> dict:
        return self._request("GET", "/health")

    def start(self, instruction: str, fps: float, every: int = 1) -> ClientSession:
        body = json.dumps({"instruction": instruction, "fps": fps, "every": every}).encode()
        answer = self._request(
            "POST", "/sessions", body, {"Content-Type": "application/json"}, idempotent=False
        )
        return ClientSession(self, answer["session"])

    def score_video(self, frames: Any, instruction: str, fps: float) -> dict:
        body, headers = _frames_body(frames)
        return self._request(
            "POST", "/score?" + urlencode({"instruction": instruction, "fps": fps}), body, headers
        )


class ClientSession:
    """One streaming session on the server. Its pushes are numbered 0, 1, 2, ... (`X-Push-Seq`)."""

    def __init__(self, client: RewardClient, sid: str) -> None:
        self.client, self.id = client, sid
        self.seq = 0  # the next push's number

    def push(self, frames: Any) -> dict:
        """Send frames; `{"kept", "frames"}` (plus `"duplicate": true` if the server had them already).

        A push that fails without a clear answer (connection lost, 503 after its deadline) may still have
        been applied: its number is used up, so the next push is never mistaken for it; if it was not
        applied, the next push gets 409 (frames went missing) and the numbering follows the server's again.
        """
        body, headers = _frames_body(frames)
        headers["X-Push-Seq"] = str(self.seq)
        try:
            answer = self.client._request("POST", f"/sessions/{self.id}/frames", body, headers)
        except ServerError as e:
            if e.status == 409 and e.headers.get("X-Push-Expected", "").isdigit():
                self.seq = int(e.headers["X-Push-Expected"])
            elif e.status == 503:  # dropped after its deadline, perhaps while it ran
                self.seq += 1
            raise
        except ConnectionError:
            self.seq += 1
            raise
        self.seq += 1
        return answer

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

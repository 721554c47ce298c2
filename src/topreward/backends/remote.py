"""What the remote backends (`openai_api`, `gemini`) share: the API key that never prints, and bounded
retries with exponential back-off.

The key lives in a `Secret`: its repr and str show no key, and `redact` takes it out of any text (a server's
error message may echo it) before that text is logged or raised. `with_retries` runs one attempt at a time;
an attempt that raises `Transient` is tried again after `backoff * 2**i` seconds (capped), up to `retries`
more times, then `give_up` says what happened; any other exception ends the loop at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Secret:
    """Holds an API key so that a repr, str or format of it (or of `vars(backend)`) shows no key."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value or None

    def __repr__(self) -> str:
        return "<api key>" if self.value else "<no api key>"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """`text` with the key replaced by `[redacted]`."""
        return text.replace(self.value, "[redacted]") if self.value else text


def key_from_env(names: tuple[str, ...]) -> str | None:
    """The first of the environment variables `names` that is set and not blank, else None."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


class Transient(Exception):
    """A failed attempt worth repeating (down, slow, 408/429/5xx, garbage); the message says what happened."""


def with_retries(
    attempt: Callable[[], T],
    *,
    retries: int,
    backoff: float,
    max_backoff: float,
    give_up: Callable[[str, int], Exception],
    what: str,
) -> T:
    """`attempt()`'s value, trying again while it raises `Transient`, at most `retries` more times.

    Args:
        attempt: one try; raises `Transient(reason)` for a failure worth repeating.
        retries: further attempts after the first.
        backoff: seconds before the first retry; doubles after each, capped at `max_backoff`.
        give_up: (last reason, attempts made) -> the exception to raise when every attempt failed.
        what: names the target in the warning logged per failed attempt (never the key).
    """
    attempts = retries + 1
    for i in range(1, attempts + 1):
        try:
            return attempt()
        except Transient as e:
            reason = str(e)
        if i == attempts:
            # raised outside the `except` block: the transient error (whose text a server may have filled
            # with the key) is not chained into the traceback
            raise give_up(reason, attempts)
        delay = min(max_backoff, backoff * 2 ** (i - 1))
        logger.warning("%s: %s (attempt %d of %d); retrying in %.1f s", what, reason, i, attempts, delay)
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")

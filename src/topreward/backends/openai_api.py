"""OpenAI-compatible server backend: a video VLM served by vLLM or SGLang (or any server speaking the protocol).

What it offers (`topreward.backends.base`):
  * `generation`: `chat(parts, generation)` through `/v1/chat/completions`. Text parts become text, images
    (uint8 (H, W, 3)) become base64 PNG data URLs, an `ImageURL` part is sent as its URL (http(s), or
    `file://` where the server allows local media), and a `ModelVideo` becomes its frames, in order, as
    images. `Generation` maps to `max_tokens`, `stop`, `temperature` and `seed`.
  * `log_probs`: exact next-token log-probs of the token ids a `Request` asks for, never a value guessed
    from a top-k list. Per request, the first `prefix` frames go in as images (each with a stable id, so the
    K prefixes of one episode reuse the server's prefix cache), then the request's text.
      - `server="vllm"`: `/v1/chat/completions` with `logprobs: true`, `logprob_token_ids: [ids]` and
        `return_tokens_as_token_ids: true`, `max_tokens: 1`; every frame carries a `uuid` (vLLM's
        `multi_modal_uuids` for chat requests). Prompt styles: `authors` = the chat template's user turn
        with the frames and the prompt left open (`add_generation_prompt: false`,
        `continue_final_message: true`: no end of turn, no assistant turn); `chat` = the normal generation
        prompt. The server applies the model's own chat template.
      - `server="sglang"`: the native `/generate` with `return_logprob`, `token_ids_logprob: [ids]`,
        `image_data`, and a prompt text we write in the Qwen-VL layout (`<|vision_start|><|image_pad|>
        <|vision_end|>` per image): styles `raw` (frames then the prompt) and `authors` (user-turn header
        first). Per-image prefix caching is SGLang's default.
    A server that returns no value for an asked token id (e.g. a vLLM without `logprob_token_ids` on its
    OpenAI endpoints, which ignores the field) is an error that names the feature, not a guess.
  * `multi_image`: several images in one chat turn (e.g. `gvl`). Image-prompt log-probs
    (`image_log_probs`, the `lrm-*` methods) and teacher-forced span log-probs (`Request.span`, the
    `instruction` method) are not offered: they raise, naming the method and `backend='transformers'`.
  * Not `prefix_sharing` in the in-process sense: sharing is the server's prefix cache.

What differs from the in-process `transformers` backend: frames are sent as separate images, so the model
sees no video timestamps or temporal patch merging; the server's image processor may resize frames (Qwen3-VL
keeps a frame whose sides are multiples of 32 within its pixel bounds); the chat template is the server's.
Numbers therefore differ from `HFBackend` on the same frames as a video, and equal its image path.

Every HTTP request has a timeout; connection failures, timeouts, HTTP 408/429/5xx and answers that are not
the expected JSON are retried `retries` times with exponential back-off, then fail with an error naming the
URL. Other HTTP errors fail at once, naming the URL, the status and the server's message. The API key comes
from `TOPREWARD_API_KEY`, else `OPENAI_API_KEY`; it is sent as a bearer token only, never logged, never in
`describe()`, reprs or errors.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from topreward.backends.base import (
    GENERATION,
    LOG_PROBS,
    MULTI_IMAGE,
    Answer,
    Generation,
    ModelVideo,
    Request,
    appended,
    cut_at_stop,
)
from topreward.backends.families import QWEN_IMAGE_MARKER, QWEN_USER_TURN  # SGLang's /generate takes text
from topreward.backends.remote import Secret, Transient, key_from_env, with_retries

if TYPE_CHECKING:
    from topreward.backends.config import BackendConfig

logger = logging.getLogger(__name__)

__all__ = ["ImageURL", "OpenAIServerBackend", "ServerError", "ServerPrompt", "ServerVideoCache"]

ServerKind = Literal["vllm", "sglang"]
SERVERS: tuple[str, ...] = ("vllm", "sglang")
ENV_KEYS = ("TOPREWARD_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
DEFAULT_PATCH_FACTOR = 32  # Qwen3-VL: 16-pixel patches merged 2x2 (Qwen2.5-VL: 28)
#: `ServerPrompt.before` of the vLLM styles: the server's chat template writes what precedes the frames
OPEN_USER_TURN = "<chat template: user turn, left open>"
CHAT_TURN = "<chat template: user turn, then the generation prompt>"
_TOKEN_ID_PREFIX = "token_id:"


class ServerError(RuntimeError):
    """A server that is down, slow, answers an HTTP error or garbage, or lacks a feature; names the URL."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url, self.status = url, status


class _BadAnswer(ValueError):
    """An answer that is not the documented shape: retried, then reported."""


@dataclass(frozen=True)
class ImageURL:
    """A chat image given by URL (http(s), or file:// where the server allows local media); sent as is."""

    url: str


@dataclass(frozen=True)
class ServerPrompt:
    """Where the frames and the prompt go: `before` the frames (a chat-template marker for vLLM), `after`."""

    before: str
    after: str


def api_key_from_env() -> str | None:
    """`TOPREWARD_API_KEY`, else `OPENAI_API_KEY`, else None (local servers usually need none)."""
    return key_from_env(ENV_KEYS)


def _safe_url(url: str) -> str:
    """`url` without credentials, query or fragment (what may be recorded and shown)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"url={_safe_url(str(url))!r} is not an http(s) URL; give e.g. http://localhost:8000"
        )
    return _safe_url(str(url)).rstrip("/").removesuffix("/v1")


def encode_png(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) image as a base64 PNG data URL (lossless: the server sees exactly these pixels)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def frame_uuid(frame: np.ndarray) -> str:
    """A stable id of one frame's pixels: the same frame gets the same id in every prefix and request."""
    h = hashlib.sha256(str(frame.shape).encode())
    h.update(np.ascontiguousarray(frame).tobytes())
    return "topreward-" + h.hexdigest()[:32]


class OpenAIServerBackend:
    """A model behind an OpenAI-compatible HTTP server (vLLM, SGLang, `transformers serve`, ...).

    Args:
        model: the served model name (the `model` field of every request), e.g. Qwen/Qwen3-VL-8B-Instruct.
        url: base URL of the server, e.g. http://localhost:8000 (a trailing /v1 is accepted).
        server: "vllm" or "sglang": which request format log-prob requests use (generation is the same).
        revision: recorded in `describe()` only (the server decides what it serves).
        timeout: seconds per HTTP request.
        retries: extra attempts after a failed one (down, slow, 408/429/5xx, garbage).
        concurrency: requests in flight at once.
        patch_factor: frame sides are rounded to multiples of this (32 for Qwen3-VL, 28 for Qwen2.5-VL).
        api_key: bearer token; default from `TOPREWARD_API_KEY` or `OPENAI_API_KEY`.
        backoff: seconds before the first retry; doubles after each (capped at 30 s).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        url: str,
        server: ServerKind = "vllm",
        revision: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        concurrency: int = 8,
        patch_factor: int = DEFAULT_PATCH_FACTOR,
        api_key: str | None = None,
        backoff: float = 0.5,
    ) -> None:
        if server not in SERVERS:
            raise ValueError(f"server={server!r}; choose one of {', '.join(SERVERS)}")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if isinstance(patch_factor, bool) or not isinstance(patch_factor, int) or patch_factor < 1:
            raise ValueError(f"patch_factor must be a positive integer, got {patch_factor!r}")
        self.model_id = str(model)
        self.revision = revision
        self.base_url = _base_url(url)
        self.server = server
        self.timeout, self.retries, self.concurrency = float(timeout), retries, concurrency
        self.patch_factor = patch_factor
        self.backoff = float(backoff)
        self._key = Secret(api_key if api_key is not None else api_key_from_env())
        self._token_ids: dict[str, list[int]] = {}
        self.capabilities = frozenset({LOG_PROBS, GENERATION, MULTI_IMAGE})

    @classmethod
    def from_config(cls, config: BackendConfig) -> OpenAIServerBackend:
        c = config
        return cls(
            c.model,
            url=str(c.url),
            server=c.server,
            revision=c.revision,
            timeout=c.timeout,
            retries=c.retries,
            concurrency=c.concurrency,
            patch_factor=c.server_patch_factor,
        )

    @classmethod
    def config_patch_factor(cls, config: BackendConfig) -> int:
        return config.server_patch_factor  # no model files here: the documented default or the option

    def __repr__(self) -> str:
        return f"OpenAIServerBackend(model={self.model_id!r}, url={self.base_url!r}, server={self.server!r})"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "revision": self.revision,
            "backend": self.name,
            "server": self.server,
            "url": self.base_url,
        }

    # ---- HTTP -------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict, parse: Callable[[dict], Any]) -> Any:
        """POST `body` as JSON and `parse` the answer; bounded retries on transient failures and garbage."""
        url = self.base_url + path
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key.value:
            headers["Authorization"] = f"Bearer {self._key.value}"

        def attempt() -> Any:
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as e:
                message = f"{url} answered HTTP {e.code} {e.reason}: {self._detail(e)}"
                if e.code not in RETRY_STATUS:
                    raise ServerError(message, url=url, status=e.code) from None
                raise Transient(message) from None
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", None) or e
                if isinstance(reason, TimeoutError):
                    raise Transient(
                        f"no answer from {url} within the timeout of {self.timeout:g} s"
                    ) from None
                raise Transient(f"no answer from {url} ({self._key.redact(str(reason))})") from None
            try:
                answer = json.loads(raw)
                if not isinstance(answer, dict):
                    raise _BadAnswer(f"a JSON {type(answer).__name__}, not an object")
                return parse(answer)
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise Transient(
                    f"{url} answered something that is not the expected JSON ({e}): {raw[:200]!r}"
                ) from None

        def give_up(last: str, attempts: int) -> ServerError:
            return ServerError(
                f"{last} — gave up after {attempts} attempt(s); check that the server at {self.base_url} is "
                "up and serves this model, or raise `timeout` / `retries`",
                url=url,
            )

        return with_retries(
            attempt,
            retries=self.retries,
            backoff=self.backoff,
            max_backoff=MAX_BACKOFF_S,
            give_up=give_up,
            what=f"POST {url}",
        )

    def _detail(self, error: urllib.error.HTTPError) -> str:
        try:
            text = error.read(2000).decode("utf-8", "replace")
        except OSError:
            return "(no body)"
        try:
            body = json.loads(text)
            err = body.get("error", body) if isinstance(body, dict) else body
            text = err.get("message", text) if isinstance(err, dict) else str(err)
        except ValueError:
            pass
        return self._key.redact(" ".join(str(text).split())[:500])

    def _map(self, fn: Callable[[Any], Any], items: list) -> list:
        """`fn` over `items`, at most `concurrency` at a time, in order."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(fn, x) for x in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    # ---- text -------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (no special tokens added) from the server's tokenizer endpoint."""
        if text in self._token_ids:
            return list(self._token_ids[text])
        path = "/tokenize" if self.server == "vllm" else "/v1/tokenize"
        body = {"model": self.model_id, "prompt": text, "add_special_tokens": False}
        ids = self._post(path, body, _parse_tokens)
        self._token_ids[text] = ids
        return list(ids)

    def token_id(self, word: str) -> int:
        """The id of `word` as one token (e.g. " True" with its leading space); error if it is several."""
        ids = self.tokenize(word)
        if len(ids) != 1:
            raise ValueError(
                f"model {self.model_id} at {self.base_url}: the answer word {word!r} is {len(ids)} tokens "
                f"{ids}, not one; a next-token probability needs a word that is a single token in this "
                "tokenizer, so change the answer word"
            )
        return int(ids[0])

    def prompt_text(self, style: str, prompt: str) -> ServerPrompt:
        """Where the frames and the prompt go for a prompt style (see the module docstring)."""
        if self.server == "vllm":
            if style == "authors":
                return ServerPrompt(OPEN_USER_TURN, prompt)
            if style == "chat":
                return ServerPrompt(CHAT_TURN, prompt)
            if style == "raw":
                raise ValueError(
                    "prompt_style='raw' (frames then the prompt, no chat template) cannot be sent as chat "
                    "messages; use prompt_style='authors' or 'chat', or server='sglang'"
                )
        else:
            if style == "raw":
                return ServerPrompt("", prompt)
            if style == "authors":
                return ServerPrompt(QWEN_USER_TURN, prompt)
            if style == "chat":
                raise ValueError(
                    "prompt_style='chat' needs the model's chat template, which SGLang's native /generate does "
                    "not apply; use prompt_style='authors' or 'raw', or server='vllm'"
                )
        raise ValueError(f"unknown prompt_style {style!r}; choose 'raw', 'authors' or 'chat'")

    # ---- log-probs ----------------------------------------------------------------------------------
    def video_cache(
        self, video: ModelVideo, before: str, *, path: str | None = None, batch_size: int | None = None
    ) -> ServerVideoCache:
        """Requests about prefixes of `video` with `before` in front (`path` and `batch_size` do not apply:
        the server's prefix cache shares the work, `concurrency` bounds the requests in flight)."""
        if self.server == "vllm" and before not in (OPEN_USER_TURN, CHAT_TURN):
            raise ValueError(
                f"before={before[:60]!r}: with server='vllm' the chat template writes what precedes the frames; "
                "take `before` from prompt_text('authors' | 'chat', ...)"
            )
        return ServerVideoCache(self, video, before)

    def _log_probs(self, images: list[dict], before: str, text: str, ids: list[int]) -> np.ndarray:
        """Log-probs of `ids` as the next token after [before, images, text]."""
        if self.server == "vllm":
            content = [*images, {"type": "text", "text": text}]
            body = {
                "model": self.model_id,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "logprob_token_ids": ids,
                "return_tokens_as_token_ids": True,
                "add_generation_prompt": before == CHAT_TURN,
                "continue_final_message": before == OPEN_USER_TURN,
            }
            got = self._post("/v1/chat/completions", body, _parse_vllm_log_probs)
            feature = (
                "vLLM's `logprob_token_ids` on /v1/chat/completions (vllm-project/vllm#43463; older servers "
                "ignore the field and return only the top-k list, which is not used here); upgrade vLLM"
            )
        else:
            body = {
                "text": before + QWEN_IMAGE_MARKER * len(images) + text,
                "image_data": [im["image_url"]["url"] for im in images],
                "sampling_params": {"max_new_tokens": 1, "temperature": 0.0},
                "return_logprob": True,
                "logprob_start_len": -1,
                "token_ids_logprob": ids,
            }
            got = self._post("/generate", body, _parse_sglang_log_probs)
            feature = "SGLang's `token_ids_logprob` on the native /generate endpoint; upgrade SGLang"
        missing = [t for t in ids if t not in got]
        if missing:
            raise ServerError(
                f"{self.base_url} returned no log-prob for token id(s) {missing}: the server must support "
                f"{feature}",
                url=self.base_url,
            )
        return np.array([got[t] for t in ids], dtype=np.float64)

    # ---- generation -------------------------------------------------------------------------------
    def chat(self, parts: list, generation: Generation | None = None) -> str:
        """The model's answer to one user turn of text, images, `ImageURL`s and videos (as their frames),
        after `generation.system` as a system message if given."""
        generation = generation or Generation()
        content = self._content(parts)
        system = [{"role": "system", "content": generation.system}] if generation.system is not None else []
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [*system, {"role": "user", "content": content}],
            "max_tokens": generation.max_new_tokens,
            "temperature": float(generation.temperature),
            "seed": int(generation.seed),
        }
        if generation.temperature > 0 and generation.top_p < 1:
            body["top_p"] = float(generation.top_p)
        if generation.temperature > 0 and generation.top_k:
            body["top_k"] = int(generation.top_k)  # a vLLM / SGLang extension of the chat API
        if generation.stop:
            body["stop"] = list(generation.stop)
        text = self._post("/v1/chat/completions", body, _parse_chat_text)
        return cut_at_stop(text, generation.stop)

    def _content(self, parts: list) -> list[dict]:
        if not parts or not any(isinstance(p, str) for p in parts):
            raise ValueError("a chat prompt needs at least one text part")
        content: list[dict] = []
        for i, p in enumerate(parts):
            if isinstance(p, str):
                content.append({"type": "text", "text": p})
            elif isinstance(p, ImageURL):
                content.append({"type": "image_url", "image_url": {"url": p.url}})
            elif isinstance(p, ModelVideo):
                content += [_image_part(f) for f in p.frames]
            elif isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3:
                content.append(_image_part(p))
            else:
                raise TypeError(
                    f"chat part {i} is {type(p).__name__} {getattr(p, 'shape', '')}; give text, a uint8 "
                    "(H, W, 3) image, an ImageURL or a ModelVideo"
                )
        return content

    # ---- not offered --------------------------------------------------------------------------------
    def image_chat(self, parts: list) -> tuple[str, list[np.ndarray]]:
        raise ValueError(_no_image_log_probs())

    def image_log_probs(self, prompt: str, images: list, requests: list, *, path=None, batch_size=None):
        raise ValueError(_no_image_log_probs())


def _no_image_log_probs() -> str:
    return (
        "the lrm-* methods need log-probs after an image prompt written in the model's chat template "
        "(image_log_probs), which the openai backend does not offer; use backend='transformers'"
    )


def _image_part(frame: np.ndarray, uid: str | None = None, url: str | None = None) -> dict:
    part: dict[str, Any] = {"type": "image_url", "image_url": {"url": url or encode_png(frame)}}
    if uid:
        part["uuid"] = uid  # vLLM: the item's id for its multi-modal and prefix caches
    return part


class ServerVideoCache:
    """A video on a server: each request sends frames 1..prefix as images (encoded once, stable ids)."""

    side_by_side = False

    def __init__(self, backend: OpenAIServerBackend, video: ModelVideo, before: str) -> None:
        self.backend, self.before = backend, before
        self.video = dataclasses.replace(video)  # its own: `extend` replaces it, never the caller's
        self._parts: list[dict | None] = [None] * video.num_frames

    def _images(self, k: int) -> list[dict]:
        for i in range(k):
            if self._parts[i] is None:
                frame = self.video.frames[i]
                self._parts[i] = _image_part(frame, frame_uuid(frame))
        return list(self._parts[:k])

    def score(self, requests: list[Request]) -> list[Answer]:
        for r in requests:
            if r.span is not None:
                raise ValueError(
                    "a span request (teacher-forced log-probs of a text span, used by the 'instruction' "
                    "method) is not offered by the openai backend: a server would have to return prompt "
                    "log-probs, which disables vLLM's prefix caching; use backend='transformers'"
                )
            if not 1 <= r.prefix <= self.video.num_frames:
                raise ValueError(
                    f"prefix {r.prefix} is outside the video's 1..{self.video.num_frames} frames"
                )
        self._images(max((r.prefix for r in requests), default=0))  # encode each frame once, up front
        b = self.backend

        def one(r: Request) -> Answer:
            return Answer(b._log_probs(self._images(r.prefix), self.before, r.text, list(r.tokens)))

        return b._map(one, requests)

    def extend(self, frames: np.ndarray, source_indices) -> None:
        self.video = appended(self.video, frames, source_indices)
        self._parts += [None] * (self.video.num_frames - len(self._parts))


# ---- answers: the documented shapes ----------------------------------------------------------------
def _parse_tokens(answer: dict) -> list[int]:
    ids = answer["tokens"]
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise _BadAnswer("'tokens' is not a list of integer ids")
    return ids


def _parse_chat_text(answer: dict) -> str:
    text = answer["choices"][0]["message"]["content"]
    if not isinstance(text, str):
        raise _BadAnswer("choices[0].message.content is not a string")
    return text


def _parse_vllm_log_probs(answer: dict) -> dict[int, float]:
    """vLLM: choices[0].logprobs.content[0] is the sampled token, its top_logprobs the sampled token plus every
    id of `logprob_token_ids`, named "token_id:<id>" (return_tokens_as_token_ids)."""
    logprobs = answer["choices"][0]["logprobs"]
    if logprobs is None:
        return {}
    first = logprobs["content"][0]
    got: dict[int, float] = {}
    for entry in [first, *(first.get("top_logprobs") or [])]:
        token = entry["token"]
        if not isinstance(token, str):
            raise _BadAnswer("a log-prob entry's token is not a string")
        if token.startswith(_TOKEN_ID_PREFIX):
            got[int(token[len(_TOKEN_ID_PREFIX) :])] = float(entry["logprob"])
    return got


def _parse_sglang_log_probs(answer: dict) -> dict[int, float]:
    """SGLang: meta_info.output_token_ids_logprobs[0] is a list of [logprob, token_id, text] for the asked ids."""
    steps = answer["meta_info"].get("output_token_ids_logprobs")
    if not steps:
        return {}
    return {int(entry[1]): float(entry[0]) for entry in steps[0]}

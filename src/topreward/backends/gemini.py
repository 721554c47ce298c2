"""Gemini backend: Google's hosted Gemini models through the google-genai SDK (`topreward[gemini]`).

What it offers (`topreward.backends.base`):
  * `generation`: `chat(parts, generation)`, one user turn of text, images and videos. `Generation` maps to
    the request's `maxOutputTokens`, `stopSequences` (at most 5), `temperature` and `seed`.
  * `multi_image`: several images in one chat turn. The capability's `image_log_probs` is not offered
    (it needs log-probs, see below), so methods that need both fail at `require()` on `log_probs`.
  * Not `log_probs`, not `prefix_sharing`. Gemini can return the log-prob of each generated token and
    of the top 1-20 candidates at each step (`responseLogprobs`, `logprobs`), but not the log-prob of a
    token you choose, and not of a given continuation (no teacher forcing). A `Request` asks for
    arbitrary token ids and spans, so this backend cannot answer it exactly in general, and it does not
    guess a value from the top-k list. What it does offer exactly: `chat_log_probs(...)` returns the
    generated text with the chosen and top candidate tokens per step, and `GeminiAnswer.log_prob(token)`
    gives a token's log-prob only when the API returned it at that step, else an error naming the limit.
    The values are the API's own; Google does not say whether they come before or after temperature
    scaling, so ask with temperature 0.

Videos: a `ModelVideo` goes in as its frames, in order, as inline images (JPEG by default, PNG on
request), not as an mp4. Gemini resamples an uploaded video at its own rate (1 fps by default), so the
model would not see the frames the sampler chose; images keep exactly those frames, decoded once, without
a lossy video codec, at about the same token cost per frame. Inline data counts towards the API's 20 MB
request limit: lower `max_frames` or `max_pixels` when the error says so.

The API key comes from the environment (`GOOGLE_API_KEY`, else `GEMINI_API_KEY`: the SDK's own order). It
is never logged, never in `describe()`, reprs or error messages; an error body that echoes it is redacted.
Every request has a timeout; 408, 429 and 5xx answers and dropped connections are retried `retries` times
with exponential back-off; any other error names the model and the HTTP status.

Token ids: Gemini's tokenizer is not exposed by the Gemini API (count_tokens gives a count, not ids), so
`token_id` and `tokenize` raise.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from topreward.backends.base import GENERATION, MULTI_IMAGE, Generation, ModelVideo, check_parts, cut_at_stop
from topreward.backends.remote import Secret, Transient, key_from_env, with_retries
from topreward.extras import optional

if TYPE_CHECKING:
    from topreward.backends.config import BackendConfig

logger = logging.getLogger(__name__)

__all__ = ["GeminiAnswer", "GeminiBackend", "GeminiError", "GenerationStep", "TokenLogProb"]

DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
ENV_KEYS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
API_VERSION = "v1beta"
MAX_STOP_SEQUENCES = 5
MAX_TOP_CANDIDATES = 20
MAX_INLINE_BYTES = 20 * 1000 * 1000  # the API's request-size limit for inline data (base64 included)
MAX_BACKOFF_S = 60.0


class GeminiError(RuntimeError):
    """The Gemini API refused or failed a request (the message names the model and the HTTP status)."""

    def __init__(self, message: str, *, model: str, code: int | None = None, status: str | None = None):
        super().__init__(message)
        self.model, self.code, self.status = model, code, status


def _import_genai():
    genai = optional("google.genai", "gemini", "the Gemini backend")
    from google.genai import errors, types

    return genai, types, errors


def api_key_from_env() -> str:
    """The Gemini API key from `GOOGLE_API_KEY` or `GEMINI_API_KEY`; error naming both if neither is set."""
    key = key_from_env(ENV_KEYS)
    if key is None:
        raise ValueError(
            "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment; "
            "create a key at https://aistudio.google.com/apikey"
        )
    return key


@dataclass(frozen=True)
class TokenLogProb:
    """One token as the API reports it (its text, leading space included) and its log-prob."""

    token: str
    log_prob: float
    token_id: int | None = None


@dataclass(frozen=True)
class GenerationStep:
    """One decoding step: the token generated and the top candidates the API returned (best first).

    The chosen token may be missing from `top` (the API samples it after its own truncation)."""

    chosen: TokenLogProb
    top: tuple[TokenLogProb, ...]


@dataclass(frozen=True)
class GeminiAnswer:
    """Generated text and, per decoding step, the log-probs the API returned."""

    text: str
    steps: tuple[GenerationStep, ...]
    model: str

    def log_prob(self, token: str, step: int = 0) -> float:
        """The exact log-prob of `token` (exact text, leading space included) at decoding `step`.

        Available only when the API returned that token at that step, as the generated token or a top
        candidate; otherwise an error (a value outside the top-k list is unknown, and is not guessed).
        """
        if not 0 <= step < len(self.steps):
            raise ValueError(
                f"step {step} is out of range: the answer of {self.model} has {len(self.steps)} steps"
            )
        s = self.steps[step]
        for cand in (s.chosen, *s.top):
            if cand.token == token:
                return cand.log_prob
        seen = [s.chosen.token] + [c.token for c in s.top if c.token != s.chosen.token]
        raise ValueError(
            f"the log-prob of {token!r} at step {step} is not available from {self.model}: the Gemini API "
            f"returns only the generated token and the top {len(s.top)} candidates ({seen}); it cannot give "
            "an arbitrary token's log-prob. Raise `top` (at most 20), or use backend='transformers' for "
            "exact log-probs of any token"
        )


class GeminiBackend:
    """A Gemini model behind Google's API (`backend="gemini"`): generation with text, images and videos.

    Args:
        model: a Gemini model name, e.g. "gemini-2.5-flash".
        base_url: the API endpoint (default: Google's); a proxy or a test double.
        timeout: seconds per request attempt.
        retries: further attempts after a 408/429/5xx answer or a dropped connection.
        backoff: seconds before the first retry; doubles each retry (capped at 60 s).
        image_format: "jpeg" (smaller, fits more frames in the 20 MB request limit) or "png" (lossless).
        jpeg_quality: JPEG quality, 1-95.
        thinking_budget: tokens a thinking model may spend on thoughts (0 = off, None = the model's
            default). Thoughts count towards `Generation.max_new_tokens`.
    """

    name = "gemini"
    # Gemini exposes no patch grid; 16 keeps frame sides even (JPEG chroma subsampling) and the resize short.
    patch_factor = 16

    def __init__(
        self,
        model: str = DEFAULT_GEMINI_MODEL,
        *,
        base_url: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        image_format: Literal["jpeg", "png"] = "jpeg",
        jpeg_quality: int = 90,
        thinking_budget: int | None = None,
    ) -> None:
        if not model or not isinstance(model, str):
            raise ValueError(
                f"model must be a Gemini model name such as {DEFAULT_GEMINI_MODEL!r}, got {model!r}"
            )
        if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if not (isinstance(backoff, (int, float)) and backoff >= 0):
            raise ValueError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        if image_format not in ("jpeg", "png"):
            raise ValueError(f"image_format={image_format!r}; choose 'jpeg' or 'png'")
        if not 1 <= jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {jpeg_quality}")
        if thinking_budget is not None and thinking_budget < 0:
            raise ValueError(
                f"thinking_budget must be >= 0 or None (the model's default), got {thinking_budget}"
            )
        if "/" in model.removeprefix("models/").removeprefix("tunedModels/"):
            raise ValueError(
                f"model {model!r} looks like a Hugging Face id; with backend='gemini' pass a Gemini model "
                f"name, e.g. model={DEFAULT_GEMINI_MODEL!r}"
            )
        genai, self._types, self._errors = _import_genai()
        self._key = Secret(api_key_from_env())
        self.model_id = model.removeprefix("models/")
        self.timeout, self.retries, self.backoff = float(timeout), retries, float(backoff)
        self.image_format, self.jpeg_quality, self.thinking_budget = (
            image_format,
            jpeg_quality,
            thinking_budget,
        )
        self.capabilities = frozenset({GENERATION, MULTI_IMAGE})
        http_options = self._types.HttpOptions(
            base_url=base_url, api_version=API_VERSION, timeout=max(1, round(self.timeout * 1000))
        )
        # vertexai=False: an environment meant for Vertex AI must not reroute these calls
        self._client = genai.Client(api_key=self._key.value, vertexai=False, http_options=http_options)

    @classmethod
    def from_config(cls, config: BackendConfig) -> GeminiBackend:
        return cls(config.model, base_url=config.url, timeout=config.timeout, retries=config.retries)

    @classmethod
    def config_patch_factor(cls, config: BackendConfig) -> int:
        return cls.patch_factor

    def __repr__(self) -> str:
        return f"GeminiBackend(model={self.model_id!r}, timeout={self.timeout}, retries={self.retries})"

    def __getstate__(self):
        raise TypeError(
            "a GeminiBackend is not picklable (it holds a client and an API key); build one in each process "
            "with BackendConfig(backend='gemini', model=...).load()"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "revision": None,
            "family": "gemini",
            "backend": self.name,
            "api_version": API_VERSION,
            "frames_as": f"images/{self.image_format}",
        }

    # ---- what the API does not expose ---------------------------------------------------------------
    def _unavailable(self, what: str, fix: str) -> ValueError:
        return ValueError(f"backend 'gemini' (model {self.model_id}): {what}; {fix}")

    def token_id(self, word: str) -> int:
        raise self._unavailable(
            f"token ids are not available (the Gemini API does not expose its tokenizer), so {word!r} "
            "has none",
            "methods that read a token's log-prob need backend='transformers'",
        )

    def tokenize(self, text: str) -> list[int]:
        raise self._unavailable(
            "tokenize is not available (the Gemini API does not expose its tokenizer)",
            "use backend='transformers'",
        )

    def prompt_text(self, style: str, prompt: str):
        raise self._unavailable(
            "prompt styles place a video in a raw token stream, which the Gemini API does not accept",
            "give text, images and videos as chat parts (`chat`)",
        )

    def video_cache(self, video: ModelVideo, before: str, *, path=None, batch_size=None):
        raise self._unavailable(
            "no video cache: an arbitrary token's log-prob is not available from the Gemini API",
            "use backend='transformers' for log-prob methods",
        )

    def image_log_probs(self, prompt: str, images: list, requests: list, *, path=None, batch_size=None):
        raise self._unavailable(
            "image_log_probs needs an arbitrary token's log-prob, which the Gemini API does not give",
            "use backend='transformers'",
        )

    # ---- generation ---------------------------------------------------------------------------------
    def chat(self, parts: list, generation: Generation | None = None) -> str:
        """The model's answer to one user turn of text, images (uint8 (H, W, 3)) and videos (`ModelVideo`,
        sent as its frames in order); cut before the first stop string."""
        return self._generate(parts, generation or Generation(), top=None).text

    def chat_log_probs(
        self, parts: list, generation: Generation | None = None, *, top: int = 5
    ) -> GeminiAnswer:
        """Like `chat`, plus per decoding step the generated token and the `top` candidates (1-20), with the
        log-probs the API returns (`GeminiAnswer.log_prob(token, step)`). Not every model offers them."""
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP_CANDIDATES:
            raise ValueError(
                f"top must be an integer in 1..{MAX_TOP_CANDIDATES} (the API's limit), got {top!r}"
            )
        return self._generate(parts, generation or Generation(), top=top)

    def _generate(self, parts: list, generation: Generation, top: int | None) -> GeminiAnswer:
        check_parts(parts)
        if len(generation.stop) > MAX_STOP_SEQUENCES:
            raise ValueError(
                f"the Gemini API takes at most {MAX_STOP_SEQUENCES} stop strings, got {len(generation.stop)}"
            )
        t = self._types
        config = t.GenerateContentConfig(
            max_output_tokens=generation.max_new_tokens,
            stop_sequences=list(generation.stop) or None,
            temperature=float(generation.temperature),
            seed=int(generation.seed),
            top_p=float(generation.top_p) if generation.top_p < 1 else None,
            top_k=int(generation.top_k) if generation.top_k else None,
            system_instruction=generation.system,
            response_logprobs=True if top is not None else None,
            logprobs=top,
            thinking_config=(
                t.ThinkingConfig(thinking_budget=self.thinking_budget)
                if self.thinking_budget is not None
                else None
            ),
        )
        contents = [t.Content(role="user", parts=self._parts(parts))]
        response = self._send(contents, config)
        return self._answer(response, generation, top)

    def _parts(self, parts: list) -> list:
        t = self._types
        out, total = [], 0
        for p in parts:
            if isinstance(p, str):
                out.append(t.Part.from_text(text=p))
                continue
            for image in p.frames if isinstance(p, ModelVideo) else [p]:
                data = self._encode(image)
                total += len(data)
                out.append(t.Part.from_bytes(data=data, mime_type=f"image/{self.image_format}"))
        if total * 4 / 3 > MAX_INLINE_BYTES:  # sent as base64
            raise ValueError(
                f"the images of this prompt are {total * 4 / 3 / 1e6:.1f} MB as base64, over the Gemini "
                f"API's {MAX_INLINE_BYTES / 1e6:.0f} MB request limit; lower `max_frames` or `max_pixels`, "
                "or use image_format='jpeg'"
            )
        return out

    def _encode(self, image: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        if self.image_format == "png":
            Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
        else:
            Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=self.jpeg_quality)
        return buf.getvalue()

    def _send(self, contents: list, config: Any):
        """generate_content with bounded retries; errors name the model and status, never the key."""
        transient = _transient_errors()
        last: dict[str, Any] = {}
        tries = [0]

        def attempt():
            tries[0] += 1
            # failures are raised outside the `except` blocks, so the SDK's exception (whose text may echo
            # the key) is never chained into a traceback
            try:
                return self._client.models.generate_content(
                    model=self.model_id, contents=contents, config=config
                )
            except self._errors.APIError as e:
                code, status = e.code, e.status
                detail = self._key.redact(str(e.message or e.status or ""))[:500]
                retry = code in (408, 429) or 500 <= (code or 0) <= 599
            except transient as e:
                code, status = None, type(e).__name__
                detail = self._key.redact(str(e))[:500]
                retry = True
            what = f"HTTP {code} {status or ''}".strip() if code is not None else f"no answer ({status})"
            last.update(code=code, status=status, what=what, detail=detail)
            if retry:
                raise Transient(what)
            raise self._error(tries[0], **last)

        return with_retries(
            attempt,
            retries=self.retries,
            backoff=self.backoff,
            max_backoff=MAX_BACKOFF_S,
            give_up=lambda reason, attempts: self._error(attempts, **last),
            what=f"Gemini model {self.model_id}",
        )

    def _error(self, attempts: int, *, code=None, status=None, what="", detail="") -> GeminiError:
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return GeminiError(
            f"Gemini model {self.model_id!r}: {what}{tried}: {detail}{_hint(code)}",
            model=self.model_id,
            code=code,
            status=status,
        )

    def _answer(self, response: Any, generation: Generation, top: int | None) -> GeminiAnswer:
        candidates = response.candidates or []
        if not candidates:
            feedback = getattr(response, "prompt_feedback", None)
            reason = getattr(feedback, "block_reason", None)
            raise GeminiError(
                f"Gemini model {self.model_id!r} returned no answer"
                + (f": the prompt was blocked ({_enum_name(reason)})" if reason else ""),
                model=self.model_id,
            )
        cand = candidates[0]
        content_parts = (cand.content.parts if cand.content else None) or []
        text = "".join(p.text for p in content_parts if p.text and not p.thought)
        finish = _enum_name(cand.finish_reason)
        if not text and finish not in (None, "STOP"):
            hint = (
                f"; raise max_new_tokens (now {generation.max_new_tokens}): a thinking model spends output "
                "tokens on thoughts first (or set thinking_budget=0)"
                if finish == "MAX_TOKENS"
                else ""
            )
            raise GeminiError(
                f"Gemini model {self.model_id!r} returned no text (finish reason {finish}){hint}",
                model=self.model_id,
            )
        steps: tuple[GenerationStep, ...] = ()
        if top is not None:
            steps = self._steps(cand.logprobs_result)
        return GeminiAnswer(cut_at_stop(text, generation.stop), steps, self.model_id)

    def _steps(self, result: Any) -> tuple[GenerationStep, ...]:
        if result is None or not result.chosen_candidates:
            raise GeminiError(
                f"Gemini model {self.model_id!r} returned no log-probs; not every Gemini model offers them "
                "(responseLogprobs); use another model, or backend='transformers'",
                model=self.model_id,
            )
        tops = list(result.top_candidates or [])
        steps = []
        for i, chosen in enumerate(result.chosen_candidates):
            top = (tops[i].candidates or []) if i < len(tops) else []
            steps.append(GenerationStep(_token(chosen), tuple(_token(c) for c in top)))
        return tuple(steps)


def _token(c: Any) -> TokenLogProb:
    return TokenLogProb(c.token or "", float(c.log_probability), c.token_id)


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def _hint(code: int | None) -> str:
    hints = {
        400: "; check the model name, the parts and the generation options",
        401: "; check the API key in GEMINI_API_KEY / GOOGLE_API_KEY",
        403: "; check the API key in GEMINI_API_KEY / GOOGLE_API_KEY and its access to this model",
        404: "; check the model name (e.g. 'gemini-2.5-flash')",
        429: "; rate limit or quota exhausted: wait, or raise `retries`",
    }
    if code is None:
        return "; check the network, or raise `timeout`"
    return hints.get(code, "")


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and refused connections of the SDK's HTTP client (httpx or httpx2, whichever it uses)."""
    try:
        from google.genai import _api_client
    except ImportError:
        return (TimeoutError, ConnectionError)
    found = getattr(_api_client, "_HTTPX_TRANSIENT_EXC", ())
    return tuple(found) or (TimeoutError, ConnectionError)

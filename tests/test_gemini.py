"""The Gemini backend against a loopback test double of the Gemini API (`gemini_test_double`): requests as
the API documents them, answers and log-probs parsed, retries, errors, and the API key never leaking."""

from __future__ import annotations

import base64
import io
import logging
import sys
import traceback

import numpy as np
import pytest

pytest.importorskip("google.genai")

from topreward.backends import gemini as gemini_module  # noqa: E402
from topreward.backends.base import LOG_PROBS, Generation, ModelVideo, require  # noqa: E402
from topreward.backends.gemini import GeminiBackend, GeminiError  # noqa: E402

from .gemini_test_double import GeminiTestDouble, error_reply, text_reply  # noqa: E402

KEY = "AIzaTEST-not-a-real-key-7f3c9e"


@pytest.fixture(scope="module")
def double():
    server = GeminiTestDouble().start()
    yield server
    server.stop()


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


@pytest.fixture
def gemini(double, key_env):
    double.reset()
    return GeminiBackend("gemini-2.5-flash", base_url=double.url, timeout=5, retries=3, backoff=0.01)


def image(h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def video(n: int = 3) -> ModelVideo:
    frames = np.stack([image(16, 16, seed=i) for i in range(n)])
    return ModelVideo(frames, np.arange(0, 2 * n, 2), 10.0)


def decode(part: dict) -> tuple[str, np.ndarray]:
    from PIL import Image

    inline = part.get("inlineData") or part["inline_data"]
    mime = inline.get("mimeType") or inline["mime_type"]
    data = base64.urlsafe_b64decode(inline["data"])  # the SDK sends URL-safe base64, which the API accepts
    return mime, np.asarray(Image.open(io.BytesIO(data)))


def test_chat_sends_text_images_and_video_frames_in_order(gemini, double):
    parts = ["Look:", image(), video(3), "How far is the task?"]
    gen = Generation(max_new_tokens=17, stop=("\n\n", "END"), temperature=0.7, seed=5)
    double.reply(200, text_reply("Half done.END ignored"))
    answer = gemini.chat(parts, gen)
    assert answer == "Half done."  # cut before the stop string even if the server did not stop there
    (req,) = double.requests
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY  # the key travels in a header, not the URL
    assert KEY not in req.path
    assert req.body["contents"][0]["role"] == "user"
    kinds = ["text" if "text" in p else "image" for p in req.parts]
    assert kinds == ["text", "image", "image", "image", "image", "text"]
    assert req.parts[0]["text"] == "Look:" and req.parts[-1]["text"] == "How far is the task?"
    mime, first = decode(req.parts[1])
    assert mime == "image/jpeg" and first.shape == (32, 48, 3)
    assert [decode(p)[1].shape for p in req.parts[2:5]] == [(16, 16, 3)] * 3
    assert req.generation_config == {
        "maxOutputTokens": 17,
        "stopSequences": ["\n\n", "END"],
        "temperature": 0.7,
        "seed": 5,
    }


def test_greedy_defaults_and_lossless_png(double, key_env):
    double.reset()
    backend = GeminiBackend(
        "models/gemini-2.5-pro", base_url=double.url, image_format="png", thinking_budget=0
    )
    img = image(20, 28, seed=3)
    assert backend.chat(["Describe", img]) == "1 texts, 1 images"
    (req,) = double.requests
    assert req.model == "gemini-2.5-pro"
    mime, decoded = decode(req.parts[1])
    assert mime == "image/png" and np.array_equal(decoded, img)
    cfg = req.generation_config
    assert cfg["temperature"] == 0.0 and cfg["seed"] == 0 and cfg["maxOutputTokens"] == 512
    assert "stopSequences" not in cfg and "responseLogprobs" not in cfg
    # the SDK sends some nested fields in snake_case; the API's JSON parser takes both spellings
    assert cfg["thinkingConfig"] in ({"thinkingBudget": 0}, {"thinking_budget": 0})


LOGPROBS = {
    "chosenCandidates": [
        {"token": " True", "logProbability": -0.105},
        {"token": ".", "logProbability": -0.01},
    ],
    "topCandidates": [
        {
            "candidates": [
                {"token": " True", "logProbability": -0.105},
                {"token": " False", "logProbability": -2.4},
                {"token": " Yes", "logProbability": -5.0},
            ]
        },
        {"candidates": [{"token": ".", "logProbability": -0.01}]},
    ],
}


def test_log_probs_parsed_exactly_and_unknown_tokens_refused(gemini, double):
    double.reply(200, text_reply(" True.", logprobs=LOGPROBS))
    answer = gemini.chat_log_probs(["Is the task done?", image()], Generation(max_new_tokens=2), top=3)
    cfg = double.requests[0].generation_config
    assert cfg["responseLogprobs"] is True and cfg["logprobs"] == 3
    assert answer.text == " True."
    assert [s.chosen.token for s in answer.steps] == [" True", "."]
    assert answer.log_prob(" True") == -0.105
    assert answer.log_prob(" False") == -2.4  # a returned top candidate: exact
    assert answer.log_prob(".", step=1) == -0.01
    with pytest.raises(ValueError, match=r"' Nope' at step 0 is not available.*top 3 candidates"):
        answer.log_prob(" Nope")
    with pytest.raises(ValueError, match="not available"):
        answer.log_prob(" False", step=1)  # a token seen at another step is not guessed here
    with pytest.raises(ValueError, match="out of range"):
        answer.log_prob(" True", step=2)


def test_log_probs_missing_or_bad_top(gemini, double):
    double.reply(200, text_reply("True"))
    with pytest.raises(GeminiError, match="returned no log-probs"):
        gemini.chat_log_probs(["Done?"], top=2)
    with pytest.raises(ValueError, match=r"top must be an integer in 1..20"):
        gemini.chat_log_probs(["Done?"], top=21)


def test_retries_503_then_succeeds(gemini, double, caplog):
    double.reply(503, error_reply(503, "UNAVAILABLE", "overloaded"))
    double.reply(429, error_reply(429, "RESOURCE_EXHAUSTED", "slow down"))
    with caplog.at_level(logging.WARNING, logger="topreward.backends.gemini"):
        assert gemini.chat(["Hello"]) == "1 texts, 0 images"
    assert len(double.requests) == 3
    assert "HTTP 503" in caplog.text and "HTTP 429" in caplog.text and "gemini-2.5-flash" in caplog.text


def test_retries_are_bounded(gemini, double):
    for _ in range(4):
        double.reply(500, error_reply(500, "INTERNAL", "boom"))
    with pytest.raises(GeminiError, match=r"'gemini-2.5-flash': HTTP 500 INTERNAL after 4 attempts") as info:
        gemini.chat(["Hello"])
    assert len(double.requests) == 4 and info.value.code == 500


def test_400_is_not_retried_and_never_shows_the_key(gemini, double, caplog):
    echo = f"API key not valid: {KEY}. Please pass a valid API key."
    double.reply(400, error_reply(400, "INVALID_ARGUMENT", echo))
    with caplog.at_level(logging.DEBUG), pytest.raises(GeminiError) as info:
        gemini.chat(["Hello"])
    err = info.value
    message = str(err)
    assert "gemini-2.5-flash" in message and "HTTP 400 INVALID_ARGUMENT" in message
    assert "API key not valid: [redacted]" in message
    assert err.code == 400 and len(double.requests) == 1
    shown = "".join(traceback.format_exception(type(err), err, err.__traceback__)) + repr(err)
    assert KEY not in shown
    # the SDK's error (the key in its text) is not chained into the traceback
    assert err.__cause__ is None and err.__context__ is None
    assert KEY not in caplog.text


def test_key_never_in_logs_results_or_reprs(gemini, double, caplog):
    double.reply(503, error_reply(503, "UNAVAILABLE", f"echo {KEY}"))
    with caplog.at_level(logging.DEBUG):
        text = gemini.chat(["Hello", video(2)])
        double.reply(200, text_reply(" True", logprobs=LOGPROBS))
        answer = gemini.chat_log_probs(["Hello"], top=3)
    assert caplog.records  # the retry was logged (and so was the SDK's HTTP traffic at DEBUG)
    for shown in (caplog.text, text, repr(answer), repr(gemini), str(vars(gemini)), str(gemini.describe())):
        assert KEY not in shown
    assert gemini.describe() == {
        "id": "gemini-2.5-flash",
        "revision": None,
        "family": "gemini",
        "backend": "gemini",
        "api_version": "v1beta",
        "frames_as": "images/jpeg",
    }
    with pytest.raises(TypeError, match="not picklable"):
        import pickle

        pickle.dumps(gemini)


def test_timeout_is_an_error_naming_the_model(double, key_env):
    double.reset()
    double.delay_s = 1.5
    backend = GeminiBackend("gemini-2.5-flash", base_url=double.url, timeout=0.3, retries=1, backoff=0.01)
    with pytest.raises(
        GeminiError, match=r"'gemini-2.5-flash': no answer \(\w*Timeout\w*\) after 2 attempts"
    ):
        backend.chat(["Hello"])
    assert len(double.requests) == 2
    double.delay_s = 0.0


def test_missing_key_names_the_variables(monkeypatch, double):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GEMINI_API_KEY.*GOOGLE_API_KEY"):
        GeminiBackend("gemini-2.5-flash", base_url=double.url)


def test_google_api_key_also_works(monkeypatch, double):
    double.reset()
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY + "-google")
    GeminiBackend("gemini-2.5-flash", base_url=double.url).chat(["Hi"])
    assert double.requests[0].headers["x-goog-api-key"] == KEY + "-google"


def test_no_log_probs_capability_and_clear_errors(gemini):
    assert gemini.capabilities == {"generation", "multi_image"}
    with pytest.raises(ValueError, match=r"needs the backend capability 'log_probs'.*'gemini' lacks"):
        require(gemini, {LOG_PROBS}, "topreward")
    with pytest.raises(ValueError, match="token ids are not available"):
        gemini.token_id(" True")
    with pytest.raises(ValueError, match="tokenize is not available"):
        gemini.tokenize("hi")
    with pytest.raises(ValueError, match="no video cache"):
        gemini.video_cache(video(), "")
    with pytest.raises(ValueError, match="image_log_probs"):
        gemini.image_log_probs("", [], [])


def test_bad_inputs(gemini, double, monkeypatch):
    with pytest.raises(ValueError, match="at most 5 stop strings"):
        gemini.chat(["Hi"], Generation(stop=tuple("abcdef")))
    with pytest.raises(ValueError, match="at least one text part"):
        gemini.chat([image()])
    with pytest.raises(TypeError, match="chat part 1"):
        gemini.chat(["Hi", np.zeros((4, 4), np.float32)])
    monkeypatch.setattr(gemini_module, "MAX_INLINE_BYTES", 1000)
    with pytest.raises(ValueError, match="request limit; lower `max_frames` or `max_pixels`"):
        gemini.chat(["Hi", video(4)])
    assert double.requests == []
    for kwargs, match in [
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"image_format": "gif"}, "image_format"),
        ({"thinking_budget": -2}, "thinking_budget"),
    ]:
        with pytest.raises(ValueError, match=match):
            GeminiBackend("gemini-2.5-flash", base_url=double.url, **kwargs)


def test_no_text_errors(gemini, double):
    double.reply(
        200, {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "MAX_TOKENS"}]}
    )
    with pytest.raises(
        GeminiError, match=r"no text \(finish reason MAX_TOKENS\); raise max_new_tokens \(now 8\)"
    ):
        gemini.chat(["Hi"], Generation(max_new_tokens=8))
    double.reply(200, {"promptFeedback": {"blockReason": "SAFETY"}})
    with pytest.raises(GeminiError, match=r"prompt was blocked \(SAFETY\)"):
        gemini.chat(["Hi"])


def test_thoughts_are_not_part_of_the_answer(gemini, double):
    body = text_reply("Answer: 40%")
    body["candidates"][0]["content"]["parts"].insert(0, {"text": "let me think", "thought": True})
    double.reply(200, body)
    assert gemini.chat(["Hi"]) == "Answer: 40%"


def test_backend_config_loads_gemini(gemini, double):
    from topreward.backends.config import BACKENDS, BackendConfig

    assert "gemini" in BACKENDS
    cfg = BackendConfig(backend="gemini", model="gemini-2.5-flash", url=double.url, timeout=7.0, retries=1)
    backend = cfg.load()
    assert isinstance(backend, GeminiBackend) and backend.model_id == "gemini-2.5-flash"
    assert (backend.timeout, backend.retries) == (7.0, 1)
    assert backend.chat(["Hi"]) == "1 texts, 0 images" and len(double.requests) == 1  # went to `url`
    assert cfg.patch_factor() == GeminiBackend.patch_factor


def test_missing_sdk_names_the_extra(monkeypatch, key_env):
    monkeypatch.setitem(sys.modules, "google.genai", None)
    with pytest.raises(ImportError, match=r"pip install 'topreward\[gemini\]'"):
        GeminiBackend("gemini-2.5-flash")


def test_hub_id_is_refused_with_the_fix(key_env):
    with pytest.raises(ValueError, match=r"looks like a Hugging Face id.*model='gemini-2.5-flash'"):
        GeminiBackend("Qwen/Qwen3-VL-8B-Instruct")

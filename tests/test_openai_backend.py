"""The OpenAI-compatible server backend against real server processes on loopback.

* Generation: `transformers serve` running the tiny Qwen3-VL on CPU, offline; its greedy answers equal the
  in-process `HFBackend.chat` on the same images.
* Log-probs: `vllm_test_double` (vLLM's and SGLang's documented request/answer shapes, real log-probs from
  the tiny model); TOPReward over the server equals the in-process image path to 1e-4.
* Failure modes: down, slow, HTTP 500 then success, garbage, out-of-vocabulary ids, a server without the
  per-token-id log-prob field, the API key kept out of everything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import colour_frames
from tests.vllm_test_double import QWEN_IMAGE_MARKER, ServerTestDouble
from topreward.backends.base import Generation, ModelVideo, Request
from topreward.backends.config import BackendConfig
from topreward.backends.openai_api import ImageURL, OpenAIServerBackend, ServerError
from topreward.episode import as_episode
from topreward.scorers.registry import load_scorer
from topreward.scorers.topreward import format_prompt

INSTRUCTION = "put the pen into the cup"


@pytest.fixture(scope="module")
def double(qwen3_backend, tiny_model_dirs):
    d = ServerTestDouble(qwen3_backend, "tiny-qwen3-vl")
    d.url = d.start()
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def _reset(request):
    if "double" in request.fixturenames:
        d = request.getfixturevalue("double")
        d.calls.clear()
        d.fail_next = d.garbage_next = 0
        d.delay, d.honour_token_ids = 0.0, True


def server_backend(double, **kw) -> OpenAIServerBackend:
    kw.setdefault("backoff", 0.01)
    return OpenAIServerBackend("tiny-qwen3-vl", url=double.url, **kw)


def in_process(qwen3_backend, before: str, after: str, frames: np.ndarray, ids) -> np.ndarray:
    """The in-process image path (prefix-shared) on the same frames: one row per prefix length."""
    rows = []
    for k in range(1, len(frames) + 1):
        (answer,) = qwen3_backend.image_log_probs(
            before + QWEN_IMAGE_MARKER * k, list(frames[:k]), [Request(k, after, tuple(ids))], path="fast"
        )
        rows.append(answer.next)
    return np.stack(rows)


def topreward_over(backend, **options):
    scorer = load_scorer("topreward", backend=backend, num_prefixes=None, **options)
    episode = as_episode(colour_frames(4, 64, 64), INSTRUCTION, 2.0)
    return scorer, scorer.prepare(episode), scorer.score(episode)


# ---- log-probs: TOPReward over the server equals the in-process numbers --------------------------------
@pytest.mark.parametrize("server", ["vllm", "sglang"])
def test_topreward_over_server_equals_in_process(double, qwen3_backend, server):
    backend = server_backend(double, server=server, concurrency=3)
    scorer, video, result = topreward_over(backend)
    ids = scorer.token_ids
    assert ids == (qwen3_backend.token_id(" True"), qwen3_backend.token_id(" False"))
    expected = in_process(qwen3_backend, "<|im_start|>user\n", format_prompt(INSTRUCTION), video.frames, ids)
    got = np.stack([result.signals["log_p_true"], result.signals["log_p_false"]], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert result.model["backend"] == "openai" and result.model["url"] == double.url
    scored = [(p, b) for p, b, _ in double.calls if p in ("/v1/chat/completions", "/generate")]
    assert len(scored) == 4  # one request per prefix
    if server == "vllm":
        for _, body in scored:
            assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
            assert body["logprob_token_ids"] == list(ids) and body["return_tokens_as_token_ids"] is True
        # each frame keeps one id in every prefix, so the server's prefix cache can reuse it
        uuids = [[part["uuid"] for part in b["messages"][0]["content"][:-1]] for _, b in scored]
        longest = max(uuids, key=len)
        assert len(set(longest)) == 4 and all(u == longest[: len(u)] for u in uuids)
    else:
        assert all(b["token_ids_logprob"] == list(ids) for _, b in scored)


def test_chat_prompt_style_over_vllm(double, qwen3_backend):
    _, video, result = topreward_over(server_backend(double), prompt_style="chat")
    ids = (qwen3_backend.token_id(" True"), qwen3_backend.token_id(" False"))
    after = format_prompt(INSTRUCTION) + "<|im_end|>\n<|im_start|>assistant\n"
    expected = in_process(qwen3_backend, "<|im_start|>user\n", after, video.frames, ids)
    np.testing.assert_allclose(result.signals["log_p_true"], expected[:, 0], atol=1e-4)
    assert all(b["add_generation_prompt"] is True for p, b, _ in double.calls if p == "/v1/chat/completions")


def test_streaming_extend_over_server(double, qwen3_backend):
    backend = server_backend(double)
    frames = colour_frames(3, 64, 64)
    video = ModelVideo(frames[:2], np.array([0, 1]), 2.0)
    prompt = backend.prompt_text("authors", format_prompt(INSTRUCTION))
    cache = backend.video_cache(video, prompt.before)
    cache.extend(frames[2:], [2])
    ids = (qwen3_backend.token_id(" True"),)
    answers = cache.score([Request(k, prompt.after, ids) for k in (1, 3)])
    expected = in_process(qwen3_backend, "<|im_start|>user\n", prompt.after, frames, ids)
    np.testing.assert_allclose(np.stack([a.next for a in answers]), expected[[0, 2]], atol=1e-4)


# ---- what is not offered, and options -----------------------------------------------------------------
def test_unsupported_requests_say_what_to_use(double):
    backend = server_backend(double)
    video = ModelVideo(colour_frames(2, 64, 64), np.array([0, 1]), 2.0)
    cache = backend.video_cache(video, backend.prompt_text("authors", "x").before)
    with pytest.raises(ValueError, match="instruction.*backend='transformers'"):
        cache.score([Request(1, " a b", span=(0, 2))])
    with pytest.raises(ValueError, match="lrm.*backend='transformers'"):
        backend.image_log_probs("p", [], [])
    with pytest.raises(ValueError, match="raw"):
        backend.prompt_text("raw", "x")
    with pytest.raises(ValueError, match="chat"):
        server_backend(double, server="sglang").prompt_text("chat", "x")
    with pytest.raises(ValueError, match="prompt_text"):
        backend.video_cache(video, "<|im_start|>user\n")


def test_backend_config_builds_the_server_backend(double):
    with pytest.raises(ValueError, match="url="):
        BackendConfig(backend="openai")
    with pytest.raises(ValueError, match="concurrency"):
        BackendConfig(backend="openai", url=double.url, concurrency=0)
    cfg = BackendConfig(
        backend="openai", url=double.url + "/v1/", model="tiny-qwen3-vl", timeout=5, retries=0
    )
    assert cfg.patch_factor() == 32
    backend = cfg.load()
    assert isinstance(backend, OpenAIServerBackend)
    assert backend.base_url == double.url and backend.timeout == 5 and backend.retries == 0
    assert backend.describe() == {
        "id": "tiny-qwen3-vl",
        "revision": None,
        "backend": "openai",
        "server": "vllm",
        "url": double.url,
    }


# ---- failure modes --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    backend = OpenAIServerBackend("m", url=url, retries=2, backoff=0.01, timeout=2)
    t0 = time.perf_counter()
    with pytest.raises(ServerError, match=f"{url}/tokenize.*3 attempt"):
        backend.token_id(" True")
    assert time.perf_counter() - t0 < 5


def test_slow_server_times_out(double):
    double.delay = 1.5
    backend = server_backend(double, timeout=0.3, retries=1)
    t0 = time.perf_counter()
    with pytest.raises(ServerError, match=r"timeout of 0.3 s.*2 attempt"):
        backend.tokenize(" True")
    assert time.perf_counter() - t0 < 1.5
    assert len(double.calls) == 2


def test_http_500_is_retried_then_succeeds(double, qwen3_backend):
    double.fail_next = 2
    backend = server_backend(double, retries=2)
    assert backend.token_id(" True") == qwen3_backend.token_id(" True")
    assert len(double.calls) == 3


def test_http_500_every_time_gives_up_naming_url_and_status(double):
    double.fail_next = 10
    with pytest.raises(ServerError, match=rf"{double.url}/tokenize answered HTTP 500.*2 attempt"):
        server_backend(double, retries=1).tokenize("x")


def test_garbage_answer_is_retried_then_reported(double):
    double.garbage_next = 10
    with pytest.raises(ServerError, match=r"not the expected JSON.*upstream.*2 attempt") as e:
        server_backend(double, retries=1).chat(["hello"])
    assert e.value.url == double.url + "/v1/chat/completions"


def test_token_not_in_vocabulary(double):
    backend = server_backend(double)
    with pytest.raises(ValueError, match="'ZebraQuixotic' is .* tokens"):
        backend.token_id("ZebraQuixotic")
    video = ModelVideo(colour_frames(1, 64, 64), np.array([0]), 2.0)
    cache = backend.video_cache(video, backend.prompt_text("authors", "x").before)
    with pytest.raises(ServerError, match=r"HTTP 400.*out of vocabulary") as e:
        cache.score([Request(1, "The answer is:", (10**6,))])
    chats = [c for c in double.calls if c[0] == "/v1/chat/completions"]
    assert e.value.status == 400 and len(chats) == 1  # a client error is not retried


@pytest.mark.parametrize(
    ("server", "feature"), [("vllm", "logprob_token_ids"), ("sglang", "token_ids_logprob")]
)
def test_server_without_token_id_log_probs_names_the_feature(double, server, feature):
    double.honour_token_ids = False
    backend = server_backend(double, server=server)
    video = ModelVideo(colour_frames(1, 64, 64), np.array([0]), 2.0)
    cache = backend.video_cache(video, backend.prompt_text("authors", "x").before)
    with pytest.raises(ServerError, match=feature):
        cache.score([Request(1, "The answer is:", (5, 6))])


def test_api_key_is_sent_but_never_shown(double, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    monkeypatch.setenv("TOPREWARD_API_KEY", "sk-secret-123")
    backend = server_backend(double)
    backend.tokenize("x")
    assert double.calls[-1][2]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(backend) + str(backend.describe()) + repr(vars(backend))
    double.fail_next = 10
    with pytest.raises(ServerError) as e:
        server_backend(double, retries=0).tokenize("y")
    assert "sk-secret" not in str(e.value)


def test_chat_over_double_cuts_at_stop_and_sends_generation(double):
    backend = server_backend(double)
    g = Generation(max_new_tokens=7, stop=("DONE",), temperature=0.5, seed=3)
    frame = colour_frames(1, 64, 64)[0]
    text = backend.chat([frame, ImageURL("http://example.invalid/a.png"), "What happens?"], g)
    assert text == "the robot grasps the pen. "
    body = double.calls[-1][1]
    assert (body["max_tokens"], body["stop"], body["temperature"], body["seed"]) == (7, ["DONE"], 0.5, 3)
    kinds = [p["type"] for p in body["messages"][0]["content"]]
    assert kinds == ["image_url", "image_url", "text"]
    assert body["messages"][0]["content"][1]["image_url"]["url"] == "http://example.invalid/a.png"


# ---- generation against a real `transformers serve` process ------------------------------------------
@pytest.fixture(scope="module")
def transformers_server(tiny_model_dirs, tmp_path_factory):
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        pytest.fail(f"{exe} missing: `transformers serve` ships with transformers; reinstall the venv")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    model = str(tiny_model_dirs["qwen3_vl"])
    args = [str(exe), "serve", model, "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    text = Path(log.name).read_text()[-3000:]
                    pytest.fail(f"`transformers serve` did not come up (exit {proc.poll()}):\n{text}")
                time.sleep(0.2)
        yield model, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_chat_over_transformers_serve_equals_in_process(transformers_server, qwen3_backend):
    model, url = transformers_server
    backend = OpenAIServerBackend(model, url=url, timeout=60, retries=1)
    frames = colour_frames(2, 64, 64)
    g = Generation(max_new_tokens=6)
    # the same tokens; `transformers serve` strips the leading space of an answer's text
    assert backend.chat([frames[0], "What is the robot doing?"], g) == qwen3_backend.chat(
        [frames[0], "What is the robot doing?"], g
    ).lstrip(" ")
    # a video goes in as its frames, in order, as images
    video = ModelVideo(frames, np.array([0, 1]), 2.0)
    assert backend.chat([video, "Describe."], g) == qwen3_backend.chat(
        [frames[0], frames[1], "Describe."], g
    ).lstrip(" ")


def test_sole_over_transformers_serve_equals_in_process(transformers_server, qwen3_backend, sample_video):
    """SOLE-R1 as its authors serve it (an OpenAI-compatible server): the system turn, the composite image,
    the previous answer fed back, step by step; greedy here so both sides must agree token for token."""
    model, url = transformers_server
    options = {"temperature": 0.0, "max_frames": 3, "max_new_tokens": 8}
    served = load_scorer(
        "sole", backend=OpenAIServerBackend(model, url=url, timeout=60, retries=1), **options
    )
    local = load_scorer("sole", backend=qwen3_backend, **options)
    a, b = served.score(str(sample_video), INSTRUCTION), local.score(str(sample_video), INSTRUCTION)
    assert [t.lstrip(" ") for t in a.signals["answers"]] == [t.lstrip(" ") for t in b.signals["answers"]]
    assert a.signals["read"] == b.signals["read"] and len(a.signals["answers"]) == 3


def test_sampling_settings_and_the_system_turn_reach_the_server(double):
    backend = server_backend(double)
    g = Generation(max_new_tokens=5, temperature=1.0, top_p=0.9, top_k=50, seed=3, system="Be brief.")
    assert backend.chat(["Describe."], g) == double.chat_reply
    _, body, _ = double.calls[-1]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (1.0, 0.9, 50, 3)
    backend.chat(["Describe."], Generation(max_new_tokens=5, top_p=0.9, top_k=50))  # greedy: not sent
    assert "top_p" not in double.calls[-1][1] and "top_k" not in double.calls[-1][1]


def test_cli_score_over_the_server(double, sample_video, tmp_path):
    from topreward.cli import main

    out = tmp_path / "result.json"
    argv = ["score", str(sample_video), INSTRUCTION, "--backend", "openai", "--url", double.url]
    argv += ["--model", "tiny-qwen3-vl", "--max-frames", "3", "--num-prefixes", "none", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"]["backend"] == "openai" and result["config"]["url"] == double.url
    assert len(result["values"]) == 3 and len(result["log_p_true"]) == 3

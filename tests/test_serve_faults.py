"""The reward server under faults, all on loopback: a killed server, a killed Ray replica, a stalled client,
a hung model call, a full queue, repeated pushes, and a session that runs for 10,000 steps."""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import topreward
from topreward.serve import HTTPError, ServeLimits, serve
from topreward.serve.client import ClientSession, RewardClient, ServerError

from .conftest import colour_frames, load_backend


@pytest.fixture(scope="module")
def scorer(tiny_model_dirs):
    return topreward.load_scorer("topreward", backend=load_backend(tiny_model_dirs, "qwen3_vl"))


@pytest.fixture
def start_server(scorer):
    """`start_server(**limits) -> (url, service)`; every server is stopped after the test."""
    running = []

    def start(port: int = 0, **limits):
        srv, service = serve(scorer, "127.0.0.1", port, ServeLimits(**limits))
        running.append((srv, service))
        return f"http://127.0.0.1:{srv.server_address[1]}", service

    yield start
    for srv, service in running:
        srv.shutdown()
        srv.server_close()
        service.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, JSON answer, headers) of one request, no retries."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}"), dict(resp.getheaders())
    finally:
        conn.close()


def frames_headers(frames: np.ndarray, seq: int | None = None) -> dict:
    headers = {"X-Shape": ",".join(map(str, frames.shape))}
    return headers if seq is None else {**headers, "X-Push-Seq": str(seq)}


def hold_worker(service, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make one-shot video jobs hang (at most 20 s) until `gate` is set: a hung model call; `inside` is set
    once the worker is in it."""
    gate, inside = threading.Event(), threading.Event()
    score_video = service._score_video

    def slow(*args):
        inside.set()
        gate.wait(20)
        return score_video(*args)

    monkeypatch.setattr(service, "_score_video", slow)
    return gate, inside


def wait_until(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the server"
        time.sleep(0.01)


def test_killed_server_is_a_clear_error_and_a_new_one_starts_on_its_port(
    start_server, tiny_model_dirs, tmp_path
):
    port = free_port()
    cmd = [sys.executable, "-m", "topreward.cli", "serve", "--model", str(tiny_model_dirs["qwen3_vl"])]
    env = {k: v for k, v in os.environ.items() if k != "TOPREWARD_TOKEN"}
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port), "--quiet"], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
        try:
            ready = selectors.DefaultSelector()
            ready.register(proc.stdout, selectors.EVENT_READ)
            assert ready.select(timeout=300), (tmp_path / "stderr.txt").read_text()[-2000:]
            assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
            url = f"http://127.0.0.1:{port}"
            client = RewardClient(url, timeout=10, retries=2, backoff=0.05)
            session = client.start("open the drawer", fps=10)
            session.push(colour_frames(2, 64, 96))
            assert session.score()["num_frames"] == 2
            proc.send_signal(signal.SIGKILL)  # mid-session: no goodbye
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with pytest.raises(ConnectionError, match=f"reward server at {url}.*3 tries"):
        session.push(colour_frames(1, 64, 96))
    with pytest.raises(ConnectionError, match=url):
        client.health()
    start_server(port=port)  # the same port at once: nothing of the dead server is in the way
    assert client.health()["sessions"] == 0
    with pytest.raises(ServerError, match="404.*no session"):
        session.score()  # the old session died with its server
    fresh = client.start("open the drawer", fps=10)
    fresh.push(colour_frames(2, 64, 96))
    assert fresh.score()["num_frames"] == 2


def test_stalled_client_is_cut_off_without_blocking_others(start_server):
    url, _ = start_server(read_timeout=1.0)
    host, port = url.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)), timeout=10)
    idle = socket.create_connection(
        (host, int(port)), timeout=10
    )  # a keep-alive connection that says nothing
    try:
        head = "POST /score?instruction=x&fps=4 HTTP/1.1\r\nHost: x\r\nX-Shape: 1,64,96,3\r\nContent-Length: 18432\r\n\r\n"
        stalled.sendall(head.encode() + b"\0" * 9216)  # half the body, then nothing
        started = time.monotonic()
        client = RewardClient(url, timeout=5, retries=0)
        frames = colour_frames(4, 64, 96)
        for _ in range(3):  # others are answered at once meanwhile
            t = time.monotonic()
            assert client.health()["status"] == "ok"
            assert client.score_video(frames, "open the drawer", fps=4)["method"] == "topreward"
            assert time.monotonic() - t < 0.9
        answer = b"".join(iter(lambda: stalled.recv(4096), b""))  # until the server closes it
        waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408") and b"read-timeout" in answer
        assert 0.9 < waited < 4.0
        assert idle.recv(4096) == b""  # closed by the server
    finally:
        stalled.close()
        idle.close()
    assert client.health()["status"] == "ok"


def test_request_past_its_deadline_gets_503_and_the_worker_goes_on(start_server, monkeypatch):
    url, service = start_server(request_timeout=1.0)
    client = RewardClient(url, timeout=10, retries=0)
    session = client.start("open the drawer", fps=10)
    session.push(colour_frames(2, 64, 96))
    gate, inside = hold_worker(service, monkeypatch)
    errors: dict[str, ServerError] = {}
    took: dict[str, float] = {}

    def call(name: str, fn) -> None:
        t = time.monotonic()
        try:
            fn()
        except ServerError as e:
            errors[name] = e
        took[name] = time.monotonic() - t

    hung = threading.Thread(
        target=call, args=("video", lambda: client.score_video(colour_frames(4, 64, 96), "x", fps=4))
    )
    hung.start()  # its model call hangs: the worker is busy with it
    assert inside.wait(10)
    queued = threading.Thread(target=call, args=("score", session.score))
    queued.start()  # waits behind the hung call
    hung.join(5)
    queued.join(5)
    for name in ("video", "score"):  # both answered at their deadline (plus a little), not when the model is
        assert errors[name].status == 503 and 0.95 < took[name] < 1.6, (name, took[name])
    assert "request_timeout" in errors["score"].message and "--request-timeout" in errors["score"].message
    assert errors["score"].headers["Retry-After"].isdigit()
    batches, rounds = len(service.batches), service.rounds
    gate.set()  # the model call returns; the dropped query is skipped, the next one is served
    wait_until(lambda: service.rounds > rounds)
    assert session.score()["num_frames"] == 2
    assert len(service.batches) == batches + 1  # the dropped query never ran
    # a job the worker takes after its deadline (its request thread has not cancelled it yet) is dropped too
    late = service.submit("score", service.sessions[session.id].stream, deadline=time.monotonic() - 1)
    with pytest.raises(HTTPError, match="request_timeout") as info:
        late.result(timeout=5)
    assert info.value.status == 503
    health = client.health()
    assert health["queue"] == 0 and health["rounds"] >= 3 and health["last_round_s"] < 5


def test_full_queue_gets_429_with_retry_after_and_the_client_retries(start_server, monkeypatch):
    url, service = start_server(max_queue=1)
    client = RewardClient(url, timeout=10, retries=3, backoff=0.05)
    session = client.start("open the drawer", fps=10)
    session.push(colour_frames(2, 64, 96))
    gate, inside = hold_worker(service, monkeypatch)
    service.submit("video", colour_frames(4, 64, 96), "x", 4.0)  # the worker takes it and hangs
    assert inside.wait(10)
    service.submit("score", service.sessions[session.id].stream)  # the one place in the queue
    status, answer, headers = raw(url, "POST", f"/sessions/{session.id}/score")
    assert status == 429 and "--max-queue" in answer["error"] and int(headers["Retry-After"]) >= 1
    assert client.health()["queue"] == 1
    threading.Timer(0.3, gate.set).start()  # the worker frees up while the client waits out Retry-After
    t = time.monotonic()
    assert session.score()["num_frames"] == 2
    assert time.monotonic() - t >= 0.9  # it waited the Retry-After second before its retry
    no_retries = ClientSession(RewardClient(url, retries=0), session.id)
    gate.clear()
    inside.clear()
    service.submit("video", colour_frames(4, 64, 96), "x", 4.0)
    assert inside.wait(10)
    service.submit("score", service.sessions[session.id].stream)
    with pytest.raises(ServerError, match="429") as info:
        no_retries.score()
    assert int(info.value.headers["Retry-After"]) >= 1
    gate.set()


def test_a_push_is_applied_once_and_a_gap_is_refused(start_server, monkeypatch):
    url, service = start_server()
    session = RewardClient(url).start("open the drawer", fps=10)
    path, frames = f"/sessions/{session.id}/frames", colour_frames(3, 64, 96)
    status, first, _ = raw(url, "POST", path, frames[:2].tobytes(), frames_headers(frames[:2], seq=0))
    assert status == 200 and first == {"kept": 2, "frames": 2}
    status, again, _ = raw(url, "POST", path, frames[:2].tobytes(), frames_headers(frames[:2], seq=0))
    assert status == 200 and again == {"kept": 0, "frames": 2, "duplicate": True}  # applied once
    status, gap, headers = raw(url, "POST", path, frames[2:].tobytes(), frames_headers(frames[2:], seq=2))
    assert status == 409 and "the next X-Push-Seq is 1" in gap["error"] and headers["X-Push-Expected"] == "1"
    status, bad, _ = raw(
        url, "POST", path, frames[2:].tobytes(), {**frames_headers(frames[2:]), "X-Push-Seq": "-1"}
    )
    assert status == 400 and "X-Push-Seq" in bad["error"]
    assert raw(url, "POST", path, frames[2:].tobytes(), frames_headers(frames[2:], seq=1))[:2] == (
        200,
        {"kept": 1, "frames": 3},
    )
    # without the header a push is applied as it comes (no deduplication): old clients work as before
    assert raw(url, "POST", path, frames[2:].tobytes(), frames_headers(frames[2:]))[1]["frames"] == 4
    stream = service.sessions[session.id].stream
    assert stream.pushed == 4

    # the client's own retry: its first try times out while the worker hangs, its retries meet that try
    # on the worker, and the frames are applied once
    gate, inside = hold_worker(service, monkeypatch)
    service.submit("video", colour_frames(4, 64, 96), "x", 4.0)
    assert inside.wait(10)
    threading.Timer(1.0, gate.set).start()
    impatient = RewardClient(url, timeout=0.3, retries=8, backoff=0.1).start("close the drawer", fps=10)
    answer = impatient.push(frames)
    assert answer["frames"] == 3 and impatient.seq == 1
    assert service.sessions[impatient.id].stream.pushed == 3
    impatient.push(frames[:1])  # and the numbering goes on
    assert service.sessions[impatient.id].stream.pushed == 4


def cache_bytes(stream) -> tuple[int, int]:
    """Bytes of a session's model state: (its KV cache, the vision features it keeps)."""
    import torch

    cache = stream.shared_cache
    kv = sum(k.nbytes + v.nbytes for k, v in cache.kv)
    bank = [t for v in vars(cache.bank).values() for t in (v if isinstance(v, list) else [v])]
    return kv, sum(t.nbytes for t in bank if isinstance(t, torch.Tensor))


def test_ten_thousand_steps_keep_memory_bounded(start_server, scorer):
    keep = 32
    url, service = start_server(max_kept_frames=keep, max_session_frames=10_000)
    session = RewardClient(url).start("open the drawer", fps=30)
    full = scorer.stream("open the drawer", source_fps=30, max_frames=keep)
    full.push(np.zeros((keep, 16, 16, 3), np.uint8))
    kv_bound, features_bound = cache_bytes(full)  # a cache holding `keep` frames from the episode's start
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(20):  # 20 pushes of 500 steps: thinning and plain growth both happen
        answer = session.push(rng.integers(0, 256, (500, 16, 16, 3), dtype=np.uint8))
        stream = service.sessions[session.id].stream
        assert answer["frames"] == stream.video.num_frames <= keep
        sizes.append(cache_bytes(stream))
    result = session.score()
    assert stream.pushed == 10_000 and result["every"] == 512  # the stride doubled 9 times
    assert result["num_frames"] == 20 and result["end_frame"] == 9728  # frames 0, 512, ..., 9728
    assert max(f for _, f in sizes) <= features_bound  # vision features: per kept frame
    # the KV cache: per kept frame too, plus the prompt's frame times, whose digits grow with the
    # episode's length (333 s here against 1 s): a few percent, not the 10,000 steps
    assert max(kv for kv, _ in sizes) <= 1.1 * kv_bound


def test_client_repeats_only_what_is_safe_to_repeat():
    """A server that reads each request and hangs up unanswered: calls that change nothing when repeated
    are retried, `start` (it makes a session) is not; a refused connection (nothing sent) is retried."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                seen.append(conn.recv(65536).split(b" ")[0])

    threading.Thread(target=hang_up, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    client = RewardClient(url, timeout=5, retries=2, backoff=0.01)
    try:
        with pytest.raises(ConnectionError, match=f"{url} did not answer GET /health.*3 tries"):
            client.health()
        with pytest.raises(ConnectionError, match="3 tries"):
            ClientSession(client, "s").push(colour_frames(1, 8, 8))  # numbered: the server deduplicates
        assert seen == [b"GET"] * 3 + [b"POST"] * 3
        with pytest.raises(ConnectionError, match=r"\(1 try\)"):
            client.start("open the drawer", fps=10)
        assert len(seen) == 7
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept, and nothing listens any more
        listener.close()
    with pytest.raises(ConnectionError, match="cannot reach.*3 tries"):
        client.start("open the drawer", fps=10)  # refused: it never reached a server

"""The reward server on loopback: concurrent clients, batched queries, one-shot scoring, bad requests."""

from __future__ import annotations

import http.client
import json
import threading
import time

import numpy as np
import pytest

import topreward
from topreward.client import RewardClient, ServerError
from topreward.serve import ServeLimits, serve

from .conftest import colour_frames

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def server(tiny_model_dirs):
    from .conftest import load_backend

    scorer = topreward.load_scorer("topreward", backend=load_backend(tiny_model_dirs, "qwen3_vl"))
    limits = ServeLimits(
        max_request_bytes=2**20, max_side=256, max_session_frames=12, max_sessions=12, token=TOKEN
    )
    srv, service = serve(scorer, "127.0.0.1", 0, limits)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield url, service, scorer
    srv.shutdown()
    service.close()


def test_eight_concurrent_clients_get_local_scores(server):
    url, service, scorer = server
    texts = [f"task number {i}" for i in range(8)]
    clips = [colour_frames(5 + i % 3, 64, 96) for i in range(8)]
    served: dict[int, list[float]] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            session = RewardClient(url, token=TOKEN).start(texts[i], fps=10)
            session.push(clips[i][:2])
            first = session.score()["value"]
            session.push(clips[i][2:])
            served[i] = [first, session.score()["value"]]
            session.close()
        except BaseException as e:  # reported below, with the client's index
            errors.append(e)

    bad_answers: list[int] = []

    def bad_client(kind: int) -> None:  # hostile requests in the middle of the good clients' work
        for _ in range(3):
            if kind == 0:
                bad_answers.append(raw(url, "POST", "/sessions", b"\0" * (2**20 + 5))[0])
            else:
                bad_answers.append(raw(url, "POST", "/sessions/x/frames", b"abc", {"X-Shape": "1,1,1,3"})[0])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=bad_client, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(served) == 8
    assert sorted(bad_answers) == [404, 404, 404, 413, 413, 413]  # unknown session, oversized
    for i in range(8):  # the same numbers as a local session
        local = scorer.stream(texts[i], source_fps=10)
        local.push(clips[i][:2])
        first = local.score().value
        local.push(clips[i][2:])
        np.testing.assert_allclose(served[i], [first, local.score().value], atol=1e-4)
    assert RewardClient(url, token=TOKEN).health()["sessions"] == 0


def test_queries_queued_together_share_one_forward(server):
    url, service, scorer = server
    sessions = [scorer.stream(f"task {i}", source_fps=10) for i in range(3)]
    for s in sessions:
        s.push(colour_frames(3, 64, 96))
    before = len(service.batches)
    # a video keeps the worker busy while the three queries arrive: they are taken together
    service.submit("video", colour_frames(8, 64, 96), "open the drawer", 4.0)
    futures = [service.submit("score", s) for s in sessions]
    results = [f.result(timeout=60) for f in futures]
    assert service.batches[before:] == [3]
    for s, r in zip(sessions, results):
        assert r.num_frames == s.video.num_frames


def round_of_eight(scorer, batched: bool) -> tuple[dict, list, list]:
    """Eight sessions' pushes and queries queued while the worker is held, then taken as one round:
    (forwards counted by kind, the query values, the frames each push kept)."""
    from topreward.serve.server import RewardService

    backend = scorer.backend
    service = RewardService(scorer, batch_pushes=batched)
    try:
        sids = [service.start(f"task {i}", 10) for i in range(8)]
        for i, sid in enumerate(sids):
            service.push(sid, colour_frames(3 + i % 2, 64, 96))  # odd and even lengths
        gate = threading.Event()
        service._score_video = lambda *a: gate.wait(30) and {}  # holds the worker while the round queues
        busy = service.submit("video", None, "", 1.0)
        time.sleep(0.2)
        new = [colour_frames(8, 64, 96)[i % 3 : i % 3 + 1 + i % 2] for i in range(8)]
        jobs = [service.submit("push", service.sessions[sid], f, None) for sid, f in zip(sids, new)]
        jobs += [service.submit("score", service.sessions[sid].stream) for sid in sids]
        calls = {"vision": 0, "language": 0}

        def count(key: str):
            return lambda *a: calls.__setitem__(key, calls[key] + 1)

        hooks = [
            backend.model.model.visual.register_forward_hook(count("vision")),
            backend.model.model.language_model.register_forward_hook(count("language")),
        ]
        try:
            gate.set()
            busy.result(timeout=30)
            results = [j.result(timeout=60) for j in jobs]
        finally:
            for h in hooks:
                h.remove()
        return calls, [r.value for r in results[8:]], [r["kept"] for r in results[:8]]
    finally:
        service.close()


def test_a_round_of_eight_sessions_pushing_and_querying_runs_three_forwards(server):
    """Eight sessions push and query in one worker round: one vision-encoder call and two language-model
    forwards (the caches grow in one, the queries are answered in one), not eight of each; the values equal
    those of a service that pushes each session in a forward of its own."""
    _, _, scorer = server
    calls, values, kept = round_of_eight(scorer, batched=True)
    assert calls == {"vision": 1, "language": 2}, calls
    alone_calls, alone_values, alone_kept = round_of_eight(scorer, batched=False)
    assert alone_calls == {"vision": 8, "language": 8 + 1}, alone_calls
    assert kept == alone_kept == [1 + i % 2 for i in range(8)]
    np.testing.assert_allclose(values, alone_values, atol=1e-4, rtol=0)
    assert len({round(v, 3) for v in values}) > 1


def test_one_shot_video_score_equals_local(server):
    url, _, scorer = server
    frames = colour_frames(12, 64, 96)
    served = RewardClient(url, token=TOKEN).score_video(frames, "open the drawer", fps=4)
    local = scorer.score(frames, "open the drawer", fps=4)
    np.testing.assert_allclose(served["log_p_true"], local.log_p_true, atol=1e-4)
    assert served["method"] == "topreward" and len(served["frame_progress"]) == 12


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
    resp = conn.getresponse()
    status, data = resp.status, json.loads(resp.read() or b"{}")
    conn.close()
    return status, data


def test_bad_requests_get_clear_4xx_and_the_server_goes_on(server):
    url, service, _ = server
    client = RewardClient(url, token=TOKEN)
    with pytest.raises(ServerError, match="401.*bearer token"):
        RewardClient(url).health()
    with pytest.raises(ServerError, match="401"):
        RewardClient(url, token="wrong").start("x", fps=10)
    session = client.start("open the drawer", fps=10)
    frames = colour_frames(2, 64, 96)
    path = f"/sessions/{session.id}/frames"
    assert raw(url, "POST", path, frames.tobytes())[0] == 400  # no X-Shape
    status, data = raw(url, "POST", path, frames.tobytes(), {"X-Shape": "2,64,96"})
    assert status == 400 and "n,h,w,3" in data["error"]
    status, data = raw(url, "POST", path, frames.tobytes()[:-1], {"X-Shape": "2,64,96,3"})
    assert status == 400 and "bytes" in data["error"]
    assert raw(url, "POST", path, b"\0" * 3 * 300 * 300, {"X-Shape": "1,300,300,3"})[0] == 413  # side limit
    status, data = raw(url, "POST", path, b"\0" * (2**20 + 1), {"X-Shape": "1,1,1,3"})
    assert status == 413 and "limit" in data["error"]
    status, data = raw(url, "POST", "/sessions", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "JSON" in data["error"]
    assert raw(url, "POST", "/sessions", json.dumps({"instruction": "", "fps": 10}).encode())[0] == 400
    assert raw(url, "POST", "/sessions", json.dumps({"instruction": "x", "fps": "fast"}).encode())[0] == 400
    assert raw(url, "POST", "/sessions", json.dumps({"instruction": "x", "fps": -1}).encode())[0] == 400
    assert raw(url, "POST", "/sessions/nope/score")[0] == 404
    assert raw(url, "GET", "/nowhere")[0] == 404
    with pytest.raises(ServerError, match="push at least one frame"):
        session.score()
    session.push(frames[:1])
    with pytest.raises(ServerError, match="400.*one camera at one resolution"):
        session.push(colour_frames(1, 32, 32))
    session.push(colour_frames(11, 64, 96))
    with pytest.raises(ServerError, match="413.*at most 12 frames"):
        session.push(frames)
    session.close()
    with pytest.raises(ServerError, match="404"):
        session.score()
    opened = [client.start("x", fps=10) for _ in range(12)]
    with pytest.raises(ServerError, match="429"):
        client.start("x", fps=10)
    for s in opened:
        s.close()
    assert client.health()["status"] == "ok"  # still serving


def test_idle_sessions_expire(tiny_model_dirs):
    from .conftest import load_backend

    scorer = topreward.load_scorer("topreward", backend=load_backend(tiny_model_dirs, "qwen3_vl"))
    srv, service = serve(scorer, "127.0.0.1", 0, ServeLimits(idle_s=0.2))
    try:
        client = RewardClient(f"http://127.0.0.1:{srv.server_address[1]}")
        session = client.start("open the drawer", fps=10)
        time.sleep(0.4)
        with pytest.raises(ServerError, match="404.*expired"):
            session.push(colour_frames(1, 64, 96))
    finally:
        srv.shutdown()
        service.close()


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(ConnectionError, match="cannot reach the reward server"):
        RewardClient("http://127.0.0.1:9", timeout=2, retries=1, backoff=0.01).health()


def test_client_leaving_mid_request_disturbs_nobody(server):
    import socket

    url, _, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST /score?instruction=x&fps=4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        sock.sendall((head + "X-Shape: 1,64,96,3\r\nContent-Length: 18432\r\n\r\n").encode() + b"\0" * 100)
    assert RewardClient(url, token=TOKEN).health()["status"] == "ok"


def test_serve_command_runs_until_interrupted(tiny_model_dirs, tmp_path):
    """SIGINT ends the server cleanly (exit 0) wherever it is. The model's loading logs go to a file, not a
    pipe nobody reads (a full pipe would block the server), and every wait has a deadline."""
    import os
    import selectors
    import signal
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "topreward.cli",
        "serve",
        "--model",
        str(tiny_model_dirs["qwen3_vl"]),
        "--port",
        "0",
    ]
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "TOPREWARD_TOKEN": TOKEN},
        )
        try:
            ready = selectors.DefaultSelector()
            ready.register(proc.stdout, selectors.EVENT_READ)
            assert ready.select(timeout=300), (tmp_path / "stderr.txt").read_text()[-2000:]
            line = proc.stdout.readline()
            assert "topreward serve: topreward on http://127.0.0.1:" in line and "bearer token" in line
            url = line.split(" on ")[1].split(" ")[0]
            assert RewardClient(url, token=TOKEN).health()["method"] == "topreward"
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
            assert out.strip() == "stopping"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_sessions": 0}, "max_sessions"),
        ({"max_request_bytes": -1}, "max_request_bytes"),
        ({"max_side": 1.5}, "max_side"),
        ({"idle_s": float("nan")}, "idle_s"),
        ({"idle_s": 0}, "idle_s"),
        ({"token": "  "}, "token is empty"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"read_timeout": float("inf")}, "read_timeout"),
        ({"max_queue": 0}, "max_queue"),
        ({"max_kept_frames": 1}, "max_kept_frames must be a whole number >= 2"),
    ],
)
def test_bad_limits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ServeLimits(**kwargs)


def test_bad_serve_limits_are_refused_before_loading_a_model(capsys):
    from topreward.cli import main

    assert main(["serve", "--model", "/no/such/model", "--request-timeout", "0"]) == 2
    assert "request_timeout must be a positive number" in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "match"), [({"retries": -1}, "retries"), ({"backoff": -0.5}, "backoff")])
def test_bad_client_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RewardClient("http://127.0.0.1:9", **kwargs)


@pytest.mark.parametrize("port", [-1, 70000])
def test_bad_port_is_refused_before_loading_a_model(port, capsys):
    from topreward.cli import main
    from topreward.serve import check_port

    # the model path does not exist: a port error here proves nothing was loaded first
    assert main(["serve", "--model", "/no/such/model", "--port", str(port)]) == 2
    assert "port must be 0..65535" in capsys.readouterr().err
    with pytest.raises(ValueError, match="port must be 0..65535"):
        check_port(True)

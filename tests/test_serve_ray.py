"""The reward server as a Ray Serve app: two model replicas on a local CPU Ray instance."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

import topreward
from topreward.client import RewardClient, ServerError, SessionLost

from .conftest import colour_frames, load_backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tiny_model_dirs):
    """One Ray Serve app of two tiny-model replicas for this file's tests (Ray's start and the deploy take
    most of their time); the last test kills a replica."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.serve", reason="Ray Serve needs pip install 'topreward[ray]'")
    from ray import serve

    from topreward.serve.ray import deploy

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        model = str(tiny_model_dirs["qwen3_vl"])
        yield deploy("topreward", {"model": model}, replicas=2, cpus_per_replica=1, port=free_port())
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_sticky_sessions(app, tiny_model_dirs):
    url = app
    client = RewardClient(url, timeout=120)
    assert client.health()["replicas"] == 2
    texts = [f"task {i}" for i in range(4)]
    clips = [colour_frames(3 + i, 64, 96) for i in range(4)]
    served: dict[int, tuple[str, float]] = {}

    def run(i: int) -> None:
        session = client.start(texts[i], fps=10)
        session.push(clips[i])
        served[i] = (session.id, session.score()["value"])
        session.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(served) == 4
    assert {sid.split("-")[0] for sid, _ in served.values()} == {"0", "1"}  # both replicas used
    local = topreward.load_scorer("topreward", backend=load_backend(tiny_model_dirs, "qwen3_vl"))
    for i, (_, value) in served.items():
        session = local.stream(texts[i], source_fps=10)
        session.push(clips[i])
        np.testing.assert_allclose(value, session.score().value, atol=1e-4)
    with pytest.raises(ServerError, match="404"):
        client._request("POST", "/sessions/7-nope/score", b"")


def test_killed_ray_replica_loses_only_its_own_sessions(app):
    """Last in this file: it kills a replica of the shared app."""
    import ray

    from .test_serve_faults import frames_headers, raw

    url = app
    client = RewardClient(url, timeout=60, retries=2, backoff=0.05)
    sessions = [client.start(f"task {i}", fps=10) for i in range(2)]
    assert sorted(s.id.split("-")[0] for s in sessions) == ["0", "1"]  # one on each replica
    frames = colour_frames(3, 64, 96)
    for s in sessions:
        s.push(frames[:2])
    # headers cross the Ray Serve ingress too: a skipped push number names the expected one
    status, answer, headers = raw(
        url,
        "POST",
        f"/sessions/{sessions[0].id}/frames",
        frames[:1].tobytes(),
        frames_headers(frames[:1], seq=5),
    )
    assert status == 409 and headers["x-push-expected"] == "1" and "X-Push-Seq is 1" in answer["error"]
    lost, kept = (sessions[0], sessions[1]) if sessions[0].id.startswith("0-") else (sessions[1], sessions[0])
    replica = next(n for n in ray.util.list_named_actors() if n.endswith("-replica-0"))
    ray.kill(ray.get_actor(replica))
    with pytest.raises(SessionLost, match="410.*lost: its replica 0 died; re-create it"):
        lost.push(frames[2:])
    with pytest.raises(SessionLost, match="410"):
        lost.score()
    kept.push(frames[2:])  # the other replica's session goes on
    assert kept.score()["num_frames"] == 3
    new = [client.start(f"again {i}", fps=10) for i in range(3)]
    assert {s.id.split("-")[0] for s in new} == {"1"}  # only the live replica takes new sessions
    new[0].push(frames)
    assert new[0].score()["num_frames"] == 3
    health = client.health()
    assert health["status"] == "degraded" and health["replicas_lost"] == [0] and health["sessions"] == 4

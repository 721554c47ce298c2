"""The reward server as a Ray Serve app: two model replicas on a local CPU Ray instance."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

import topreward
from topreward.client import RewardClient, ServerError

from .conftest import colour_frames, load_backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_serve_sticky_sessions(tiny_model_dirs):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.serve", reason="Ray Serve needs pip install 'topreward[ray]'")
    from ray import serve

    from topreward.serve.ray import deploy

    model = str(tiny_model_dirs["qwen3_vl"])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        url = deploy("topreward", {"model": model}, replicas=2, cpus_per_replica=1, port=free_port())
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
    finally:
        serve.shutdown()
        ray.shutdown()

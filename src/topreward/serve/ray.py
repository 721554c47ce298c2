"""The reward server on Ray Serve (extra `[ray]`): one model replica per GPU, one HTTP app in front.

`deploy(method, options, replicas=N, gpus_per_replica=1)` starts N Ray actors, each a `RewardService`
holding its own scorer (one model), and a Ray Serve ingress that answers the same endpoints as
`topreward serve` (`topreward.serve.route`). A streaming session lives on one replica — its video cache is
there — so the ingress names sessions `<replica>-<id>` and sends all of a session's requests to its
replica; new sessions and one-shot video scores go round-robin. Inside a replica, concurrent queries are
batched as in `topreward serve`.
"""

from __future__ import annotations

import itertools
from typing import Any

from topreward.extras import optional
from topreward.serve.server import HTTPError, RewardService, ServeLimits, route


def _ray():
    return optional("ray", "ray", "the Ray Serve deployment"), optional("ray.serve", "ray", "the Ray Serve deployment")


class Replica:
    """A Ray actor body: one scorer (one model) behind a `RewardService`."""

    def __init__(self, method: str, options: dict[str, Any], limits: ServeLimits) -> None:
        from topreward.scorers.registry import load_scorer

        self.service = RewardService(load_scorer(method, **options), limits)

    def call(self, name: str, *args) -> Any:
        return getattr(self.service, name)(*args)


class Router:
    """`RewardService`'s methods over several replicas: sessions stick to the replica that holds them."""

    def __init__(self, actors: list) -> None:
        self.actors = actors
        self._next = itertools.count()

    def _call(self, index: int, name: str, *args) -> Any:
        ray, _ = _ray()
        try:
            return ray.get(self.actors[index].call.remote(name, *args))
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, HTTPError):
                raise e.cause from None
            raise

    def _split(self, sid: str) -> tuple[int, str]:
        head, _, inner = sid.partition("-")
        if not head.isdigit() or int(head) >= len(self.actors) or not inner:
            raise HTTPError(404, f"no session {sid!r}")
        return int(head), inner

    def health(self) -> dict:
        states = [self._call(i, "health") for i in range(len(self.actors))]
        return {**states[0], "sessions": sum(s["sessions"] for s in states), "replicas": len(states)}

    def start(self, instruction, fps, every=1) -> str:
        index = next(self._next) % len(self.actors)
        return f"{index}-{self._call(index, 'start', instruction, fps, every)}"

    def push(self, sid: str, frames) -> dict:
        index, inner = self._split(sid)
        return self._call(index, "push", inner, frames)

    def score(self, sid: str) -> dict:
        index, inner = self._split(sid)
        return self._call(index, "score", inner)

    def stop(self, sid: str) -> dict:
        index, inner = self._split(sid)
        self._call(index, "stop", inner)
        return {"closed": sid}

    def score_video(self, frames, instruction: str, fps: float) -> dict:
        return self._call(next(self._next) % len(self.actors), "score_video", frames, instruction, fps)


def deploy(
    method: str,
    options: dict[str, Any],
    *,
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    cpus_per_replica: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    address: str | None = None,
) -> str:
    """Start the replicas and the ingress on the running Ray cluster (or a local one); returns the URL."""
    ray, serve = _ray()
    from topreward.serve.server import check_port

    check_port(port)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be a whole number >= 1, got {replicas!r}")
    limits = limits or ServeLimits()
    from topreward.ray_setup import init_ray

    init_ray(address, ray=ray)  # `address` (or RAY_ADDRESS): join a running cluster
    actor = ray.remote(num_gpus=gpus_per_replica, num_cpus=cpus_per_replica)(Replica)
    actors = [actor.remote(method, options, limits) for _ in range(replicas)]

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class RewardIngress:
        def __init__(self, actors: list, limits: ServeLimits) -> None:
            self.router, self.limits = Router(actors), limits

        async def __call__(self, request):
            import asyncio

            from starlette.responses import JSONResponse

            body = await request.body()
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            # route() waits on the replicas (ray.get): off the event loop, so requests overlap
            status, payload = await asyncio.to_thread(
                route, self.router, self.limits, request.method, target, request.headers, body
            )
            return JSONResponse(payload, status_code=status)

    serve.start(http_options={"host": host, "port": port})
    serve.run(RewardIngress.bind(actors, limits), name="topreward", route_prefix="/")
    return f"http://{host}:{port}"

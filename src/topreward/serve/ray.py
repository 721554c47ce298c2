"""The reward server on Ray Serve (extra `[ray]`): one model replica per GPU, one HTTP app in front.

`deploy(method, options, replicas=N, gpus_per_replica=1)` starts N Ray actors, each a `RewardService`
holding its own scorer (one model), and a Ray Serve ingress that answers the same endpoints as
`topreward serve` (`topreward.serve.route`). A streaming session lives on one replica — its video cache is
there — so the ingress names sessions `<replica>-<id>` and sends all of a session's requests to its
replica; new sessions and one-shot video scores go round-robin over the live replicas. Inside a replica,
concurrent queries are batched as in `topreward serve`, with the same limits and deadlines.

A replica that dies (its actor killed, its node lost) takes its sessions with it: their requests get 410
"session lost, re-create it", the other replicas' sessions go on, and new sessions go to the live replicas
(503 once none is left). A dead replica is not restarted; restart the app to get it back. The replicas are
named actors, `topreward-<app>-replica-<i>`, in the driver's namespace.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from topreward.extras import optional
from topreward.serve.server import HTTPError, RewardService, ServeLimits, route


def _ray():
    return optional("ray", "ray", "the Ray Serve deployment"), optional(
        "ray.serve", "ray", "the Ray Serve deployment"
    )


class Replica:
    """A Ray actor body: one scorer (one model) behind a `RewardService`."""

    def __init__(self, method: str, options: dict[str, Any], limits: ServeLimits) -> None:
        from topreward.scorers.registry import load_scorer

        self.service = RewardService(load_scorer(method, **options), limits)

    def call(self, name: str, *args) -> Any:
        return getattr(self.service, name)(*args)


class Router:
    """`RewardService`'s methods over several replicas: sessions stick to the replica that holds them.

    Args:
        actors: the `Replica` actors.
        timeout: seconds to wait for one replica's answer (it answers within its own `request_timeout`;
            this catches a replica that hangs outright), then 503.
    """

    def __init__(self, actors: list, timeout: float | None = None) -> None:
        self.actors, self.timeout = actors, timeout
        self.lost: set[int] = set()  # replicas whose actor died
        self._next = itertools.count()

    def _call(self, index: int, name: str, *args) -> Any:
        ray, _ = _ray()
        if index in self.lost:
            raise _Lost(index)
        try:
            return ray.get(self.actors[index].call.remote(name, *args), timeout=self.timeout)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, HTTPError):
                raise e.cause from None
            raise
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError) as e:  # perhaps passing
            raise HTTPError(
                503, f"replica {index} did not answer ({type(e).__name__}); retry later", {"Retry-After": "1"}
            ) from e
        except ray.exceptions.RayActorError as e:  # the actor died: nothing of it comes back
            self.lost.add(index)
            raise _Lost(index) from e

    def _on_session(self, sid: str, name: str, *args) -> Any:
        """A call on a session's replica; 410 when that replica died (the session died with it)."""
        index, inner = self._split(sid)
        try:
            return self._call(index, name, inner, *args)
        except _Lost:
            raise HTTPError(
                410,
                f"session {sid!r} was lost: its replica {index} died; re-create it (POST /sessions) "
                "and push its frames again",
            ) from None

    def _on_any(self, name: str, *args) -> Any:
        """A call on the next live replica (round-robin), passing over replicas found dead on the way."""
        for _ in range(len(self.actors)):
            index = next(self._next) % len(self.actors)
            if index in self.lost:
                continue
            try:
                return index, self._call(index, name, *args)
            except _Lost:
                continue
        raise HTTPError(503, f"no live replica: all {len(self.actors)} died; restart the server")

    def _split(self, sid: str) -> tuple[int, str]:
        head, _, inner = sid.partition("-")
        if not head.isdigit() or int(head) >= len(self.actors) or not inner:
            raise HTTPError(404, f"no session {sid!r}")
        return int(head), inner

    def health(self) -> dict:
        states = []
        for i in range(len(self.actors)):
            try:
                states.append(self._call(i, "health"))
            except _Lost:
                continue
        if not states:
            raise HTTPError(503, f"no live replica: all {len(self.actors)} died; restart the server")
        return {
            **states[0],
            "status": "ok" if not self.lost else "degraded",
            "sessions": sum(s["sessions"] for s in states),
            "queue": sum(s["queue"] for s in states),
            "last_round_s": max(s["last_round_s"] for s in states),
            "rounds": sum(s["rounds"] for s in states),
            "replicas": len(self.actors),
            "replicas_lost": sorted(self.lost),
        }

    def start(self, instruction, fps, every=1) -> str:
        index, inner = self._on_any("start", instruction, fps, every)
        return f"{index}-{inner}"

    def push(self, sid: str, frames, seq: int | None = None) -> dict:
        return self._on_session(sid, "push", frames, seq)

    def score(self, sid: str) -> dict:
        return self._on_session(sid, "score")

    def stop(self, sid: str) -> dict:
        self._on_session(sid, "stop")
        return {"closed": sid}

    def score_video(self, frames, instruction: str, fps: float) -> dict:
        return self._on_any("score_video", frames, instruction, fps)[1]


class _Lost(Exception):
    """A replica's actor died."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


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
    # named `topreward-<app>-replica-<i>` in the driver's namespace (`ray.util.list_named_actors()`), e.g. for
    # `ray.kill` in a failure drill; <app> is new per deploy, so a second deploy never meets the first's names
    app = uuid.uuid4().hex[:8]
    actors = [
        actor.options(name=f"topreward-{app}-replica-{i}").remote(method, options, limits)
        for i in range(replicas)
    ]

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class RewardIngress:
        def __init__(self, actors: list, limits: ServeLimits) -> None:
            # a replica answers within its request_timeout; the margin covers Ray's own hops
            self.router, self.limits = Router(actors, timeout=limits.request_timeout + 10), limits

        async def __call__(self, request):
            import asyncio

            from starlette.responses import JSONResponse

            body = await request.body()
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            # route() waits on the replicas (ray.get): off the event loop, so requests overlap
            status, payload, headers = await asyncio.to_thread(
                route, self.router, self.limits, request.method, target, request.headers, body
            )
            return JSONResponse(payload, status_code=status, headers=headers)

    serve.start(http_options={"host": host, "port": port})
    serve.run(RewardIngress.bind(actors, limits), name="topreward", route_prefix="/")
    return f"http://{host}:{port}"

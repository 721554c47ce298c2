"""The annotation job as a Ray Data pipeline (extra `[ray]`): decode in CPU tasks, score in an actor pool.

Each actor holds one scorer (one model) for its lifetime; `gpus_per_worker` reserves GPUs per actor
(logical resources, so a local test runs with `ray.init(num_cpus=2)`). The driver receives results as
they finish and writes them to the same work file as the local engine, so resuming works the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from topreward.extras import optional


def _ray():
    optional("ray.data", "ray", "the Ray engine")
    return optional("ray", "ray", "the Ray engine")


def _decode(row: dict[str, Any], source_factory: Callable[[], Any], preparer) -> dict[str, Any]:
    """CPU task: open the source and prepare one episode's frames with the scorer's own `FramePreparer`."""
    row = dict(row)
    try:
        ep = source_factory().get(row["episode_id"])
        video = preparer(ep)
        row.update(
            frames=video.frames,
            sampled=video.source_indices,
            clock=np.nan if video.clock is None else float(video.clock),  # RoboReward's 1 fps timeline
            fps=ep.fps,
            instruction=ep.instruction or "",
            source=ep.source,
            error="",
        )
    except (ValueError, FileNotFoundError, OSError) as e:
        row.update(
            frames=np.zeros((0, 1, 1, 3), np.uint8),
            sampled=np.zeros(0, np.int64),
            clock=np.nan,
            fps=1.0,
            instruction="",
            source="",
            error=str(e),
        )
    return row


class _Score:
    """Actor: one scorer for its lifetime; scores prepared episodes."""

    def __init__(self, spec) -> None:
        self.scorer = spec.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import json

        from topreward.backends.base import ModelVideo
        from topreward.episode import Episode

        results, errors = [], []
        for i in range(len(batch["episode_id"])):
            if batch["error"][i]:
                results.append("")
                errors.append(str(batch["error"][i]))
                continue
            ep = Episode(
                num_frames=int(batch["num_frames"][i]),
                fps=float(batch["fps"][i]),
                loader=lambda idx: (_ for _ in ()).throw(RuntimeError("frames were decoded upstream")),
                instruction=str(batch["instruction"][i]),
                source=str(batch["source"][i]),
                episode_id=str(batch["episode_id"][i]),
            )
            clock = float(batch["clock"][i])
            mv = ModelVideo(
                np.asarray(batch["frames"][i]),
                np.asarray(batch["sampled"][i]),
                ep.fps,
                clock=None if np.isnan(clock) else clock,
            )
            try:
                results.append(json.dumps(self.scorer.score_prepared(ep, mv).to_dict()))
                errors.append("")
            except ValueError as e:
                results.append("")
                errors.append(str(e))
        return {"episode_id": batch["episode_id"], "result": np.array(results), "error": np.array(errors)}


def score_with_ray(
    spec,
    todo,
    source_factory,
    *,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    progress_bars: bool = True,
) -> Iterator:
    """Yield (task, ScoreResult | None, reason | None) for every task, as results arrive.

    Args:
        spec: a `topreward.annotate.ScorerSpec` (method name and options); each actor loads its scorer.
        address: a Ray cluster to join (`topreward.ray_setup.init_ray`); default `RAY_ADDRESS` or local.
        progress_bars: Ray Data's own progress bars (off when the caller shows its own).
    """
    import json

    from topreward.result import ScoreResult

    if source_factory is None:
        raise ValueError("engine='ray' needs source_factory, a picklable callable that reopens the source")
    if not todo:
        return
    from topreward.ray_setup import init_ray, quiet_ray_data

    ray = init_ray(address, ray=_ray())
    quiet_ray_data(progress_bars)
    by_id = {t.episode_id: t for t in todo}
    ds = ray.data.from_items([asdict(t) for t in todo], override_num_blocks=len(todo))
    ds = ds.map(_decode, fn_kwargs={"source_factory": source_factory, "preparer": spec.preparer()})
    ds = ds.map_batches(
        _Score,
        fn_constructor_args=(spec,),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=gpus_per_worker,
    )
    for row in ds.iter_rows():
        task = by_id[str(row["episode_id"])]
        if row["error"]:
            yield task, None, str(row["error"])
        else:
            yield task, ScoreResult.from_dict(json.loads(row["result"])), None

"""Several cameras of a LeRobot dataset as one episode: each frame the cameras' frames side by side.

`open_source(root, camera="top+wrist")` opens one `LeRobotSource` per camera and zips their episodes; a
frame is [top | wrist], the layout SOLE-R1's inference code takes two cameras in (it splits each frame at
half its width). The cameras must have one frame size. Episodes say which cameras they hold
(`annotations["cameras"]`), so that a method that takes one camera can refuse them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from topreward.datasets.lerobot import LeRobotSource
from topreward.episode import Episode


class SideBySideSource:
    """The same episodes of one LeRobot dataset from several cameras, frames concatenated left to right."""

    def __init__(self, sources: list[LeRobotSource]) -> None:
        if len(sources) < 2:
            raise ValueError("side-by-side episodes need at least two cameras, e.g. camera='top+wrist'")
        self.sources = sources
        self.cameras = [s.camera for s in sources]
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"camera= names a camera twice: {'+'.join(self.cameras)}")

    def __len__(self) -> int:
        return len(self.sources[0])

    def __iter__(self) -> Iterator[Episode]:
        for episode_id in self.episode_ids():
            yield self.get(episode_id)

    def episode_ids(self) -> list[str]:
        return self.sources[0].episode_ids()

    def get(self, episode_id: str) -> Episode:
        views = [s.get(episode_id) for s in self.sources]
        first = views[0]
        if any(v.num_frames != first.num_frames for v in views):
            counts = ", ".join(f"{c}: {v.num_frames}" for c, v in zip(self.cameras, views))
            raise ValueError(f"episode {episode_id}: the cameras hold different frame counts ({counts})")

        def load(idx: np.ndarray) -> np.ndarray:
            frames = [v.frames(idx) for v in views]
            shapes = {f.shape[1:] for f in frames}
            if len(shapes) > 1:
                sizes = ", ".join(f"{c}: {f.shape[2]}x{f.shape[1]}" for c, f in zip(self.cameras, frames))
                raise ValueError(
                    f"episode {episode_id}: side-by-side cameras need one frame size, got {sizes}; pick cameras "
                    "of one resolution"
                )
            return np.concatenate(frames, axis=2)

        camera = "+".join(self.cameras)
        return Episode(
            num_frames=first.num_frames,
            fps=first.fps,
            loader=load,
            instruction=first.instruction,
            source=first.source.replace(f", {self.cameras[0]})", f", {camera})"),
            annotations={**first.annotations, "camera": camera, "cameras": list(self.cameras)},
            episode_id=first.episode_id,
        )

"""`topreward view --rerun`: the same episodes as a Rerun recording, in `lerobot-dataset-viz`'s conventions.

Per episode: timelines `frame_index` (sequence) and `timestamp` (seconds into the episode), the frames under
the camera's key (e.g. `observation.images.top`), and per run a `progress/<run>` scalar at its evaluation
frames, with `ground_truth` per frame when known. One episode: one `.rrd`; several: one file each in a folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topreward.extras import optional
from topreward.view.collect import ViewEpisode


def write_rerun(episodes: list[ViewEpisode], methods: list[str], out: str | Path) -> list[Path]:
    """Write the recordings; returns their paths. Needs `pip install 'topreward[rerun]'`."""
    rr = optional("rerun", "rerun", "Rerun recordings")
    from topreward.video import seek_read_frames

    out = Path(out)
    if len(episodes) > 1:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    for episode in episodes:
        path = out if len(episodes) == 1 else out / f"episode_{episode.episode_id}.rrd"
        recording = rr.RecordingStream("topreward", recording_id=f"{episode.dataset}/{episode.episode_id}")
        recording.save(str(path))
        frames = None
        if episode.video:
            numbers = np.floor(
                (episode.start + np.arange(episode.num_frames) / episode.fps) * episode.fps + 0.5
            )
            frames = seek_read_frames(episode.video, numbers.astype(np.int64))
        for i in range(episode.num_frames):
            recording.set_time("frame_index", sequence=i)
            recording.set_time("timestamp", duration=i / episode.fps)
            if frames is not None:
                recording.log(episode.camera, rr.Image(frames[i]))
            if episode.truth is not None and i < len(episode.truth):
                recording.log("ground_truth", rr.Scalars(float(episode.truth[i])))
        for label in methods:
            run = episode.runs.get(label)
            if run is None:
                continue
            for frame, value in zip(run.frames, run.progress):
                if value == value:  # NaN: no value
                    recording.set_time("frame_index", sequence=int(frame))
                    recording.set_time("timestamp", duration=int(frame) / episode.fps)
                    recording.log(f"progress/{label}", rr.Scalars(float(value)))
        recording.flush()
        written.append(path)
    return written

"""LeRobotSource on synthetic v3.0 and v2.1 datasets written file by file (no lerobot package, no network)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from topreward.datasets import LeRobotSource, open_source, select_episodes
from topreward.video import read_frames, seek_read_frames

from .helpers_lerobot import (
    CAMERAS,
    TASKS,
    camera_tags,
    frame_codes,
    tree_snapshot,
    write_lerobot_v3,
    write_lerobot_v21,
)

LENGTHS = (10, 12, 8)  # global frame indices: episode 0 -> 0..9, 1 -> 10..21, 2 -> 22..29
TOP, WRIST = 40, 200  # green level of each camera's frames


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> Path:
    """Three episodes concatenated in one mp4 per camera, a keyframe every 4 frames (so seeking matters)."""
    return write_lerobot_v3(tmp_path_factory.mktemp("v3") / "ds", LENGTHS, gop=4)


@pytest.fixture(scope="module")
def v3_split(tmp_path_factory) -> Path:
    """Episodes 0 and 1 share file-000.mp4; episode 2 is alone in file-001.mp4."""
    return write_lerobot_v3(tmp_path_factory.mktemp("v3s") / "ds", LENGTHS, episodes_per_video_file=2)


@pytest.fixture(scope="module")
def v21(tmp_path_factory) -> Path:
    return write_lerobot_v21(tmp_path_factory.mktemp("v21") / "ds", LENGTHS)


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def test_v3_middle_episode_of_a_shared_file(v3):
    src = LeRobotSource(v3)
    assert (src.version, src.fps, src.camera, len(src)) == ("v3.0", 15.0, CAMERAS[0], 3)
    assert src.episode_ids() == ["0", "1", "2"]
    ep = src.get("1")
    assert (ep.episode_id, ep.num_frames, ep.fps, ep.instruction) == ("1", 12, 15.0, TASKS[1])
    assert ep.annotations["episode_index"] == 1
    assert ep.annotations["dataset_from_index"] == 10
    frames = ep.frames()
    assert frames.shape == (12, 64, 64, 3)
    assert frame_codes(frames) == list(range(10, 22))
    assert set(camera_tags(frames)) == {TOP}
    assert frame_codes(ep.frames([11, 0, 5, 5])) == [21, 10, 15, 15]


@pytest.mark.parametrize("layout", ["v3", "v3_split", "v21"])
def test_every_episode_gets_its_own_frames(layout, request):
    src = LeRobotSource(request.getfixturevalue(layout))
    starts = np.concatenate([[0], np.cumsum(LENGTHS)])
    for e, ep in enumerate(src):
        assert ep.num_frames == LENGTHS[e]
        assert ep.instruction == TASKS[e % 2]
        assert ep.annotations["dataset_from_index"] == starts[e]
        assert frame_codes(ep.frames()) == list(range(starts[e], starts[e + 1]))


def test_camera_selection(v3, v21):
    for root in (v3, v21):
        wrist = LeRobotSource(root, camera="observation.images.wrist")
        frames = wrist.get("2").frames([0, 7])
        assert set(camera_tags(frames)) == {WRIST}
        assert frame_codes(frames) == [22, 29]
        assert LeRobotSource(root, camera="wrist").camera == "observation.images.wrist"  # short name
    with pytest.raises(
        ValueError, match=r"unknown camera 'front'.*observation\.images\.top.*observation\.images\.wrist"
    ):
        LeRobotSource(v3, camera="front")


def test_v21_metadata(v21):
    src = LeRobotSource(v21)
    assert (src.version, src.camera) == ("v2.1", CAMERAS[0])
    ep = src.get(2)
    assert (ep.num_frames, ep.annotations["dataset_from_index"], ep.instruction) == (8, 22, TASKS[0])


def test_seek_decoding_matches_the_reference(v3):
    path = v3 / "videos" / CAMERAS[0] / "chunk-000" / "file-000.mp4"
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.integers(0, sum(LENGTHS), size=6)
        np.testing.assert_array_equal(seek_read_frames(path, idx), read_frames(path, idx))
    with pytest.raises(ValueError, match="could not be decoded"):
        seek_read_frames(path, [sum(LENGTHS)])


def test_missing_task_fails_only_for_that_episode(tmp_path):
    root = write_lerobot_v3(tmp_path / "ds", LENGTHS, episode_tasks=[TASKS[0], None, TASKS[1]])
    src = LeRobotSource(root)
    assert len(src) == 3 and src.episode_ids() == ["0", "1", "2"]
    assert src.get("2").instruction == TASKS[1]
    with pytest.raises(ValueError, match="episode 1 has no task text"):
        src.get("1")
    with pytest.raises(ValueError, match="episode 1 has no task text"):
        list(src)


def test_task_from_data_parquet_and_unnamed_task_index(tmp_path):
    """Without a `tasks` column, the task comes from the frames' task_index via meta/tasks.parquet."""
    root = write_lerobot_v3(tmp_path / "ds", LENGTHS, tasks_column=False, tasks_index_name=None)
    assert [ep.instruction for ep in LeRobotSource(root)] == [TASKS[0], TASKS[1], TASKS[0]]


@pytest.mark.parametrize(
    ("episodes", "expected"),
    [(None, ["0", "1", "2"]), ("0:2", ["0", "1"]), ("1:", ["1", "2"]), ("::-1", ["2", "1", "0"]),
     ([2, 0], ["2", "0"]), ("1", ["1"]), ("0,2", ["0", "2"]), (1, ["1"]), (range(1, 3), ["1", "2"])],
)  # fmt: skip
def test_episode_selection(v3, episodes, expected):
    src = LeRobotSource(v3, episodes=episodes)
    assert src.episode_ids() == expected
    assert [ep.episode_id for ep in src] == expected


def test_episode_selection_errors(v3):
    with pytest.raises(ValueError, match=r"stop 50 is out of range.*0\.\.2 \(3 episodes\)"):
        LeRobotSource(v3, episodes="0:50")
    with pytest.raises(ValueError, match=r"episode 5 is not in the dataset; valid episodes are 0\.\.2"):
        LeRobotSource(v3, episodes=[0, 5])
    with pytest.raises(ValueError, match="cannot parse episodes='a:b'"):
        LeRobotSource(v3, episodes="a:b")
    with pytest.raises(ValueError, match="selects no episode"):
        LeRobotSource(v3, episodes="2:1")
    with pytest.raises(TypeError, match="must be integers"):
        LeRobotSource(v3, episodes=[1.5])
    src = LeRobotSource(v3, episodes="0:1")
    with pytest.raises(ValueError, match="not selected"):
        src.get("2")
    with pytest.raises(ValueError, match="episode 9 is not in"):
        src.get("9")


def test_select_episodes_on_non_contiguous_indices():
    assert select_episodes([3, 5, 9], "1:") == [5, 9]
    assert select_episodes([3, 5, 9], [9, 3]) == [9, 3]
    with pytest.raises(ValueError, match=r"3\.\.9 \(3 episodes, not contiguous\)"):
        select_episodes([3, 5, 9], [4])


def test_corrupt_or_missing_video_raises_only_on_frames(v3, tmp_path):
    root = _copy(v3, tmp_path)
    bad = root / "videos" / CAMERAS[0] / "chunk-000" / "file-000.mp4"
    bad.write_bytes(b"not an mp4 at all" * 100)
    src = LeRobotSource(root)
    assert len(src) == 3
    episodes = list(src)  # listing and building episodes touches no video
    with pytest.raises(ValueError, match=f"episode 1 .*{re.escape(str(bad))}"):
        episodes[1].frames([0])
    wrist = LeRobotSource(root, camera="wrist")
    (root / "videos" / CAMERAS[1] / "chunk-000" / "file-000.mp4").unlink()
    with pytest.raises(ValueError, match="video file not found: .*wrist.*file-000.mp4"):
        wrist.get("0").frames()


def test_reading_leaves_the_dataset_folder_unchanged(v3, v21):
    for root in (v3, v21):
        before = tree_snapshot(root)
        for camera in CAMERAS:
            for ep in LeRobotSource(root, camera=camera):
                ep.frames()
        assert tree_snapshot(root) == before


def test_construction_errors(v3, tmp_path):
    with pytest.raises(ValueError, match="video_backend='torchcodec' is not supported"):
        LeRobotSource(v3, video_backend="torchcodec")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset root"):
        LeRobotSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub repo id"):
        LeRobotSource(tmp_path / "absent")
    root = _copy(v3, tmp_path)
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(ValueError, match="codebase_version 'v1.6' is not supported"):
        LeRobotSource(root)


def test_hub_repo_id_downloads_metadata_and_one_camera(v3, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, repo_type=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, repo_type, allow_patterns))
        return str(v3)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    src = open_source("someone/pick_place", camera="wrist", episodes="1:")
    assert isinstance(src, LeRobotSource) and src.root == v3 and src.episode_ids() == ["1", "2"]
    assert all(repo == "someone/pick_place" and kind == "dataset" for repo, kind, _ in calls)
    assert "videos/observation.images.wrist/*" in calls[-1][2]
    assert not any(CAMERAS[0] in p for p in calls[-1][2])


def test_hub_unreachable(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match="Hub could not be reached.*pass a local dataset root"):
        LeRobotSource("someone/pick_place")


def test_open_source_dispatch_for_lerobot(v3, v21):
    assert isinstance(open_source(v3), LeRobotSource)
    assert open_source(str(v21), camera="wrist", episodes=[1]).episode_ids() == ["1"]
    assert open_source(v3 / "meta" / "info.json").root == v3
    with pytest.raises(ValueError, match="instruction= does not apply to a LeRobot dataset"):
        open_source(v3, instruction="x")

"""Manifest, video-folder and single-video sources, and `open_source` dispatch for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topreward.datasets import (
    EpisodeSource,
    ManifestSource,
    RowSource,
    VideoFolderSource,
    load_manifest,
    open_source,
    write_manifest,
)
from topreward.episode import Episode

from .helpers_lerobot import coded_frames, frame_codes, write_mp4


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """clips/a.mp4 (codes 0..9, 10 fps), clips/b.mp4 (codes 100..111, 12 fps), clips/sub/c.mp4."""
    root = tmp_path_factory.mktemp("clips")
    write_mp4(root / "a.mp4", coded_frames(range(10)), 10)
    write_mp4(root / "b.mp4", coded_frames(range(100, 112)), 12)
    write_mp4(root / "sub" / "c.mp4", coded_frames(range(200, 208)), 8)
    return root


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(**kw) -> str:
    return json.dumps(kw)


def test_manifest_reads_episodes_with_relative_paths(clips, tmp_path, monkeypatch):
    manifest = _write_lines(
        clips / "lists" / "train.jsonl",
        [
            _row(video="../a.mp4", instruction="open the drawer"),
            _row(
                video=str(clips / "b.mp4"),
                instruction="close the drawer",
                fps=24.0,
                episode_id="ep-b",
                subtasks=[{"name": "reach", "start": 0.0, "end": 0.2}],
                success=False,
                operator="ann",
            ),
        ],
    )
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the manifest's folder, not the cwd
    src = ManifestSource(manifest)
    assert len(src) == 2
    assert src.episode_ids() == ["a", "ep-b"]
    episodes = list(src)
    assert all(isinstance(e, Episode) for e in episodes)
    a, b = episodes
    assert (a.instruction, a.fps, a.num_frames, a.episode_id) == ("open the drawer", 10.0, 10, "a")
    assert frame_codes(a.frames([0, 9, 4])) == [0, 9, 4]
    assert a.annotations == {}
    assert b.fps == 24.0  # the manifest overrides the file's 12 fps
    assert b.annotations == {
        "subtasks": [{"name": "reach", "start": 0.0, "end": 0.2}],
        "success": False,
        "operator": "ann",
    }
    assert frame_codes(src.get("ep-b").frames([11])) == [111]


def test_manifest_default_instruction_fills_missing_rows(clips, tmp_path):
    manifest = _write_lines(
        tmp_path / "m.jsonl",
        [_row(video=str(clips / "a.mp4")), _row(video=str(clips / "b.mp4"), instruction="own text")],
    )
    src = ManifestSource(manifest, instruction="shared text")
    assert [e.instruction for e in src] == ["shared text", "own text"]


def test_get_unknown_episode_id(clips, tmp_path):
    src = ManifestSource(
        _write_lines(tmp_path / "m.jsonl", [_row(video=str(clips / "a.mp4"), instruction="x")])
    )
    with pytest.raises(ValueError, match="unknown episode_id 'nope'.*'a'"):
        src.get("nope")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"video": "a.mp4", "instruction": "x"', "invalid JSON"),
        ('["a.mp4", "x"]', "expected a JSON object"),
        (_row(instruction="x"), 'missing key "video"'),
        (_row(video="a.mp4"), 'missing key "instruction".*instruction='),
        (_row(video="a.mp4", instruction=""), '"instruction" must be a non-empty string'),
        (_row(video="missing.mp4", instruction="x"), "video file not found: .*missing.mp4"),
        (
            _row(video="a.mp4", instruction="x", episode_id="a"),
            "duplicate episode_id 'a' \\(first at .*:1\\)",
        ),
        (_row(video="b.mp4", instruction="x", fps=0), '"fps" must be a positive number, got 0'),
        (_row(video="b.mp4", instruction="x", fps=-5.0), '"fps" must be a positive number'),
        (_row(video="b.mp4", instruction="x", fps="30"), '"fps" must be a positive number'),
        (_row(video="b.mp4", instruction="x", success="yes"), '"success" must be true or false'),
        (_row(video="b.mp4", instruction="x", subtasks=[{"name": "a"}]), "subtasks\\[0\\] must be an object"),
        (
            _row(video="b.mp4", instruction="x", subtasks=[{"name": "a", "start": 2, "end": 1}]),
            r"subtasks\[0\] needs 0 <= start",
        ),
    ],
)
def test_manifest_validation_names_file_and_line(clips, line, expected):
    manifest = _write_lines(clips / "bad.jsonl", [_row(video="a.mp4", instruction="ok"), "", line])
    with pytest.raises(ValueError, match=f"bad.jsonl:3: {expected}"):
        ManifestSource(manifest)
    with pytest.raises(ValueError, match="bad.jsonl:3"):
        load_manifest(manifest)


def test_manifest_reports_every_bad_line(clips):
    manifest = _write_lines(clips / "two_bad.jsonl", [_row(video="a.mp4"), _row(instruction="x")])
    with pytest.raises(ValueError) as info:
        ManifestSource(manifest)
    assert "two_bad.jsonl:1" in str(info.value) and "two_bad.jsonl:2" in str(info.value)


def test_manifest_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        ManifestSource(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="manifest is empty"):
        ManifestSource(_write_lines(tmp_path / "empty.jsonl", [""]))


def test_write_and_load_manifest_round_trip(clips, tmp_path):
    rows = [
        {"video": clips / "a.mp4", "instruction": "x", "success": True},
        {"video": "../clips_rel/b.mp4", "instruction": "y", "fps": 12.0},
    ]
    path = write_manifest(tmp_path / "out" / "m.jsonl", rows)
    assert load_manifest(path, check_videos=False) == [
        {"video": str(clips / "a.mp4"), "instruction": "x", "success": True},
        {"video": "../clips_rel/b.mp4", "instruction": "y", "fps": 12.0},
    ]
    with pytest.raises(ValueError, match="video file not found"):
        load_manifest(path)
    with pytest.raises(ValueError, match='row 0: missing key "instruction"'):
        write_manifest(tmp_path / "bad.jsonl", [{"video": "a.mp4"}])


def test_video_folder_with_one_instruction(clips):
    src = VideoFolderSource(clips, instruction="tidy up")
    assert src.episode_ids() == ["a", "b"]  # sorted, not recursive
    assert {e.instruction for e in src} == {"tidy up"}
    with pytest.raises(ValueError, match="pass instruction="):
        VideoFolderSource(clips)


def test_video_folder_with_manifest(clips, tmp_path):
    _write_lines(clips / "sub" / "labels.jsonl", [_row(video="c.mp4", instruction="stack")])
    src = VideoFolderSource(clips / "sub", manifest="labels.jsonl")  # found relative to the folder
    assert [e.instruction for e in src] == ["stack"]
    assert frame_codes(src.get("c").frames([7])) == [207]
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        VideoFolderSource(clips, manifest="nope.jsonl")


def test_video_folder_default_manifest_and_errors(clips, tmp_path):
    folder = tmp_path / "vids"
    write_mp4(folder / "x.mp4", coded_frames(range(4)), 4)
    _write_lines(folder / "manifest.jsonl", [_row(video="x.mp4", instruction="wave")])
    assert [e.instruction for e in VideoFolderSource(folder)] == ["wave"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        VideoFolderSource(tmp_path / "empty", instruction="x")
    with pytest.raises(FileNotFoundError, match="video folder not found"):
        VideoFolderSource(tmp_path / "absent", instruction="x")


def test_row_source(clips):
    src = RowSource([{"video": "a.mp4", "episode_id": 7}], base_dir=clips, instruction="x")
    assert src.episode_ids() == ["7"]
    assert src.get("7").num_frames == 10


def test_open_source_dispatch_for_files(clips, tmp_path):
    manifest = _write_lines(tmp_path / "m.jsonl", [_row(video=str(clips / "a.mp4"), instruction="x")])
    assert isinstance(open_source(manifest), ManifestSource)
    assert isinstance(open_source(str(clips), instruction="x"), VideoFolderSource)
    single = open_source(clips / "b.mp4", instruction="pour")
    assert isinstance(single, EpisodeSource)
    (episode,) = list(single)
    assert (episode.episode_id, episode.instruction, episode.num_frames) == ("b", "pour", 12)


def test_open_source_errors(clips, tmp_path):
    with pytest.raises(ValueError, match="single video: pass instruction="):
        open_source(clips / "a.mp4")
    with pytest.raises(ValueError, match="camera= does not apply to a folder of videos"):
        open_source(clips, camera="top", instruction="x")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="cannot open .*notes.txt"):
        open_source(other)
    with pytest.raises(FileNotFoundError, match="not found"):
        open_source(tmp_path / "missing" / "dir")
    with pytest.raises(FileNotFoundError, match="not found"):
        open_source("./no_such.mp4")

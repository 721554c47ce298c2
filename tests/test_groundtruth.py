"""Tests for topreward.groundtruth: hand-computed stage progress, fallbacks, and each malformed input."""

from __future__ import annotations

import numpy as np
import pytest

from topreward.groundtruth import ground_truth_for, stage_progress, time_progress, validate_subtasks


def _sub(name: str, start: float, end: float) -> dict:
    return {"name": name, "start": start, "end": end}


def test_stage_progress_hand_computed():
    # 10 frames at 2 fps: t = 0, 0.5, ..., 4.5. Two subtasks of 2 s each with a 0.5 s gap and a 0.5 s lead-in.
    subtasks = [_sub("reach", 0.5, 2.5), _sub("grasp", 3.0, 5.0)]
    got = stage_progress(subtasks, num_frames=10, fps=2.0, episode="ep0")
    # t:         0    0.5  1.0    1.5   2.0    2.5  3.0  3.5    4.0   4.5
    # reach frac 0    0    .25    .5    .75    1    1    1      1     1
    # grasp frac 0    0    0      0     0      0    0    .25    .5    .75
    want = np.array([0, 0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.625, 0.75, 0.875])
    np.testing.assert_allclose(got, want)


def test_stage_progress_before_first_and_after_last():
    got = stage_progress([_sub("a", 1.0, 2.0)], num_frames=5, fps=1.0)
    np.testing.assert_allclose(got, [0, 0, 1, 1, 1])


def test_stage_progress_single_subtask_is_linear_over_its_span():
    got = stage_progress([_sub("all", 0.0, 4.0)], num_frames=5, fps=1.0)
    np.testing.assert_allclose(got, [0, 0.25, 0.5, 0.75, 1.0])


def test_stage_progress_end_may_exceed_duration_by_one_frame():
    # 4 frames at 1 fps: duration 4 s; the last frame is at 3 s; end = 5 s is one frame period over.
    got = stage_progress([_sub("a", 0.0, 2.0), _sub("b", 2.0, 5.0)], num_frames=4, fps=1.0)
    np.testing.assert_allclose(got, [0, 0.25, 0.5, 0.5 + 1 / 6])


def test_stage_progress_touching_subtasks_and_missing_names():
    got = stage_progress([{"start": 0, "end": 1}, {"start": 1, "end": 2}], num_frames=3, fps=1.0)
    np.testing.assert_allclose(got, [0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("subtasks", "match"),
    [
        ([], "empty list"),
        ([_sub("reach", 1.0, 1.0)], r"'reach'.*does not end after it starts"),
        ([_sub("reach", 2.0, 1.0)], r"'reach'.*does not end after it starts"),
        ([_sub("reach", -0.5, 1.0)], r"'reach'.*starts before 0"),
        (
            [_sub("grasp", 2.0, 3.0), _sub("reach", 0.0, 1.0)],
            r"'reach'.*starts before the previous subtask 'grasp'",
        ),
        (
            [_sub("reach", 0.0, 2.0), _sub("grasp", 1.5, 3.0)],
            r"'grasp'.*overlaps the previous subtask 'reach'",
        ),
        ([_sub("reach", 0.0, 1.0), _sub("lift", 11.0, 12.0)], r"'lift'.*starts after the episode ends"),
        ([_sub("reach", 0.0, 11.5)], r"'reach'.*ends after the episode"),
        ([{"name": "x", "start": 0.0}], r"'x'.*lacks \['end'\]"),
        ([{"name": "x", "start": "a", "end": 1}], r"'x' has non-numeric times"),
        ([{"name": "x", "start": 0.0, "end": float("nan")}], r"'x' has non-finite times"),
    ],
)
def test_stage_progress_errors_name_episode_and_subtask(subtasks, match):
    # 10 frames at 1 fps: duration 10 s; ends up to 11 s are tolerated.
    with pytest.raises(ValueError, match=match) as info:
        stage_progress(subtasks, num_frames=10, fps=1.0, episode="ep-7")
    assert "ep-7" in str(info.value)


def test_stage_progress_type_errors():
    with pytest.raises(TypeError, match="list of"):
        stage_progress("reach", num_frames=3, fps=1.0)
    with pytest.raises(TypeError, match="subtask #0"):
        stage_progress([("reach", 0, 1)], num_frames=3, fps=1.0)


@pytest.mark.parametrize(
    ("num_frames", "fps"), [(0, 1.0), (-3, 1.0), (2.5, 1.0), (5, 0.0), (5, float("nan"))]
)
def test_stage_progress_rejects_bad_frames_or_fps(num_frames, fps):
    with pytest.raises(ValueError, match="ep1"):
        stage_progress([_sub("a", 0, 1)], num_frames=num_frames, fps=fps, episode="ep1")


def test_validate_subtasks_accepts_valid():
    validate_subtasks([_sub("a", 0, 1), _sub("b", 1.5, 10.9)], num_frames=10, fps=1.0)


def test_time_progress():
    np.testing.assert_allclose(time_progress(5), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(time_progress(1), [1.0])
    with pytest.raises(ValueError, match="positive integer"):
        time_progress(0)


def test_ground_truth_prefers_progress_then_subtasks_then_success():
    subs = [_sub("a", 0.0, 4.0)]
    given = [0.0, 0.1, 0.1, 0.9, 1.0]
    np.testing.assert_allclose(
        ground_truth_for({"progress": given, "subtasks": subs, "success": True}, 5, 1.0), given
    )
    np.testing.assert_allclose(
        ground_truth_for({"subtasks": subs, "success": False}, 5, 1.0), [0, 0.25, 0.5, 0.75, 1.0]
    )
    np.testing.assert_allclose(ground_truth_for({"success": True}, 3, 30.0), [0, 0.5, 1.0])
    assert ground_truth_for({"progress": None, "subtasks": None, "success": True}, 3, 1.0) is not None


@pytest.mark.parametrize("annotations", [{}, {"success": False}, {"success": None}, {"success": "yes"}])
def test_ground_truth_none_without_annotations_for_failures(annotations):
    assert ground_truth_for(annotations, 5, 1.0) is None


@pytest.mark.parametrize(
    ("progress", "match"),
    [
        ([0.0, 0.5], r"shape \(2,\) but the episode has 3 frames"),
        ([[0.0, 0.5, 1.0]], "shape"),
        ([0.0, float("nan"), 1.0], r"progress\[1\] = nan is not finite"),
        ([0.0, float("inf"), 1.0], "not finite"),
        ([0.0, 50.0, 100.0], r"\[0, 1\].*divide percentages by 100"),
        ([-0.1, 0.5, 1.0], r"\[0, 1\]"),
        (["a", "b", "c"], "list of numbers"),
    ],
)
def test_ground_truth_bad_progress(progress, match):
    with pytest.raises(ValueError, match=match) as info:
        ground_truth_for({"progress": progress}, 3, 1.0, episode="ep-3")
    assert "ep-3" in str(info.value)


def test_ground_truth_empty_subtasks_is_an_error_not_zeros():
    with pytest.raises(ValueError, match="empty list"):
        ground_truth_for({"subtasks": [], "success": True}, 3, 1.0)

"""Frame sampling, sizes, prefixes; progress normalisation, interpolation, success score, dense rewards."""

from __future__ import annotations

import numpy as np
import pytest

from topreward.rewards import dense_rewards, frame_progress, minmax_progress, success_score
from topreward.sampling import SamplingConfig, frame_size, prefix_lengths, resize_frames, sample_indices


def test_sample_indices_rate_and_ends():
    # 300 frames at 30 fps span 9.97 s: at 2 fps that is 1 + floor(19.93) = 20 frames, first and last included
    idx = sample_indices(300, 30.0, 2.0, 32)
    assert len(idx) == 20 and idx[0] == 0 and idx[-1] == 299
    assert set(np.diff(idx).tolist()) == {15, 16}  # uniform stride 299 / 19, rounded


def test_sample_indices_cap_spreads_over_whole_episode():
    idx = sample_indices(3000, 30.0, 2.0, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 2999
    assert np.ptp(np.diff(idx)) <= 1


def test_sample_indices_short_clip_and_too_few_frames():
    assert sample_indices(3, 30.0, 2.0, 32).tolist() == [0, 2]  # at least first and last
    with pytest.raises(ValueError, match="at least 2 frames"):
        sample_indices(1, 30.0, 2.0, 32)


def test_prefix_lengths():
    assert prefix_lengths(5, None) == [1, 2, 3, 4, 5]
    assert prefix_lengths(5, 15) == [1, 2, 3, 4, 5]
    assert prefix_lengths(45, 15) == np.round(np.linspace(1, 45, 15)).astype(int).tolist()
    assert prefix_lengths(45, 15)[0] == 1 and prefix_lengths(45, 15)[-1] == 45
    with pytest.raises(ValueError, match="num_prefixes"):
        prefix_lengths(10, 1)


def test_frame_size_budget_and_grid():
    assert frame_size(480, 640, 32, 256 * 256) == (224, 288)
    h, w = frame_size(480, 640, 28, 200 * 200)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 200 * 200
    assert frame_size(100, 100, 32, 10**6) == (96, 96)  # no upscaling beyond rounding
    assert frame_size(480, 640, 32, 1, size=(250, 250)) == (256, 256)
    assert frame_size(10, 10, 32, 10) == (32, 32)  # never below one patch cell


def test_resize_frames_shape_and_dtype():
    frames = np.random.default_rng(0).integers(0, 255, (3, 50, 70, 3), dtype=np.uint8)
    out = resize_frames(frames, (64, 96))
    assert out.shape == (3, 64, 96, 3) and out.dtype == np.uint8
    assert resize_frames(frames, (50, 70)) is frames


def test_sampling_config_validation():
    with pytest.raises(ValueError, match="max_frames"):
        SamplingConfig(max_frames=1)
    with pytest.raises(ValueError, match="fps"):
        SamplingConfig(fps=-1)


def test_minmax_progress_hand_values():
    np.testing.assert_allclose(minmax_progress([-3.0, -1.0, -2.0], eps=0.0), [0.0, 1.0, 0.5])
    p = minmax_progress([-3.0, -1.0], eps=1e-6)
    assert p[1] == pytest.approx(2 / (2 + 1e-6))
    np.testing.assert_allclose(minmax_progress([-2.0, -2.0]), [0.0, 0.0])  # constant: eps avoids 0/0


def test_frame_progress_interpolates_and_holds():
    np.testing.assert_allclose(frame_progress([2, 4], [0.0, 1.0], 6), [0, 0, 0, 0.5, 1, 1])


def test_success_score_last_window():
    assert success_score([-5, -4, -3, -2, -1]) == pytest.approx(-2.0)
    assert success_score([-5, -1], window=3) == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="window"):
        success_score([-1.0], window=0)


def test_dense_rewards_scale_and_cap():
    np.testing.assert_allclose(dense_rewards([0.0, 0.1, 0.5, 0.4]), [0.0, 0.1, 0.4, -0.1])
    np.testing.assert_allclose(
        dense_rewards([0.0, 0.1, 0.5, 0.4], scale=2.0, max_reward=0.5), [0.0, 0.2, 0.5, -0.2]
    )

"""`topreward.weights.FrameWeights`: lookup by global frame index, samplers, and a tiny model trained with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from topreward.weights import FrameWeights, awr_weights

from .lerobot_venv import LEROBOT_PYTHON, needs_lerobot


def write_annotation(path, lengths=(4, 5, 3), skipped=(1,)):
    """An annotation-shaped parquet: episode e starts at global index 100 + sum(lengths[:e]); `skipped`
    episodes have NaN rewards, as `topreward annotate` writes them."""
    index, episode, reward = [], [], []
    start = 100
    for e, n in enumerate(lengths):
        index += list(range(start, start + n))
        episode += [e] * n
        reward += [np.nan] * n if e in skipped else list(np.linspace(0.0, 0.1 * (e + 1), n))
        start += n
    table = pa.table(
        {
            "index": pa.array(index, pa.int64()),
            "episode_index": pa.array(episode, pa.int64()),
            "dense_reward": pa.array(reward, pa.float32()),
        }
    )
    pq.write_table(table, path)
    return np.array(index), np.array(episode), np.array(reward, np.float32)


def test_lookup_by_global_index_matches_awr(tmp_path):
    index, _, reward = write_annotation(tmp_path / "a.parquet")
    fw = FrameWeights.from_parquet(tmp_path / "a.parquet", max_weight=1.5)
    want = np.nan_to_num(awr_weights(reward, "auto", 1.5)[0], nan=0.0)  # skipped frames: weight 0
    batch = np.array([111, 100, 104, 100])  # any order, repeats
    pos = batch - 100
    np.testing.assert_allclose(fw.lookup(batch), want[pos])
    t = fw.lookup(torch.tensor(batch))
    assert t.dtype == torch.float32 and torch.allclose(t, torch.tensor(want[pos], dtype=torch.float32))
    assert fw.lookup(torch.tensor([[100, 101]])).shape == (1, 2)
    with pytest.raises(KeyError, match="frame index 99 is not in"):
        fw.lookup([99])
    with pytest.raises(KeyError, match="112"):
        fw.lookup(torch.tensor([112]))
    assert FrameWeights.from_parquet(tmp_path / "a.parquet", missing=1.0).lookup([104])[0] == 1.0


def test_weights_file_column_and_bad_inputs(tmp_path):
    pq.write_table(
        pa.table({"index": [0, 1, 2], "episode_index": [0, 0, 0], "weight": [0.5, np.nan, 2.0]}),
        tmp_path / "w.parquet",
    )
    fw = FrameWeights.from_parquet(tmp_path / "w.parquet")
    np.testing.assert_allclose(fw.lookup([2, 1, 0]), [2.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="no column 'nope'"):
        FrameWeights.from_parquet(tmp_path / "w.parquet", column="nope")
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        FrameWeights.from_parquet(tmp_path / "missing.parquet")
    pq.write_table(pa.table({"frame": [0]}), tmp_path / "foreign.parquet")
    with pytest.raises(ValueError, match="no `index` column"):
        FrameWeights.from_parquet(tmp_path / "foreign.parquet")
    with pytest.raises(ValueError, match="appears twice"):
        FrameWeights(np.array([0, 0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        FrameWeights(np.array([0, 1]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="nothing to draw"):
        FrameWeights(np.array([0, 1]), np.array([np.nan, 0.0])).frame_sampler()


def test_samplers_follow_the_weights(tmp_path):
    fw = FrameWeights(np.arange(6), np.array([0.0, 1.0, 3.0, 0.0, np.nan, 4.0]), np.array([0, 0, 0, 1, 1, 2]))
    g = torch.Generator().manual_seed(0)
    draws = np.array(list(fw.frame_sampler(num_samples=8000, generator=g)))
    counts = np.bincount(draws, minlength=6) / draws.size
    np.testing.assert_allclose(counts, [0, 1 / 8, 3 / 8, 0, 0, 4 / 8], atol=0.02)
    # dataset positions that hold other global indices (e.g. a subset of episodes)
    assert set(fw.frame_sampler(indices=[5, 1], num_samples=200, generator=g)) == {0, 1}
    assert fw.episode_weights() == {0: pytest.approx(4 / 3), 1: 0.0, 2: 4.0}
    ep_draws = list(fw.episode_sampler(episodes=[2, 1, 0], num_samples=500, generator=g))
    assert set(ep_draws) == {0, 2}  # episode 1 (position 1) has weight 0
    with pytest.raises(KeyError, match="episode 7"):
        fw.episode_sampler(episodes=[7])


def test_tiny_model_trains_with_sampler_and_weighted_loss():
    """Frames of 'bad' episodes (weight 0) carry wrong targets: a model trained with the weights learns the
    good mapping, both by sampling and by weighting the loss."""
    rng = np.random.default_rng(0)
    n = 256
    x = rng.normal(size=(n, 4)).astype(np.float32)
    w_true = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    good = np.arange(n) % 2 == 0
    y = np.where(good, x @ w_true, -(x @ w_true)).astype(np.float32)  # bad frames: the opposite action
    index = np.arange(1000, 1000 + n)
    fw = FrameWeights(index, np.where(good, 1.0, np.nan), np.arange(n) // 16)  # NaN (no value) -> weight 0
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(index)
    )

    def train(sampler, weighted_loss):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1, bias=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=32, sampler=sampler, shuffle=sampler is None)
        for _ in range(5):
            for xb, yb, ib in loader:
                per_sample = (model(xb).squeeze(-1) - yb) ** 2
                w = fw.lookup(ib) if weighted_loss else torch.ones_like(per_sample)
                loss = (w * per_sample).sum() / w.sum().clamp(min=1e-8)
                model.zero_grad()
                loss.backward()
                with torch.no_grad():  # plain SGD; torch.optim would import torch._dynamo, which can crash
                    model.weight -= 0.1 * model.weight.grad  # a process where Mesa's EGL is loaded (test_sim)
        return model.weight.detach().numpy().ravel()

    g = torch.Generator().manual_seed(0)
    for learned in (train(fw.frame_sampler(generator=g), False), train(None, True)):
        np.testing.assert_allclose(learned, w_true, atol=0.1)
    unweighted = train(None, False)  # the conflicting targets cancel out: nothing is learned
    assert np.abs(unweighted).max() < 0.5
    assert set(fw.episode_sampler(num_samples=100, generator=g)) <= set(range(n // 16))


def rabc_reference(index, episode_index, progress, chunk_size, kappa, eps=1e-6, fallback=1.0):
    """RA-BC per frame, one frame at a time from the formula (SARM Eq.8-9 as LeRobot's RABCWeights reads it)."""
    value = {int(i): float(p) for i, p in zip(index, progress) if np.isfinite(p)}
    ends = {}
    for i, e in zip(index, episode_index):
        ends[int(e)] = max(ends.get(int(e), -1), int(i) + 1)
    deltas = []
    for i, e in zip(index, episode_index):
        i, future = int(i), min(int(i) + chunk_size, ends[int(e)] - 1)
        deltas.append(value[future] - value[i] if i in value and future in value else float("nan"))
    known = [d for d in deltas if d == d]
    mean, std = max(float(np.mean(known)), 0.0), max(float(np.std(known)), eps)
    weights = []
    for d in deltas:
        if d != d:
            weights.append(fallback)
        elif d > kappa:
            weights.append(1.0)
        elif d >= 0:
            weights.append(min(1.0, max(0.0, (d - (mean - 2 * std)) / (4 * std + eps))))
        else:
            weights.append(0.0)
    return np.array(weights), np.array(deltas)


def progress_rows(seed: int = 0):
    """Three episodes (30, 7 and 25 frames, global indices from 100): noisy rising progress, a few frames
    without a value, one episode without any."""
    rng = np.random.default_rng(seed)
    lengths = (30, 7, 25)
    episode = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    index = 100 + np.arange(len(episode))
    progress = np.concatenate([np.clip(np.linspace(0, 1, n) + rng.normal(0, 0.05, n), 0, 1) for n in lengths])
    progress[[3, 17, 40]] = np.nan
    progress[episode == 1] = np.nan
    return index, episode, progress.astype(np.float32)


@pytest.mark.parametrize("chunk_size", [1, 5, 50])
def test_rabc_weights_equal_the_formula_frame_by_frame(chunk_size):
    from topreward.weights import rabc_weights

    index, episode, progress = progress_rows()
    want_w, want_d = rabc_reference(index, episode, progress, chunk_size, kappa=0.01)
    shuffle = np.random.default_rng(1).permutation(len(index))  # rows in any order
    w, d, stats = rabc_weights(index[shuffle], episode[shuffle], progress[shuffle], chunk_size=chunk_size)
    np.testing.assert_allclose(w, want_w[shuffle], atol=1e-9)
    np.testing.assert_allclose(d, want_d[shuffle], atol=1e-9)
    assert (w == 1.0)[episode[shuffle] == 1].all()  # no progress: LeRobot's fallback weight
    assert stats["delta_std"] > 0 and (chunk_size == 50 or 0 < (w == 0).sum() < len(w))  # 50: deltas to the end
    with pytest.raises(ValueError, match="chunk_size"):
        rabc_weights(index, episode, progress, chunk_size=0)
    with pytest.raises(ValueError, match="repeat"):
        rabc_weights(np.r_[index, index[:1]], np.r_[episode, episode[:1]], np.r_[progress, progress[:1]])


def write_progress_file(path, index, episode, progress):
    pq.write_table(
        pa.table(
            {
                "index": pa.array(index, pa.int64()),
                "episode_index": pa.array(episode, pa.int64()),
                "frame_index": pa.array(index - index[np.searchsorted(episode, episode)], pa.int64()),
                "progress_sparse": pa.array(progress, pa.float32()),
                "progress_dense": pa.array(progress[::-1].copy(), pa.float32()),
            }
        ),
        path,
    )


@needs_lerobot
@pytest.mark.parametrize(("chunk_size", "head_mode"), [(5, "sparse"), (50, "dense")])
def test_rabc_weights_equal_real_lerobots(tmp_path, chunk_size, head_mode):
    """The same file through LeRobot's own RABCWeights (in its venv): the same weights, up to LeRobot's
    scaling of a batch's weights to sum to its size."""
    import json
    import os
    import subprocess

    from topreward.weights import rabc_weights

    index, episode, progress = progress_rows(seed=2)
    path = tmp_path / "sarm_progress.parquet"
    write_progress_file(path, index, episode, progress)
    script = Path(__file__).resolve().parents[1] / "scripts" / "lerobot_ci" / "rabc_weights.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [LEROBOT_PYTHON, str(script), str(path), str(chunk_size), head_mode, "0.01"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    column = progress if head_mode == "sparse" else progress[::-1].copy()
    w, _, stats = rabc_weights(index, episode, column, chunk_size=chunk_size, kappa=0.01)
    assert theirs["index"] == index.tolist()
    scaled = w * len(w) / (w.sum() + 1e-6)
    np.testing.assert_allclose(theirs["weights"], scaled, atol=1e-5)
    assert theirs["delta_mean"] == pytest.approx(stats["delta_mean"], abs=1e-7)
    assert theirs["delta_std"] == pytest.approx(stats["delta_std"], abs=1e-7)

"""`topreward.weights.FrameWeights`: lookup by global frame index, samplers, and a tiny model trained with them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from topreward.weights import FrameWeights, awr_weights


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

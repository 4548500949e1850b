"""Streaming top-k: same selection as the full sort (ties included), O(budget) state, used by acquire."""
import numpy as np
import pytest
import torch

import lossal_tasks as lt
import lossal_tasks.acquisition as acquisition
from conftest import VectorDataset, oracle_model
from lossal_tasks.strategies import RunningTopK, streamed_score, top_k, top_k_pairs


def tied_scores(num, seed):
    """Few distinct values, so most of the top-k boundary is ties."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 6, size=num)).float()


@pytest.mark.parametrize("k", [1, 5, 37, 200])
@pytest.mark.parametrize("batch", [1, 4, 33, 500])
def test_running_top_k_selects_exactly_what_top_k_selects(k, batch):
    values = tied_scores(150, seed=k + batch)
    values[[7, 90]] = float("nan")  # NaN sorts above everything in both routes
    best = RunningTopK(k)
    for start in range(0, len(values), batch):
        best.push(values[start:start + batch])
        assert len(best.values) <= k and len(best.positions) <= k  # O(k) state, never the stream
    expected = top_k(values, k)
    assert best.positions.tolist() == expected.tolist()
    torch.testing.assert_close(best.values, values[expected], rtol=0, atol=0, equal_nan=True)
    assert best.seen == 150


def test_shards_merge_to_the_global_top_k():
    values = tied_scores(301, seed=7)
    shards = [np.arange(rank, 301, 3) for rank in range(3)]  # interleaved, as a sharded loader might
    kept_values, kept_positions = [], []
    for shard in shards:
        best = RunningTopK(20)
        for start in range(0, len(shard), 16):
            best.push(values[shard[start:start + 16]])
        kept_values.append(best.values)
        kept_positions.append(torch.from_numpy(shard)[best.positions])
    merged_values, merged_positions = top_k_pairs(torch.cat(kept_values), torch.cat(kept_positions), 20)
    assert merged_positions.tolist() == top_k(values, 20).tolist()
    assert torch.equal(merged_values, values[top_k(values, 20)])


def test_only_pure_top_k_strategies_stream():
    streaming = {name for name in lt.STRATEGIES.names() if streamed_score(lt.STRATEGIES.get(name))}
    assert {"learning_loss", "entropy"} <= streaming
    assert not streaming & {"random", "coreset", "learning_loss_diverse"}


@pytest.mark.parametrize("strategy", ["learning_loss", "entropy"])
def test_acquire_streams_the_pool_and_matches_the_full_route(toy_task, strategy, monkeypatch):
    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(130, 4)).astype(np.float32)
    inputs[:, 0] = rng.integers(0, 4, size=130)  # tied predicted losses
    dataset = VectorDataset(inputs, np.zeros(130))
    model = oracle_model(toy_task)
    candidates = rng.permutation(130)[:110]
    chosen = lt.STRATEGIES.get(strategy)

    full = acquisition.score_candidates(model, toy_task, dataset, candidates, chosen.needs, batch_size=9,
                                        channels_last=False)
    expected = chosen(full, 25, torch.Generator())
    score = full.loss if strategy == "learning_loss" else full.uncertainty

    def no_full_scoring(*args, **kwargs):
        raise AssertionError("a pool-wide top-k must not keep every score")

    monkeypatch.setattr(acquisition, "score_candidates", no_full_scoring)
    selection = lt.acquire(model, toy_task, dataset, candidates, 25, strategy=strategy, batch_size=9,
                           channels_last=False)
    assert selection.indices == candidates[expected.numpy()].tolist()
    assert selection.scores == score[expected].tolist()
    with pytest.raises(AssertionError, match="must not keep"):  # a subset still takes the full route
        lt.acquire(model, toy_task, dataset, candidates, 5, strategy=strategy, subset_size=50,
                   channels_last=False)

"""coreset and learning_loss_diverse: hand-made geometry, chunking, determinism, engine contract."""
import numpy as np
import pytest
import torch

import lossal_tasks as lt
from conftest import VectorDataset, oracle_model
from lossal_tasks.distances import greedy_k_center, min_distances
from lossal_tasks.strategies import ScoredCandidates, coreset, learning_loss, learning_loss_diverse

GEN = torch.Generator().manual_seed(0)


def naive_k_center(points, budget, initial, weights=None):
    """Reference: the full N x (N + K) distance matrix, recomputed from scratch every step."""
    chosen = []
    for _ in range(budget):
        centers = torch.cat([initial, points[chosen]]) if initial is not None else points[chosen]
        if len(centers):
            nearest = torch.cdist(points, centers, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
        else:
            nearest = torch.full((len(points),), float("inf"), dtype=points.dtype)
        gain = nearest if weights is None else nearest * weights
        gain[chosen] = -1.0
        chosen.append(int(torch.argmax(gain)))
    return chosen


def blob_with_outliers(seed=0):
    rng = np.random.default_rng(seed)
    blob = rng.normal(0.0, 0.2, size=(60, 3))
    far = np.array([[9.0, 0.0, 0.0], [0.0, -8.0, 0.0], [0.0, 0.0, 7.0]])
    points = np.concatenate([blob[:20], far[:1], blob[20:45], far[1:2], blob[45:], far[2:]])
    far_positions = [20, 46, 62]
    return torch.from_numpy(points).float(), far_positions


def test_coreset_picks_the_far_out_points_farthest_first():
    points, far = blob_with_outliers()
    picked = coreset(ScoredCandidates(indices=np.arange(len(points)), embedding=points), 3, GEN)
    assert picked.tolist() == far  # 9 > 8 > 7 away from the blob, so in that order


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 10_000])
def test_chunked_distances_match_the_full_matrix(dtype, chunk_size):
    rng = np.random.default_rng(1)
    points = torch.from_numpy(rng.normal(size=(53, 6))).to(dtype)
    centers = torch.from_numpy(rng.normal(size=(4, 6))).to(dtype)
    full = torch.cdist(points, centers, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    chunked = min_distances(points, centers, chunk_size)
    assert chunked.dtype == dtype
    assert torch.equal(chunked, full)
    weights = torch.from_numpy(rng.uniform(0.1, 1.0, size=53)).to(dtype)
    for initial in (centers[:1], None):
        expected = naive_k_center(points, 12, initial, weights if initial is None else None)
        got = greedy_k_center(points, 12, initial, weights if initial is None else None, chunk_size)
        assert got.tolist() == expected


def test_greedy_k_center_never_repeats_on_duplicates():
    points = torch.zeros(5, 2)
    assert sorted(greedy_k_center(points, 5, points[:1], chunk_size=2).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="budget"):
        greedy_k_center(points, 6, None)


def clones_and_loners():
    """Five near-copies with the highest losses, four distinct points with slightly lower ones."""
    rng = np.random.default_rng(2)
    clones = np.array([5.0, 5.0]) + rng.normal(0, 0.01, size=(5, 2))
    loners = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    embedding = torch.from_numpy(np.concatenate([loners[:2], clones, loners[2:]])).float()
    loss = torch.tensor([0.8, 0.7, 1.0, 0.99, 0.98, 0.97, 0.96, 0.6, 0.5])
    return ScoredCandidates(indices=np.arange(9), loss=loss, embedding=embedding)


def test_learning_loss_diverse_spreads_the_picks_over_distinct_hard_samples():
    scored = clones_and_loners()
    assert learning_loss(scored, 4, GEN).tolist() == [2, 3, 4, 5]  # all near-copies
    diverse = learning_loss_diverse(scored, 4, GEN, factor=2)
    assert diverse[0] == 2  # highest predicted loss first
    assert len(set(diverse.tolist()) & {2, 3, 4, 5, 6}) == 1
    assert set(diverse.tolist()) <= {0, 1, 2, 3, 4, 5, 6, 7}  # only the top 2 x budget = 8 compete


def test_learning_loss_diverse_with_factor_one_is_learning_loss():
    rng = np.random.default_rng(3)
    scored = ScoredCandidates(indices=np.arange(40), loss=torch.from_numpy(rng.normal(size=40)).float(),
                              embedding=torch.from_numpy(rng.normal(size=(40, 5))).float())
    assert sorted(learning_loss_diverse(scored, 7, GEN, factor=1).tolist()) == \
        sorted(learning_loss(scored, 7, GEN).tolist())
    chunked = [learning_loss_diverse(scored, 7, GEN, chunk_size=size).tolist() for size in (1, 4, 40)]
    assert chunked[0] == chunked[1] == chunked[2]
    with pytest.raises(ValueError, match="factor"):
        learning_loss_diverse(scored, 7, GEN, factor=0.5)


@pytest.mark.parametrize("strategy", ["coreset", "learning_loss_diverse"])
def test_acquire_with_embedding_strategies(toy_task, strategy):
    rng = np.random.default_rng(4)
    inputs = np.abs(rng.normal(size=(70, 4))).astype(np.float32)
    inputs[11, 1] += 40.0  # two far-out samples, far from each other too, with ordinary loss
    inputs[37, 2] += 40.0
    dataset = VectorDataset(inputs, np.zeros(70))
    model = oracle_model(toy_task)
    labeled = list(range(0, 70, 5))
    runs = [lt.acquire(model, toy_task, dataset, range(70), 6, strategy=strategy, labeled=labeled, seed=seed,
                       batch_size=8, channels_last=False) for seed in (0, 0, 9)]
    assert runs[0].indices == runs[1].indices == runs[2].indices  # no random choice inside
    assert len(set(runs[0].indices)) == 6 and not set(runs[0].indices) & set(labeled)
    if strategy == "coreset":
        assert set(runs[0].indices[:2]) == {11, 37} and runs[0].scores == [None] * 6
    else:
        assert runs[0].scores[0] == pytest.approx(inputs[[i for i in range(70) if i % 5], 0].max())
        assert runs[0].scores == pytest.approx(inputs[runs[0].indices, 0].tolist())

import numpy as np
import pytest
import torch
from torch import nn

import lossal_tasks as lt
from conftest import VectorDataset, make_vectors, oracle_model


def difficulty_dataset(num=97, seed=0):
    rng = np.random.default_rng(seed)
    difficulty = rng.permutation(num).astype(np.float32) + 1.0
    inputs = rng.normal(size=(num, 4)).astype(np.float32)
    inputs[:, 0] = difficulty
    return VectorDataset(inputs, np.zeros(num)), difficulty


@pytest.mark.parametrize("batch_size", [1, 7, 64, 500])
def test_scores_are_aligned_with_samples(toy_task, batch_size):
    dataset, difficulty = difficulty_dataset()
    candidates = np.random.default_rng(1).permutation(len(dataset))[:80]
    selection = lt.acquire(oracle_model(toy_task), toy_task, dataset, candidates, budget=10,
                           batch_size=batch_size, channels_last=False)
    expected = candidates[np.argsort(-difficulty[candidates])[:10]]
    assert selection.indices == expected.tolist()  # highest predicted loss first, never the lowest
    assert selection.scores == pytest.approx(difficulty[expected].tolist())


def test_subset_selection_is_aligned_and_seeded(toy_task):
    dataset, difficulty = difficulty_dataset(200)
    model = oracle_model(toy_task)
    first = lt.acquire(model, toy_task, dataset, range(200), 5, subset_size=50, seed=3,
                       batch_size=9, channels_last=False)
    again = lt.acquire(model, toy_task, dataset, range(200), 5, subset_size=50, seed=3,
                       batch_size=9, channels_last=False)
    other = lt.acquire(model, toy_task, dataset, range(200), 5, subset_size=50, seed=4,
                       batch_size=9, channels_last=False)
    assert first.indices == again.indices
    assert first.indices != other.indices
    assert first.num_scored == 50
    assert first.scores == sorted(first.scores, reverse=True)
    assert np.allclose(first.scores, difficulty[first.indices])


def test_no_labeled_or_repeated_index_is_chosen(toy_task):
    dataset, _ = difficulty_dataset(60)
    labeled = list(range(0, 60, 2))
    candidates = list(range(60)) + list(range(10))  # repeated candidates, some labeled
    for strategy in ("learning_loss", "random", "entropy"):
        selection = lt.acquire(oracle_model(toy_task), toy_task, dataset, candidates, 20,
                               strategy=strategy, labeled=labeled, channels_last=False)
        assert len(selection.indices) == len(set(selection.indices)) == 20
        assert not set(selection.indices) & set(labeled)


def test_budget_larger_than_pool_takes_everything(toy_task, caplog):
    dataset, _ = difficulty_dataset(12)
    selection = lt.acquire(oracle_model(toy_task), toy_task, dataset, range(5), 50, channels_last=False)
    assert sorted(selection.indices) == [0, 1, 2, 3, 4]
    assert "larger than" in caplog.text


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_bad_budget_is_a_clear_error(toy_task, budget):
    with pytest.raises(lt.ConfigError, match="budget"):
        lt.acquire(oracle_model(toy_task), toy_task, make_vectors(10), range(10), budget)


def test_empty_pool_and_out_of_range_candidates(toy_task):
    model = oracle_model(toy_task)
    with pytest.raises(lt.ConfigError, match="no unlabeled candidates"):
        lt.acquire(model, toy_task, make_vectors(4), range(4), 2, labeled=range(4))
    with pytest.raises(lt.ConfigError, match="outside the dataset of 4"):
        lt.acquire(model, toy_task, make_vectors(4), [1, 9], 1)


def test_unknown_strategy_and_missing_uncertainty(toy_task, tiny_classification):
    with pytest.raises(lt.ConfigError, match="unknown strategy 'smart'; known: .*learning_loss"):
        lt.acquire(oracle_model(toy_task), toy_task, make_vectors(4), range(4), 1, strategy="smart")

    class NoUncertainty(lt.Task):
        name = "no_uncertainty"

    with pytest.raises(lt.ConfigError, match="needs task uncertainty.*'no_uncertainty'"):
        lt.acquire(oracle_model(toy_task), NoUncertainty(), make_vectors(4), range(4), 1, strategy="entropy")


def test_random_strategy_runs_no_model_and_is_seeded(toy_task):
    class Exploding(nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("random must not score")

    first = lt.acquire(Exploding(), toy_task, make_vectors(50), range(50), 7, strategy="random", seed=5)
    second = lt.acquire(Exploding(), toy_task, make_vectors(50), range(50), 7, strategy="random", seed=5)
    assert first.indices == second.indices and len(set(first.indices)) == 7


def test_entropy_uses_task_uncertainty(toy_task):
    dataset = make_vectors(30)
    model = oracle_model(toy_task)
    selection = lt.acquire(model, toy_task, dataset, range(30), 4, strategy="entropy", channels_last=False)
    with torch.no_grad():
        outputs = model(torch.from_numpy(dataset.inputs)).outputs
    assert selection.indices == torch.argsort(outputs.abs(), descending=True)[:4].tolist()


def test_custom_strategy_gets_only_what_it_needs(toy_task):
    @lt.STRATEGIES.register("test_lowest_first_dim")
    @lt.needs("embedding")
    def lowest(scored, budget, generator):
        assert scored.loss is None and scored.uncertainty is None
        return torch.argsort(scored.embedding[:, 0])[:budget]

    dataset, difficulty = difficulty_dataset(40)
    try:
        selection = lt.acquire(oracle_model(toy_task), toy_task, dataset, range(40), 3,
                               strategy="test_lowest_first_dim", channels_last=False)
    finally:
        lt.STRATEGIES.unregister("test_lowest_first_dim")
    assert "test_lowest_first_dim" not in lt.STRATEGIES
    assert selection.indices == np.argsort(difficulty)[:3].tolist()

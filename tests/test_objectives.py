import math

import pytest
import torch

import lossal_tasks as lt


def test_ranking_loss_matches_hand_computed_pairs():
    # Pairs are (0, 3) and (1, 2): B // 2 = 2 pairs.
    predicted = torch.tensor([0.5, 2.0, 1.0, 0.0])
    target = torch.tensor([3.0, 1.0, 2.0, 0.5])
    # pair (0,3): l0 > l3 so sign +1: max(0, 1 - (0.5 - 0.0)) = 0.5
    # pair (1,2): l1 < l2 so sign -1: max(0, 1 + (2.0 - 1.0)) = 2.0
    assert lt.ranking_loss(predicted, target).item() == pytest.approx((0.5 + 2.0) / 2)


def test_ranking_loss_direction_rewards_correct_order():
    target = torch.tensor([5.0, 0.0])
    right = lt.ranking_loss(torch.tensor([3.0, 0.0]), target)
    wrong = lt.ranking_loss(torch.tensor([0.0, 3.0]), target)
    assert right.item() == 0.0
    assert wrong.item() == pytest.approx(4.0)
    predicted = torch.tensor([0.0, 0.0], requires_grad=True)
    lt.ranking_loss(predicted, target).backward()
    # descending the gradient raises the prediction of the higher-loss sample
    assert predicted.grad[0] < 0 < predicted.grad[1]


def test_ranking_loss_odd_batch_leaves_middle_out_and_margin_applies():
    predicted = torch.tensor([1.0, 100.0, 0.0], requires_grad=True)
    target = torch.tensor([2.0, -7.0, 1.0])
    loss = lt.ranking_loss(predicted, target, margin=0.5)
    assert loss.item() == pytest.approx(0.0)  # 1 - 0 >= margin 0.5
    loss.backward()
    assert predicted.grad[1] == 0.0


def test_ranking_loss_detaches_target_and_handles_single_sample():
    target = torch.tensor([1.0, 0.0], requires_grad=True)
    predicted = torch.tensor([0.0, 0.0], requires_grad=True)
    lt.ranking_loss(predicted, target).backward()
    assert target.grad is None
    single = torch.tensor([1.0], requires_grad=True)
    loss = lt.ranking_loss(single, torch.tensor([2.0]))
    loss.backward()
    assert loss.item() == 0.0 and single.grad is not None


def test_ranking_loss_rejects_bad_shapes():
    with pytest.raises(ValueError):
        lt.ranking_loss(torch.zeros(4, 1), torch.zeros(4))


def test_mse_objective():
    assert lt.mse_loss_objective(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(2.5)


def test_ranking_accuracy_counts_ordered_pairs():
    target = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert lt.ranking_accuracy(target * 10, target) == 1.0
    assert lt.ranking_accuracy(-target, target) == 0.0
    # one swapped neighbour pair out of six
    assert lt.ranking_accuracy(torch.tensor([1.0, 0.0, 2.0, 3.0]), target) == pytest.approx(5 / 6)
    # prediction ties count half; target ties are not counted
    assert lt.ranking_accuracy(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1.0])) == 0.5
    assert math.isnan(lt.ranking_accuracy(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])))


def test_ranking_accuracy_chunks_agree():
    generator = torch.Generator().manual_seed(0)
    predicted, target = torch.randn(301, generator=generator), torch.randn(301, generator=generator)
    assert lt.ranking_accuracy(predicted, target, chunk_size=7) == pytest.approx(
        lt.ranking_accuracy(predicted, target, chunk_size=10_000))

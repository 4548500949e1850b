"""Objectives for the loss-prediction head and the ranking accuracy used to judge it."""
from __future__ import annotations

import functools
from typing import Callable

import torch

from lossal_tasks.errors import ConfigError


def _check_pair(predicted: torch.Tensor, target: torch.Tensor) -> None:
    if predicted.dim() != 1 or predicted.shape != target.shape:
        raise ValueError(
            f"predicted and target losses must both have shape [B]; got {tuple(predicted.shape)} "
            f"and {tuple(target.shape)}"
        )


def ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The paper's pairwise margin ranking loss (Eq. 2) averaged over B // 2 pairs.

    The batch is split into pairs (i, B-1-i) for i < B // 2 (with an odd B the middle sample sits
    out). For a pair with true losses (l_i, l_j) and predictions (p_i, p_j) the loss is
    ``max(0, -sign(l_i - l_j) * (p_i - p_j) + margin)``, with sign = +1 when l_i > l_j and -1
    otherwise, as in the paper. ``target`` is detached: the head must never push the task loss.

    Args:
        predicted: predicted losses [B].
        target: true per-sample losses [B].
    Returns:
        a scalar tensor (0 with a gradient path when B < 2).
    """
    _check_pair(predicted, target)
    target = target.detach()
    half = predicted.shape[0] // 2
    if half == 0:
        return predicted.sum() * 0.0
    predicted_diff = (predicted - predicted.flip(0))[:half]
    target_diff = (target - target.flip(0))[:half]
    sign = torch.where(target_diff > 0, 1.0, -1.0).to(predicted_diff.dtype)
    return torch.clamp(margin - sign * predicted_diff, min=0).mean()


def mse_loss_objective(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and (detached) true losses; the paper's ablation."""
    _check_pair(predicted, target)
    return torch.mean((predicted - target.detach()) ** 2)


def ranking_accuracy(predicted: torch.Tensor, target: torch.Tensor, chunk_size: int = 2048) -> float:
    """Fraction of pairs (i, j) with l_i != l_j whose predicted order matches the true order.

    A tie in the prediction counts half (Kendall's convention). Computed in row chunks so a
    10k-sample test split never builds a 10k x 10k matrix at once. Returns nan with no such pair.
    """
    _check_pair(predicted, target)
    predicted = predicted.detach().double().cpu()
    target = target.detach().double().cpu()
    agree = 0.0
    counted = 0
    for start in range(0, predicted.shape[0], chunk_size):
        target_sign = torch.sign(target[start:start + chunk_size, None] - target[None, :])
        predicted_sign = torch.sign(predicted[start:start + chunk_size, None] - predicted[None, :])
        ordered = target_sign != 0
        agree += float((predicted_sign == target_sign)[ordered].sum())
        agree += 0.5 * float((predicted_sign == 0)[ordered].sum())
        counted += int(ordered.sum())
    return agree / counted if counted else float("nan")


HEAD_OBJECTIVES = ("ranking", "mse")


def head_objective(name: str, margin: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss-head objective ``(predicted [B], target [B]) -> scalar`` called ``name``."""
    if name not in HEAD_OBJECTIVES:
        raise ConfigError(f"unknown loss-head objective {name!r}; known: {', '.join(HEAD_OBJECTIVES)}")
    return functools.partial(ranking_loss, margin=margin) if name == "ranking" else mse_loss_objective

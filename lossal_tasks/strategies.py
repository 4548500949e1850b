"""Acquisition strategies: pick positions among scored candidates.

A strategy is a function ``(scored: ScoredCandidates, budget: int, generator) -> positions``
registered in STRATEGIES. It declares what it needs (``"loss"``, ``"embedding"``,
``"uncertainty"``) with :func:`needs`, so the engine computes nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lossal_tasks.registry import STRATEGIES

NEEDS = ("loss", "embedding", "uncertainty")


@dataclass
class ScoredCandidates:
    """Candidates in scoring order; row i of every tensor belongs to ``indices[i]``.

    indices: dataset indices [N]. loss: predicted loss [N]. embedding: pooled features [N, D].
    uncertainty: task uncertainty [N]. Fields a strategy did not ask for are None.
    """

    indices: np.ndarray
    loss: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    uncertainty: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.indices)


StrategyFn = Callable[[ScoredCandidates, int, torch.Generator], torch.Tensor]


def needs(*what: str) -> Callable[[StrategyFn], StrategyFn]:
    """Declare which scores a strategy uses (a subset of "loss", "embedding", "uncertainty")."""
    unknown = set(what) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}; choose from {NEEDS}")

    def mark(fn: StrategyFn) -> StrategyFn:
        fn.needs = frozenset(what)  # type: ignore[attr-defined]
        return fn

    return mark


def strategy_needs(fn: StrategyFn) -> frozenset[str]:
    return getattr(fn, "needs", frozenset(NEEDS))


def top_k(values: torch.Tensor, budget: int) -> torch.Tensor:
    """Positions of the ``budget`` largest values, largest first; ties keep the earlier position."""
    return torch.argsort(values, descending=True, stable=True)[:budget]


@STRATEGIES.register("learning_loss")
@needs("loss")
def learning_loss(scored: ScoredCandidates, budget: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's rule: the candidates with the highest predicted loss."""
    return top_k(scored.loss, budget)


@STRATEGIES.register("random")
@needs()
def random(scored: ScoredCandidates, budget: int, generator: torch.Generator) -> torch.Tensor:
    """A uniform sample without replacement (seeded)."""
    return torch.randperm(len(scored), generator=generator)[:budget]


@STRATEGIES.register("entropy")
@needs("uncertainty")
def entropy(scored: ScoredCandidates, budget: int, generator: torch.Generator) -> torch.Tensor:
    """The candidates the task is least sure about (its ``uncertainty``, e.g. softmax entropy)."""
    return top_k(scored.uncertainty, budget)

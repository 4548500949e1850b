"""Acquisition strategies: pick positions among scored candidates.

A strategy is a function ``(scored: ScoredCandidates, budget: int, generator) -> positions``
registered in STRATEGIES. It declares what it needs (``"loss"``, ``"embedding"``,
``"uncertainty"``) with :func:`needs`, so the engine computes nothing more.

A strategy that is exactly "the ``budget`` largest values of one score" declares so with
:func:`top_k_of` instead; the engine may then skip it and stream the pool, keeping only a running
top-``budget`` (:class:`RunningTopK`, O(budget) memory) that selects exactly what :func:`top_k`
would. ``coreset`` and ``learning_loss_diverse`` work on the pooled features the loss head computes
anyway (``embedding``), so they serve every task.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lossal_tasks.distances import DEFAULT_CHUNK_SIZE, greedy_k_center
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


def top_k_of(score: str) -> Callable[[StrategyFn], StrategyFn]:
    """Declare that a strategy returns exactly ``top_k(getattr(scored, score), budget)``.

    It then needs only ``score``, and the engine may stream the pool through a :class:`RunningTopK`
    instead of calling it (tests check both routes choose the same positions).
    """
    if score not in ("loss", "uncertainty"):
        raise ValueError(f"top_k_of takes 'loss' or 'uncertainty', got {score!r}")

    def mark(fn: StrategyFn) -> StrategyFn:
        fn = needs(score)(fn)
        fn.top_k_of = score  # type: ignore[attr-defined]
        return fn

    return mark


def streamed_score(fn: StrategyFn) -> str | None:
    """The score a :func:`top_k_of` strategy ranks by, or None for any other strategy."""
    return getattr(fn, "top_k_of", None)


def top_k(values: torch.Tensor, budget: int) -> torch.Tensor:
    """Positions of the ``budget`` largest values, largest first; ties keep the earlier position."""
    return torch.argsort(values, descending=True, stable=True)[:budget]


def top_k_pairs(values: torch.Tensor, positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best (value, position) pairs in :func:`top_k` order: larger value first, and among
    equal values the smaller position first.

    Args:
        values: [N] scores. positions: [N] int64 positions in the whole stream, no repeats, any order.
    Returns:
        (values [min(k, N)], positions [min(k, N)]).
    """
    by_position = torch.argsort(positions, stable=True)
    order = by_position[torch.argsort(values[by_position], descending=True, stable=True)[:k]]
    return values[order], positions[order]


class RunningTopK:
    """The ``k`` largest scores of a stream and their stream positions, in O(k) memory.

    ``push`` batches in stream order; ``values`` / ``positions`` then hold what
    ``top_k(torch.cat(all batches), k)`` would select, in the same order, ties included. Results of
    several streams (e.g. one per rank, positions already global) merge with :func:`top_k_pairs`.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = int(k)
        self.values = torch.empty(0)
        self.positions = torch.empty(0, dtype=torch.long)
        self.seen = 0

    def push(self, values: torch.Tensor) -> None:
        """Add the next ``len(values)`` scores of the stream ([B], any float dtype)."""
        values = values.detach().reshape(-1)
        positions = torch.arange(self.seen, self.seen + len(values), dtype=torch.long)
        self.seen += len(values)
        if len(self.values) == self.k:
            # A later position loses every tie, so only values strictly above the current k-th
            # (or NaN, which sorts above everything) can enter; most batches of a long stream stop here.
            keep = (values > self.values[-1]) | values.isnan()
            if not bool(keep.any()):
                return
            values, positions = values[keep], positions[keep]
        self.values, self.positions = top_k_pairs(torch.cat([self.values.to(values.dtype), values]),
                                                  torch.cat([self.positions, positions]), self.k)


@STRATEGIES.register("learning_loss")
@top_k_of("loss")
def learning_loss(scored: ScoredCandidates, budget: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's rule: the candidates with the highest predicted loss."""
    return top_k(scored.loss, budget)


@STRATEGIES.register("random")
@needs()
def random(scored: ScoredCandidates, budget: int, generator: torch.Generator) -> torch.Tensor:
    """A uniform sample without replacement (seeded)."""
    return torch.randperm(len(scored), generator=generator)[:budget]


@STRATEGIES.register("entropy")
@top_k_of("uncertainty")
def entropy(scored: ScoredCandidates, budget: int, generator: torch.Generator) -> torch.Tensor:
    """The candidates the task is least sure about (its ``uncertainty``, e.g. softmax entropy)."""
    return top_k(scored.uncertainty, budget)


@STRATEGIES.register("coreset")
@needs("embedding")
def coreset(scored: ScoredCandidates, budget: int, generator: torch.Generator,
            chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Core-set selection (Sener & Savarese, 2018) by greedy k-center on the loss head's pooled
    features: each pick is the candidate farthest from everything picked so far.

    The classic version starts from the labeled samples as centers; the engine scores candidates
    only, so the candidates' mean stands in for them as the one initial center (the first pick is
    the candidate farthest from the mean). Distances are Euclidean, computed ``chunk_size`` rows at
    a time (:mod:`lossal_tasks.distances`): memory O(N * D) for the embeddings plus
    O(chunk_size * D), never N x N; time O(budget * N * D). Deterministic; ``generator`` is unused.

    embedding: [N, D]. Returns [budget] positions in the order picked.
    """
    points = scored.embedding
    centroid = points.mean(dim=0, keepdim=True)
    return greedy_k_center(points, budget, centroid, chunk_size=chunk_size)


DIVERSE_SHORTLIST_FACTOR = 5


@STRATEGIES.register("learning_loss_diverse")
@needs("loss", "embedding")
def learning_loss_diverse(scored: ScoredCandidates, budget: int, generator: torch.Generator,
                          factor: float = DIVERSE_SHORTLIST_FACTOR,
                          chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """High predicted loss, but not all of one kind: a loss-weighted k-center over a loss shortlist.

    1. Shortlist the ``ceil(factor * budget)`` candidates with the highest predicted loss (all of
       them if there are fewer), in :func:`top_k` order.
    2. Give shortlist rank r (0 = highest loss) the weight ``w = 1 - r / L`` for a shortlist of L:
       the head is trained with a ranking loss, so only the order of its outputs means anything
       (their scale and sign drift between cycles); rank weights are in (0, 1].
    3. Pick the highest-loss candidate first, then repeatedly the shortlisted candidate maximising
       ``w * (distance to its nearest pick)`` in the loss head's pooled features.

    A near-duplicate of an earlier pick scores about 0 however high its loss, so a batch of
    look-alike hard samples (the same hard class, the same nuisance) is spread over the hard region
    instead. ``factor=1`` chooses exactly what ``learning_loss`` chooses (in another order). Distances
    are chunked as in :func:`coreset`; time O(budget * L * D). Deterministic; ``generator`` is
    unused.

    loss: [N]. embedding: [N, D]. Returns [budget] positions in the order picked.
    """
    if factor < 1:
        raise ValueError(f"learning_loss_diverse factor must be at least 1, got {factor}")
    size = min(len(scored), max(budget, math.ceil(factor * budget)))
    shortlist = top_k(scored.loss, size)
    points = scored.embedding[shortlist]
    weights = 1.0 - torch.arange(size, dtype=points.dtype) / size
    # No initial center: every distance starts infinite, so the first pick is shortlist position 0,
    # the highest predicted loss.
    return shortlist[greedy_k_center(points, budget, None, weights=weights, chunk_size=chunk_size)]

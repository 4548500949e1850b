"""acquire(): score unlabeled candidates with the model, hand the scores to a strategy."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from lossal_tasks import distributed
from lossal_tasks.data import IndexedSubset
from lossal_tasks.errors import ConfigError
from lossal_tasks.model import LossPredictionModel
from lossal_tasks.registry import STRATEGIES
from lossal_tasks.strategies import (RunningTopK, ScoredCandidates, streamed_score, strategy_needs,
                                     top_k_pairs)
from lossal_tasks.task import Task
from lossal_tasks.training import make_loader, prepare_inputs, resolve_device, show_progress

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """What :func:`acquire` chose, best first.

    indices: dataset indices to label (no duplicates, none labeled already).
    scores: each chosen sample's score (predicted loss, or the task uncertainty for "entropy";
        None for "random", which scores nothing).
    """

    indices: list[int]
    scores: list[float | None]
    strategy: str
    num_candidates: int = 0
    num_scored: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict[str, Any]:
        return {"indices": self.indices, "scores": self.scores, "strategy": self.strategy,
                "num_candidates": self.num_candidates, "num_scored": self.num_scored,
                "seconds": self.seconds, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Selection":
        fields = ("indices", "scores", "strategy", "num_candidates", "num_scored", "seconds")
        return cls(**{key: data[key] for key in fields if key in data},
                   extra={key: value for key, value in data.items() if key not in fields})


def prepare_candidates(candidates: Iterable[int], dataset_size: int,
                       labeled: Iterable[int] | None) -> np.ndarray:
    """Unique candidate indices in first-seen order, minus ``labeled``; range-checked."""
    candidates = np.asarray(list(candidates) if not isinstance(candidates, np.ndarray) else candidates,
                            dtype=np.int64).reshape(-1)
    outside = candidates[(candidates < 0) | (candidates >= dataset_size)]
    if outside.size:
        raise ConfigError(f"candidate indices {outside[:10].tolist()} outside the dataset of {dataset_size}")
    # Pool.unlabeled is ascending already; skipping the O(N log N) unique keeps a 1M pool cheap.
    if candidates.size > 1 and not bool((candidates[1:] > candidates[:-1]).all()):
        _, first = np.unique(candidates, return_index=True)
        candidates = candidates[np.sort(first)]
    if labeled is not None:
        labeled = np.asarray(list(labeled), dtype=np.int64)
        if labeled.size:
            candidates = candidates[~np.isin(candidates, labeled)]
    return candidates


def draw_subset(candidates: np.ndarray, subset_size: int | None,
                generator: torch.Generator) -> np.ndarray:
    """A uniform random subset of ``subset_size`` candidates (the paper's M), in ascending order."""
    if subset_size is None or subset_size >= len(candidates):
        return candidates
    if subset_size < 1:
        raise ConfigError(f"subset size must be at least 1, got {subset_size}")
    chosen = torch.randperm(len(candidates), generator=generator)[:subset_size].numpy()
    return np.sort(candidates[chosen])


def score_candidates(model: LossPredictionModel, task: Task, dataset: Dataset, candidates: np.ndarray,
                     needs: frozenset[str], batch_size: int = 256, device: str = "cpu",
                     num_workers: int = 0, channels_last: bool = True) -> ScoredCandidates:
    """Run the model over ``candidates`` in order (inference mode) and keep what ``needs`` names.

    Under torchrun each rank scores a contiguous share of whole batches and the shares are
    gathered back in order, so every rank holds the scores a single process would compute.
    """
    scored = ScoredCandidates(indices=candidates)
    if not needs & {"loss", "embedding", "uncertainty"}:
        return scored
    kept: dict[str, list[torch.Tensor]] = {name: [] for name in needs}
    mine = distributed.shard(candidates, block=batch_size)
    for batch in batch_scores(model, task, dataset, mine, needs, batch_size, device, num_workers, channels_last):
        for name, values in batch.items():
            kept[name].append(values)
    # Sorted: set order follows the per-process string hash, and every rank must gather alike.
    for name in sorted(kept):
        parts = kept[name]
        setattr(scored, name, distributed.all_gather_rows(torch.cat(parts) if parts else torch.empty(0)))
    return scored


def batch_scores(model: LossPredictionModel, task: Task, dataset: Dataset, candidates: np.ndarray,
                 needs: frozenset[str], batch_size: int = 256, device: str = "cpu",
                 num_workers: int = 0, channels_last: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Score ``candidates`` in order (inference mode), yielding per batch ``{name: [B] or [B, D]}``
    for each name in ``needs``, as float32 on the CPU. Nothing is kept between batches."""
    torch_device = resolve_device(device)
    model.to(torch_device)
    model.eval()
    loader = make_loader(task, IndexedSubset(dataset, candidates), batch_size, num_workers)
    with torch.inference_mode():
        for inputs, _ in tqdm(loader, desc="score", leave=False, disable=not show_progress()):
            prediction = model(prepare_inputs(inputs, torch_device, channels_last))
            batch = {}
            if "loss" in needs:
                batch["loss"] = prediction.loss.float().cpu()
            if "embedding" in needs:
                batch["embedding"] = prediction.embedding.float().cpu()
            if "uncertainty" in needs:
                batch["uncertainty"] = task.uncertainty(prediction.outputs).float().cpu()
            yield batch


def stream_top_k(model: LossPredictionModel, task: Task, dataset: Dataset, candidates: np.ndarray,
                 score: str, budget: int, batch_size: int = 256, device: str = "cpu",
                 num_workers: int = 0, channels_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``budget`` candidates with the largest ``score`` ("loss" or "uncertainty"), streaming.

    Only a running top-``budget`` is kept (O(budget) memory, not O(len(candidates))), and it
    selects exactly what ``top_k`` over all the scores would, ties to the earlier candidate.

    Returns:
        (positions into ``candidates`` [budget], their scores [budget]), best first.
    """
    # Under torchrun each rank keeps the top-k of its share of whole batches; merging the shares'
    # top-k (positions made global) gives the single-process top-k, ties included.
    start, stop = distributed.shard_bounds(len(candidates), batch_size)
    best = RunningTopK(budget)
    for batch in batch_scores(model, task, dataset, candidates[start:stop], frozenset({score}), batch_size,
                              device, num_workers, channels_last):
        best.push(batch[score])
    if best.seen != stop - start:
        raise RuntimeError(f"scored {best.seen} of {stop - start} candidates; the task's collate "
                           "must return one score per sample")
    if not distributed.is_distributed():
        return best.positions, best.values
    values = distributed.all_gather_rows(best.values.float())
    positions = distributed.all_gather_rows(best.positions + start)
    merged_values, merged_positions = top_k_pairs(values, positions, budget)
    return merged_positions, merged_values


def acquire(model: LossPredictionModel, task: Task, dataset: Dataset, candidates: Iterable[int],
            budget: int, strategy: str = "learning_loss", subset_size: int | None = None,
            labeled: Iterable[int] | None = None, seed: int = 0, batch_size: int = 256,
            device: str = "cpu", num_workers: int = 0, channels_last: bool = True) -> Selection:
    """Choose up to ``budget`` samples of ``dataset`` to label next.

    Args:
        candidates: dataset indices to choose from (normally the unlabeled pool).
        budget: how many to choose; if fewer candidates remain, all of them are chosen (logged).
        strategy: a name in STRATEGIES.
        subset_size: score only a seeded random subset of this many candidates (the paper's M).
            Without one, a ``top_k_of`` strategy (learning_loss, entropy) streams every candidate,
            keeping only a running top-``budget``; others hold every candidate's scores.
        labeled: indices never to choose (removed from ``candidates``).
        seed: seeds the subset draw and any random choice of the strategy.
    Returns:
        a :class:`Selection`, best first.
    """
    choose = STRATEGIES.get(strategy)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget must be a positive whole number, got {budget!r}")
    needs = strategy_needs(choose)
    if "uncertainty" in needs and not task.has_uncertainty:
        raise ConfigError(
            f"strategy {strategy!r} needs task uncertainty, which task {task.name!r} does not "
            "implement; pick another strategy"
        )
    started = time.perf_counter()
    pool = prepare_candidates(candidates, len(dataset), labeled)
    if len(pool) == 0:
        raise ConfigError("nothing to acquire: there are no unlabeled candidates left")
    generator = torch.Generator().manual_seed(int(seed))
    subset = draw_subset(pool, subset_size, generator)
    if budget > len(subset):
        log.warning("budget %d is larger than the %d candidates; choosing all of them", budget, len(subset))
        budget = len(subset)
    streamed = streamed_score(choose)
    if streamed is not None and subset_size is None:
        # A pure top-k over the whole pool (strategies.top_k_of): O(budget) memory, same selection.
        positions, chosen = stream_top_k(model, task, dataset, subset, streamed, budget, batch_size,
                                         device, num_workers, channels_last)
    else:
        scored = score_candidates(model, task, dataset, subset, needs, batch_size, device,
                                  num_workers, channels_last)
        positions = torch.as_tensor(choose(scored, budget, generator), dtype=torch.long).reshape(-1)
        if len(positions) != budget or len(torch.unique(positions)) != budget:
            raise RuntimeError(f"strategy {strategy!r} returned {len(positions)} positions "
                               f"({len(torch.unique(positions))} unique) for a budget of {budget}")
        score = scored.loss if scored.loss is not None else scored.uncertainty
        chosen = score[positions] if score is not None else None
    scores = chosen.tolist() if chosen is not None else [None] * budget
    return Selection(indices=subset[positions.numpy()].tolist(), scores=scores, strategy=strategy,
                     num_candidates=len(pool), num_scored=len(subset),
                     seconds=time.perf_counter() - started)

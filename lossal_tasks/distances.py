"""Chunked Euclidean distances and greedy k-center selection, never materialising an N x N matrix.

Every function works on row blocks of ``chunk_size`` points, so the largest temporary is
``[chunk_size, K]`` against K centers whatever N is. Distances are computed
from explicit differences (``compute_mode="donot_use_mm_for_euclid_dist"``), not from the
``|x|^2 - 2 x.c + |c|^2`` expansion, so they do not cancel catastrophically for far-out points and a
row's distance does not depend on which chunk it falls in.
"""
from __future__ import annotations

import torch

DEFAULT_CHUNK_SIZE = 4096


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")


def min_distances(points: torch.Tensor, centers: torch.Tensor,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Distance from each point to its nearest center.

    Args:
        points: [N, D]. centers: [K, D], K >= 1, same dtype.
        chunk_size: rows of ``points`` handled at a time (memory ``chunk_size * K``).
    Returns:
        [N] Euclidean distances, dtype of ``points``.
    """
    _check_chunk(chunk_size)
    if centers.dim() != 2 or centers.shape[0] == 0:
        raise ValueError(f"centers must be [K, D] with K >= 1, got {tuple(centers.shape)}")
    out = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    for start in range(0, points.shape[0], chunk_size):
        block = torch.cdist(points[start:start + chunk_size], centers,
                            compute_mode="donot_use_mm_for_euclid_dist")
        out[start:start + chunk_size] = block.min(dim=1).values
    return out


def lower_to_center(nearest: torch.Tensor, points: torch.Tensor, center: torch.Tensor,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
    """In place: ``nearest[i] = min(nearest[i], |points[i] - center|)``.

    Args:
        nearest: [N] running distance to the nearest center so far. points: [N, D]. center: [D].
    """
    _check_chunk(chunk_size)
    center = center.reshape(1, -1)
    for start in range(0, points.shape[0], chunk_size):
        block = torch.cdist(points[start:start + chunk_size], center,
                            compute_mode="donot_use_mm_for_euclid_dist").squeeze(1)
        torch.minimum(nearest[start:start + chunk_size], block, out=nearest[start:start + chunk_size])


def greedy_k_center(points: torch.Tensor, budget: int, initial_centers: torch.Tensor | None,
                    weights: torch.Tensor | None = None,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Greedy k-center (farthest-first traversal): repeatedly take the point farthest from every
    center so far, then make it a center.

    With ``weights`` the point maximising ``weights[i] * distance[i]`` is taken instead (weights
    should be positive). Ties go to the earliest position, so the result is deterministic.

    Args:
        points: [N, D]. budget: how many to choose, 1 <= budget <= N.
        initial_centers: [K, D], K >= 1: centers that count as chosen already (not returned).
            None: every point starts infinitely far, so the first pick is position 0.
        weights: optional [N], positive.
        chunk_size: rows handled at a time; temporaries are ``chunk_size * K`` beside O(N).
    Returns:
        [budget] int64 positions into ``points``, in the order chosen, no repeats.
    """
    count = points.shape[0]
    if not 1 <= budget <= count:
        raise ValueError(f"budget must be between 1 and the {count} points, got {budget}")
    if initial_centers is None:
        nearest = torch.full((count,), float("inf"), dtype=points.dtype, device=points.device)
    else:
        nearest = min_distances(points, initial_centers.to(points.dtype), chunk_size)
    chosen = torch.empty(budget, dtype=torch.long)
    taken = torch.zeros(count, dtype=torch.bool, device=points.device)
    for step in range(budget):
        gain = nearest if weights is None else nearest * weights
        # Taken points sit at distance 0; -1 keeps them out even when every other gain is 0 too.
        gain = gain.masked_fill(taken, -1.0)
        # argmax returns the first maximal position, which is the tie rule documented above.
        position = int(torch.argmax(gain))
        chosen[step] = position
        taken[position] = True
        if step + 1 < budget:
            lower_to_center(nearest, points, points[position], chunk_size)
    return chosen

"""Pool: which dataset indices are labeled, and in which cycle each joined."""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np

from lossal_tasks.errors import ConfigError, RunStateError
from lossal_tasks.runio import atomic_write_json


class Pool:
    """Labeled and unlabeled indices of a dataset of ``size`` samples.

    ``labeled`` lists the labeled indices in the order they joined; ``cycle_of(i)`` says in which
    cycle sample i joined. ``meta`` is free-form JSON saved alongside (the loop keeps its progress
    there).
    """

    VERSION = 1

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ConfigError(f"Pool size must be non-negative, got {size}")
        self.size = int(size)
        self._is_labeled = np.zeros(self.size, dtype=bool)
        self._labeled: list[int] = []
        self._cycles: list[int] = []
        self.meta: dict[str, Any] = {}

    @property
    def labeled(self) -> list[int]:
        """Labeled dataset indices, in joining order."""
        return list(self._labeled)

    @property
    def unlabeled(self) -> np.ndarray:
        """Unlabeled dataset indices, ascending (int64 [N])."""
        return np.flatnonzero(~self._is_labeled)

    @property
    def num_labeled(self) -> int:
        return len(self._labeled)

    @property
    def num_unlabeled(self) -> int:
        return self.size - len(self._labeled)

    def is_labeled(self, index: int) -> bool:
        return bool(self._is_labeled[index])

    def cycle_of(self, index: int) -> int | None:
        """The cycle in which ``index`` joined, or None if it is unlabeled."""
        if not self._is_labeled[index]:
            return None
        return self._cycles[self._labeled.index(index)]

    def cycles(self) -> dict[int, int]:
        """{dataset index: cycle joined} for every labeled index."""
        return dict(zip(self._labeled, self._cycles))

    def add(self, indices: Iterable[int], cycle: int) -> None:
        """Label ``indices`` in ``cycle``. Out-of-range, repeated or already labeled indices raise
        ConfigError and leave the pool unchanged."""
        new = [int(i) for i in indices]
        bad = [i for i in new if not 0 <= i < self.size]
        if bad:
            raise ConfigError(f"Pool.add: indices {bad[:10]} outside the pool of {self.size}")
        if len(set(new)) != len(new):
            seen: set[int] = set()
            repeated = sorted({i for i in new if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
            raise ConfigError(f"Pool.add: indices {repeated[:10]} given more than once")
        already = [i for i in new if self._is_labeled[i]]
        if already:
            raise ConfigError(f"Pool.add: indices {already[:10]} are labeled already")
        self._is_labeled[new] = True
        self._labeled.extend(new)
        self._cycles.extend([int(cycle)] * len(new))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.VERSION, "size": self.size, "labeled": self._labeled,
                "cycles": self._cycles, "meta": self.meta}

    def save(self, path: str | os.PathLike) -> None:
        """Write the pool as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "pool") -> "Pool":
        try:
            pool = cls(int(data["size"]))
            labeled, cycles = data["labeled"], data["cycles"]
        except (KeyError, TypeError, ValueError) as error:
            raise RunStateError(f"{source}: not a lossal pool file ({error!r})") from None
        if len(labeled) != len(cycles):
            raise RunStateError(f"{source}: {len(labeled)} labeled indices but {len(cycles)} cycles")
        try:
            for index, cycle in zip(labeled, cycles):
                pool.add([index], cycle)
        except ConfigError as error:
            raise RunStateError(f"{source}: {error}") from None
        pool.meta = dict(data.get("meta", {}))
        return pool

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Pool":
        """Read a pool written by :meth:`save`; a missing or malformed file raises RunStateError."""
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            raise RunStateError(f"{path}: pool file not found") from None
        except json.JSONDecodeError as error:
            raise RunStateError(f"{path}: malformed pool JSON ({error})") from None
        return cls.from_dict(data, source=str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pool) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Pool(size={self.size}, labeled={self.num_labeled})"

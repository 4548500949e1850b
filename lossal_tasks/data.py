"""Dataset lookup by (task, name), sample keys and small dataset wrappers."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.errors import ConfigError
from lossal_tasks.registry import DATASETS


class DataSplits(NamedTuple):
    """A train split (the pool to label) and a test split (to evaluate on)."""

    train: Dataset
    test: Dataset


def dataset_key(task_name: str, data_name: str) -> str:
    """The DATASETS registry key of dataset ``data_name`` served by task ``task_name``."""
    return f"{task_name}/{data_name}"


def dataset_names(task_name: str) -> list[str]:
    """Names of the datasets registered for ``task_name``."""
    prefix = f"{task_name}/"
    return [key[len(prefix):] for key in DATASETS.names() if key.startswith(prefix)]


def build_datasets(task_name: str, data_name: str, **options: Any) -> DataSplits:
    """Build the splits of dataset ``data_name`` for task ``task_name``.

    ``options`` go to the dataset factory (``root``, ``seed``, ``download`` and dataset options).
    An unknown name raises ConfigError listing the datasets this task serves.
    """
    key = dataset_key(task_name, data_name)
    if key not in DATASETS:
        known = ", ".join(dataset_names(task_name)) or "(none)"
        raise ConfigError(f"unknown dataset {data_name!r} for task {task_name!r}; known: {known}")
    return DATASETS.build(key, **options)


def sample_key(dataset: Dataset, index: int) -> str:
    """A human-readable key of sample ``index`` (a file name where there is one)."""
    key_of = getattr(dataset, "sample_key", None)
    return str(key_of(index)) if callable(key_of) else str(index)


class IndexedSubset(Dataset):
    """The samples of ``dataset`` at ``indices``, optionally passed through ``transform``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int],
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.dataset = dataset
        # A numpy array, not a list: a million Python ints would cost ~36 MB on the streaming path.
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        sample = self.dataset[int(self.indices[position])]
        return sample if self.transform is None else self.transform(sample)

    def sample_key(self, position: int) -> str:
        return sample_key(self.dataset, int(self.indices[position]))

    def __getattr__(self, name: str) -> Any:
        # Dataset attributes such as ``classes`` read through; guard against unpickling recursion.
        if name in ("dataset", "indices", "transform"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

"""CIFAR-10 in its standard python format (``cifar-10-batches-py``), read from a local folder."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.errors import BadDataError, ConfigError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)


def _batch_folder(root: str | os.PathLike) -> Path:
    root = Path(root)
    return root if (root / TEST_FILES[0]).exists() else root / FOLDER


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise BadDataError(f"{path}: CIFAR-10 batch file is missing")
    try:
        with open(path, "rb") as stream:
            batch = pickle.load(stream, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as error:
        raise BadDataError(f"{path}: not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise BadDataError(f"{path}: expected N x 3072 pixels and N labels, got {data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise BadDataError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def download_cifar10(root: str | os.PathLike) -> None:
    """Download and extract CIFAR-10 into ``root`` (only when the user asks for it)."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_MD5)


class CIFAR10(Dataset):
    """CIFAR-10 ``split`` ("train" or "test") from ``root`` (holding cifar-10-batches-py/ or its files).

    ``dataset[i] -> (image [32, 32, 3] uint8, label int)``. A missing folder raises ConfigError
    naming it; pass ``download=True`` to fetch the archive first.
    """

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root: str | os.PathLike, split: str = "train", download: bool = False) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"CIFAR10 split must be 'train' or 'test', got {split!r}")
        if root is None:
            raise ConfigError("--root is required for cifar10: the folder holding cifar-10-batches-py")
        folder = _batch_folder(root)
        if not folder.is_dir() and download:
            download_cifar10(root)
            folder = _batch_folder(root)
        if not folder.is_dir():
            raise ConfigError(f"CIFAR-10 folder not found: {folder} (expected the python-format batches "
                              f"there; pass --download to fetch them)")
        files = TRAIN_FILES if split == "train" else TEST_FILES
        parts = [_read_batch(folder / name) for name in files]
        self.images = np.concatenate([p[0] for p in parts])
        self.labels = np.concatenate([p[1] for p in parts])
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])

    def sample_key(self, index: int) -> str:
        return f"cifar10-{self.split}-{index:05d}"

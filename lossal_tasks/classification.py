"""The classification task: ResNet-18 (CIFAR stem), per-sample cross-entropy, accuracy."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossal_tasks.data import DataSplits, IndexedSubset
from lossal_tasks.datasets.cifar import CIFAR10
from lossal_tasks.datasets.folder import ImageFolderDataset
from lossal_tasks.datasets.labels_classification import classification_project_splits
from lossal_tasks.datasets.synthetic import SHAPE_CLASSES, SyntheticShapes
from lossal_tasks.datasets.transforms import classification_augmentation, images_to_tensor
from lossal_tasks.errors import ConfigError
from lossal_tasks.heads.resnet import resnet18_cifar
from lossal_tasks.labeling import project_splits
from lossal_tasks.registry import DATASETS, TASKS
from lossal_tasks.task import Metric, Task


class Accuracy(Metric):
    """Top-1 accuracy over predicted class ids."""

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, predictions: Sequence[int], targets: torch.Tensor) -> None:
        predicted = torch.as_tensor(list(predictions), dtype=torch.long)
        self.correct += int((predicted == targets.cpu()).sum())
        self.total += len(predicted)

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct / self.total if self.total else float("nan")}


@TASKS.register("classification")
class ClassificationTask(Task):
    """Image classification with a ResNet-18 (CIFAR stem), tapping its four residual stages.

    Samples are ``(image [H, W, 3] uint8, label)``; ``collate`` gives ``(images [B, 3, H, W], labels [B])``.
    """

    name = "classification"
    feature_layers = ("layer1", "layer2", "layer3", "layer4")
    loss_weight = 1.0
    primary_metric = "accuracy"
    presets = {
        "quick": {
            "model": {"width": 16},
            "data": {"train_size": 20000, "test_size": 2000, "image_size": 32},
            # Measured on this narrow net with a few hundred labels: SGD at 0.1 was unstable, and with
            # lambda = 1 the head's gradient stalled the backbone until the detach (README, "Presets").
            "train": {"epochs": 24, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "milestones": [18],
                      "detach_epoch": 14, "weight_decay": 5e-4, "loss_weight": 0.1},
            "loop": {"cycles": 5, "initial_size": 500, "budget": 500, "subset_size": 5000},
        },
        "paper": {
            "model": {"width": 64},
            "data": {"train_size": 50000, "test_size": 10000, "image_size": 32},
            "train": {"epochs": 200, "batch_size": 128, "lr": 0.1, "milestones": [160], "detach_epoch": 120,
                      "weight_decay": 5e-4},
            "loop": {"cycles": 10, "initial_size": 1000, "budget": 1000, "subset_size": 10000},
        },
    }

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes

    def build_model(self, num_classes: int | None = None, width: int = 64, **options: Any) -> nn.Module:
        classes = num_classes or self.num_classes or 10
        if options:
            raise ConfigError(f"unknown classification model options {sorted(options)}; known: num_classes, width")
        return resnet18_cifar(num_classes=classes, width=width)

    def collate(self, samples: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = images_to_tensor([image for image, _ in samples])
        labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        return images, labels

    def per_sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, reduction="none")

    def predict(self, outputs: torch.Tensor) -> list[int]:
        return outputs.argmax(dim=1).tolist()

    def metric(self) -> Metric:
        return Accuracy()

    def uncertainty(self, outputs: torch.Tensor) -> torch.Tensor:
        """Softmax entropy per sample [B]."""
        log_probs = F.log_softmax(outputs.float(), dim=1)
        return -(log_probs.exp() * log_probs).sum(dim=1)

    def model_options_for(self, dataset: Any) -> dict[str, Any]:
        classes = getattr(dataset, "classes", None)
        return {"num_classes": len(classes)} if classes is not None else {}

    def augmentation(self, seed: int) -> Callable[[Any], Any] | None:
        return classification_augmentation(seed)


@DATASETS.register("classification/synthetic")
def synthetic_classification(root: str | None = None, seed: int = 0, download: bool = False,
                             train_size: int = 20000, test_size: int = 2000, image_size: int = 32,
                             num_classes: int = len(SHAPE_CLASSES)) -> DataSplits:
    """The embedded default: generated shapes (see datasets/synthetic.py); ``root`` is unused."""
    return DataSplits(
        SyntheticShapes(train_size, seed=seed, image_size=image_size, num_classes=num_classes, split="train"),
        SyntheticShapes(test_size, seed=seed + 1_000_003, image_size=image_size, num_classes=num_classes,
                        split="test"),
    )


@DATASETS.register("classification/cifar10")
def cifar10(root: str | None = None, seed: int = 0, download: bool = False, **ignored: Any) -> DataSplits:
    """CIFAR-10 from ``root`` (50k train / 10k test); downloads only with ``download=True``."""
    return DataSplits(CIFAR10(root, "train", download), CIFAR10(root, "test", False))


@DATASETS.register("classification/folder")
def image_folder(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 32,
                 test_fraction: float = 0.2, **ignored: Any) -> DataSplits:
    """Images under ``root/train/<class>/`` and ``root/test/<class>/``; without those folders,
    ``root/<class>/`` split by ``seed`` with ``test_fraction`` held out for testing."""
    if root is None:
        raise ConfigError("--root is required for the folder dataset")
    from pathlib import Path

    base = Path(root)
    if (base / "train").is_dir():
        if not (base / "test").is_dir():
            raise ConfigError(f"{base / 'test'}: missing (a folder with train/ needs test/ too)")
        train_set = ImageFolderDataset(base / "train", image_size)
        return DataSplits(train_set, ImageFolderDataset(base / "test", image_size, train_set.classes))
    everything = ImageFolderDataset(base, image_size)
    order = np.random.default_rng(seed).permutation(len(everything))
    cut = int(round(len(order) * test_fraction))
    return DataSplits(IndexedSubset(everything, sorted(order[cut:])), IndexedSubset(everything, sorted(order[:cut])))


@DATASETS.register("classification/labels")
def labeling_project(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 32,
                     **options: Any) -> DataSplits:
    """A labeling project (datasets/labels_classification.py): ``root/images/`` (the pool),
    ``root/labels.csv`` (``path,class``, growing), ``root/classes.txt``, and optionally
    ``root/test/`` with ``root/test.csv``. Used by the real labeling loop (lossal_tasks/labeling.py)."""
    known = {"images", "labels", "classes", "test_images", "test_labels"}
    return project_splits(*classification_project_splits(
        root, image_size, **{key: value for key, value in options.items() if key in known}))

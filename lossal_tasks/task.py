"""The Task contract: what a task supplies so the engine can train, score and evaluate it."""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import nn

from lossal_tasks.errors import ConfigError


class Metric:
    """Accumulates decoded predictions against targets; ``compute()`` returns ``{name: value}``."""

    def update(self, predictions: Sequence[Any], targets: Any) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class Task:
    """Base class of every task. Subclass it and register with ``@lt.TASKS.register("name")``.

    Class attributes:
        name: the registered name (used in run directories and checkpoints).
        feature_layers: dotted names of the target model's modules tapped for the loss head.
        loss_weight: lambda, the weight of the loss-prediction objective.
        primary_metric: the metric key shown in tables and plots (e.g. ``"accuracy"``).
        presets: ``{preset name: {"model": {...}, "train": {...}, "loop": {...}, "data": {...}}}``;
            "train" holds TrainConfig fields, "loop" holds cycles / initial_size / budget /
            subset_size, "data" holds dataset options and "model" build_model options.
    """

    name: str = ""
    feature_layers: tuple[str, ...] = ()
    loss_weight: float = 1.0
    primary_metric: str = ""
    presets: dict[str, dict[str, dict[str, Any]]] = {}

    def build_model(self, **options: Any) -> nn.Module:
        """The target model; ``model(inputs)`` returns the same kind of outputs in train and eval."""
        raise NotImplementedError

    def collate(self, samples: Sequence[Any]) -> tuple[Any, Any]:
        """Samples from the dataset -> ``(inputs, targets)`` for one batch."""
        raise NotImplementedError

    def per_sample_loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """Unreduced, differentiable loss of each sample, shape [B]."""
        raise NotImplementedError

    def batch_loss(self, per_sample_loss: torch.Tensor, outputs: Any, targets: Any) -> torch.Tensor:
        """The scalar the target model is trained on; the mean of the per-sample losses by default."""
        return per_sample_loss.mean()

    def predict(self, outputs: Any) -> list[Any]:
        """Decoded predictions, one per sample."""
        raise NotImplementedError

    def metric(self) -> Metric:
        """A fresh metric accumulator."""
        raise NotImplementedError

    def uncertainty(self, outputs: Any) -> torch.Tensor:
        """Optional: an uncertainty score per sample [B] (higher = less sure); enables "entropy"."""
        raise NotImplementedError(f"task {self.name!r} does not implement uncertainty()")

    def augmentation(self, seed: int) -> Callable[[Any], Any] | None:
        """Optional: a seeded training-time transform of one sample; None for no augmentation."""
        return None

    def model_options_for(self, dataset: Any) -> dict[str, Any]:
        """Model options a dataset implies (e.g. ``num_classes``); merged under the user's options."""
        return {}

    @property
    def has_uncertainty(self) -> bool:
        return type(self).uncertainty is not Task.uncertainty

    def preset(self, name: str) -> dict[str, dict[str, Any]]:
        """A deep copy of preset ``name``; an unknown name raises ConfigError listing the known."""
        if name not in self.presets:
            known = ", ".join(sorted(self.presets)) or "(none)"
            raise ConfigError(f"unknown preset {name!r} for task {self.name!r}; known: {known}")
        preset = copy.deepcopy(self.presets[name])
        for section in ("model", "train", "loop", "data"):
            preset.setdefault(section, {})
        return preset

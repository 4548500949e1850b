"""LossPredictionModel: a target model, a FeatureTap on it and a LossPredictionHead."""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from lossal_tasks.heads.loss_prediction import LossPredictionHead
from lossal_tasks.hooks import FeatureTap


class Prediction(NamedTuple):
    """What :class:`LossPredictionModel` returns.

    outputs: the target model's raw outputs (whatever the task's model returns).
    loss: predicted per-sample loss, shape [B].
    embedding: concatenated globally pooled tapped features, shape [B, D].
    """

    outputs: Any
    loss: torch.Tensor
    embedding: torch.Tensor


class LossPredictionModel(nn.Module):
    """Wraps ``target`` so every forward also predicts its per-sample loss.

    Args:
        target: the task model; ``target(inputs)`` returns the same kind of outputs in train and eval.
        feature_layers: dotted names of the modules of ``target`` whose outputs feed the head.
        hidden_dim: width of each head branch.
        in_channels: channels of each tapped feature. When None, they are read off the first
            forward pass (call :meth:`initialize` with a batch before building an optimizer).

    ``forward(inputs, detach_features=False) -> Prediction(outputs, loss [B], embedding [B, D])``.
    With ``detach_features=True`` the head still learns but sends no gradient into ``target``.
    """

    def __init__(self, target: nn.Module, feature_layers: Sequence[str], hidden_dim: int = 128,
                 in_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        self.target = target
        self.feature_layers = tuple(feature_layers)
        self.hidden_dim = hidden_dim
        self.tap = FeatureTap(target, self.feature_layers)
        self.head: LossPredictionHead | None = (
            LossPredictionHead(in_channels, hidden_dim) if in_channels is not None else None
        )

    @property
    def in_channels(self) -> tuple[int, ...] | None:
        """Channels of each tapped feature, or None before the head is built."""
        return None if self.head is None else self.head.in_channels

    def forward(self, inputs: Any, detach_features: bool = False) -> Prediction:
        outputs = self.target(inputs)
        features = self.tap.features
        self.tap.clear()
        if self.head is None:
            self._build_head(features)
        if detach_features:
            features = [feature.detach() for feature in features]
        predicted_loss, embedding = self.head(features)  # type: ignore[misc]
        return Prediction(outputs, predicted_loss, embedding)

    @torch.no_grad()
    def initialize(self, inputs: Any) -> None:
        """Build the head from one batch if ``in_channels`` was not given; a no-op otherwise."""
        if self.head is not None:
            return
        was_training = self.training
        self.eval()
        self.forward(inputs)
        self.train(was_training)

    def _build_head(self, features: list[torch.Tensor]) -> None:
        channels = [1 if f.dim() == 1 else f.shape[1] for f in features]
        reference = features[0]
        self.head = LossPredictionHead(channels, self.hidden_dim).to(reference.device)

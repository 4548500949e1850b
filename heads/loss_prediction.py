"""The loss-prediction module of Yoo & Kweon (CVPR 2019), Fig. 2."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class _SpatialMean(torch.autograd.Function):
    """Mean over every dim after the first two, whose gradient is a broadcast view.

    The stock mean backward materialises a contiguous [B, C, *spatial] gradient; added to a
    channels_last feature map's other gradient, that mixed-layout add was most of the head's cost on a
    detector's large source maps. A stride-0 expansion costs nothing until it is accumulated.
    """

    @staticmethod
    def forward(ctx, feature: torch.Tensor) -> torch.Tensor:
        ctx.feature_shape = feature.shape
        return feature.flatten(2).mean(dim=2)

    @staticmethod
    def backward(ctx, grad_pooled: torch.Tensor) -> torch.Tensor:
        shape = ctx.feature_shape
        spatial = shape[2:].numel()
        grad = (grad_pooled / spatial).reshape(*grad_pooled.shape, *([1] * (len(shape) - 2)))
        return grad.expand(shape)


def global_average_pool(feature: torch.Tensor) -> torch.Tensor:
    """[B, C, *spatial] -> [B, C]; a [B, C] tensor passes unchanged, a [B] tensor becomes [B, 1]."""
    if feature.dim() == 1:
        return feature.unsqueeze(1)
    if feature.dim() == 2:
        return feature
    return _SpatialMean.apply(feature)


class LossPredictionHead(nn.Module):
    """Per tapped feature map: GAP -> Linear(C_i, hidden) -> ReLU; concatenate; Linear(., 1).

    Args:
        in_channels: channel count C_i of each tapped feature, in tap order.
        hidden_dim: width of each per-tap branch (the paper uses 128).

    ``forward(features)`` takes a list of tensors ``[B, C_i, ...]`` and returns
    ``(predicted_loss [B], embedding [B, sum C_i])``; the embedding is the concatenated pooled
    features, returned so diversity strategies get it for free.
    """

    def __init__(self, in_channels: Sequence[int], hidden_dim: int = 128) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("LossPredictionHead needs at least one tapped feature")
        self.in_channels = tuple(int(c) for c in in_channels)
        self.hidden_dim = hidden_dim
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, hidden_dim), nn.ReLU(inplace=True))
            for channels in self.in_channels
        )
        self.regressor = nn.Linear(hidden_dim * len(self.in_channels), 1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(features) != len(self.branches):
            raise ValueError(
                f"LossPredictionHead built for {len(self.branches)} features, got {len(features)}"
            )
        pooled = [global_average_pool(feature).float() for feature in features]
        hidden = torch.cat([branch(p) for branch, p in zip(self.branches, pooled)], dim=1)
        predicted_loss = self.regressor(hidden).squeeze(1)
        return predicted_loss, torch.cat(pooled, dim=1)

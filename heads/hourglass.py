"""Stacked hourglass network (Newell, Yang & Deng, ECCV 2016) with stacks, depth and width as options.

Each stack is a recursive hourglass of pre-activation bottleneck residual blocks followed by a
1x1 "features" layer and a 1x1 heatmap layer; every stack's heatmaps are supervised
(intermediate supervision) and, except after the last stack, both its features and its heatmaps
are mapped back with 1x1 convolutions and added to the trunk.

``forward(images [B, 3, H, W]) -> heatmaps [B, stacks, joints, H / 4, W / 4]`` in train and
eval alike. The features of every stack pass through :attr:`StackedHourglass.stack_features`
(an identity module), so one dotted name (``"stack_features"``) taps each stack's features,
whatever the number of stacks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_STRIDE = 4  # input pixels per heatmap pixel


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(C/2), BN-ReLU-3x3(C/2), BN-ReLU-1x1(C), plus skip.

    ``forward(x [B, C_in, H, W]) -> [B, C_out, H, W]``; the skip is a 1x1 conv when C_in != C_out.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        middle = max(1, out_channels // 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, middle, 1, bias=False),
            nn.BatchNorm2d(middle), nn.ReLU(inplace=True), nn.Conv2d(middle, middle, 3, padding=1, bias=False),
            nn.BatchNorm2d(middle), nn.ReLU(inplace=True), nn.Conv2d(middle, out_channels, 1),
        )
        self.skip: nn.Module = (nn.Identity() if in_channels == out_channels
                                else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


def _residuals(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(Residual(channels, channels) for _ in range(count)))


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: at each level a skip branch at full resolution and a
    branch that max-pools, recurses (or, at the bottom, applies residuals) and upsamples back.

    ``forward(x [B, C, H, W]) -> [B, C, H, W]``; H and W must be divisible by ``2 ** depth``.
    """

    def __init__(self, depth: int, channels: int, blocks: int = 1) -> None:
        super().__init__()
        self.depth = depth
        self.skip = _residuals(channels, blocks)
        self.down = _residuals(channels, blocks)
        self.inner: nn.Module = (Hourglass(depth - 1, channels, blocks) if depth > 1
                                 else _residuals(channels, blocks))
        self.up = _residuals(channels, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return skip + F.interpolate(low, size=skip.shape[-2:], mode="nearest")


class Stack(nn.Module):
    """One stack: hourglass -> residuals -> 1x1 conv-BN-ReLU ``features`` -> 1x1 ``heatmaps``.

    ``forward(x [B, C, h, w]) -> (features [B, C, h, w], heatmaps [B, joints, h, w])``.
    """

    def __init__(self, depth: int, channels: int, num_joints: int, blocks: int = 1) -> None:
        super().__init__()
        self.hourglass = Hourglass(depth, channels, blocks)
        self.refine = _residuals(channels, blocks)
        self.features = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False),
                                      nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.heatmaps = nn.Conv2d(channels, num_joints, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.refine(self.hourglass(x)))
        return features, self.heatmaps(features)


class StackedHourglass(nn.Module):
    """Stem (7x7/2 conv, residual, max-pool, residuals: 4x down) then ``stacks`` hourglasses.

    Args:
        num_joints: heatmap channels (16 for MPII, 17 for COCO).
        stacks: number of hourglasses (the paper's pose model: 8).
        width: channels inside the hourglasses (Newell et al.: 256).
        depth: levels per hourglass (4 at 64 px heatmaps: 64 -> 4 px at the bottom).
        blocks: residual blocks per hourglass level and branch.
    ``forward(images [B, 3, H, W]) -> heatmaps [B, stacks, num_joints, H/4, W/4]``; H and W must
    be divisible by ``4 * 2 ** depth``.
    """

    def __init__(self, num_joints: int = 16, stacks: int = 8, width: int = 256, depth: int = 4,
                 blocks: int = 1, in_channels: int = 3) -> None:
        super().__init__()
        if stacks < 1 or depth < 1 or width < 2 or num_joints < 1 or blocks < 1:
            raise ValueError(f"StackedHourglass needs stacks, depth, blocks, num_joints >= 1 and width >= 2; "
                             f"got stacks={stacks}, depth={depth}, blocks={blocks}, "
                             f"num_joints={num_joints}, width={width}")
        self.num_joints, self.num_stacks, self.width, self.depth = num_joints, stacks, width, depth
        stem_width = max(2, width // 4)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True),
            Residual(stem_width, max(2, width // 2)),
            nn.MaxPool2d(2),
            Residual(max(2, width // 2), max(2, width // 2)),
            Residual(max(2, width // 2), width),
        )
        self.stacks = nn.ModuleList(Stack(depth, width, num_joints, blocks) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stacks - 1))
        self.merge_heatmaps = nn.ModuleList(nn.Conv2d(num_joints, width, 1) for _ in range(stacks - 1))
        self.stack_features = nn.Identity()  # tap point: receives the list of every stack's features

    @property
    def min_input_multiple(self) -> int:
        """Input sides must be multiples of this."""
        return OUTPUT_STRIDE * 2 ** self.depth

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        all_features: list[torch.Tensor] = []
        all_heatmaps: list[torch.Tensor] = []
        for index, stack in enumerate(self.stacks):
            features, heatmaps = stack(x)
            all_features.append(features)
            all_heatmaps.append(heatmaps)
            if index < self.num_stacks - 1:
                x = x + self.merge_features[index](features) + self.merge_heatmaps[index](heatmaps)
        self.stack_features(all_features)
        return torch.stack(all_heatmaps, dim=1)


def stacked_hourglass(num_joints: int = 16, stacks: int = 8, width: int = 256, depth: int = 4,
                      blocks: int = 1) -> StackedHourglass:
    """The paper's pose model by default (8 stacks, width 256, depth 4, for 256 px inputs)."""
    return StackedHourglass(num_joints=num_joints, stacks=stacks, width=width, depth=depth, blocks=blocks)

"""ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) and a width option."""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with stages ``layer1`` .. ``layer4`` of widths w, 2w, 4w, 8w (w=64 is the paper's).

    ``forward(images [B, 3, H, W]) -> logits [B, num_classes]``.
    """

    def __init__(self, blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10,
                 width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.stage_channels = tuple(width * 2**i for i in range(len(blocks_per_stage)))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        channels = width
        for stage, (blocks, out_channels) in enumerate(zip(blocks_per_stage, self.stage_channels)):
            stride = 1 if stage == 0 else 2
            layers = [BasicBlock(channels, out_channels, stride)]
            layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
            channels = out_channels
        self.num_stages = len(blocks_per_stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet18_cifar(num_classes: int = 10, width: int = 64, in_channels: int = 3) -> CifarResNet:
    """ResNet-18 (2-2-2-2 basic blocks) with the CIFAR stem; ``width=64`` gives 64/128/256/512."""
    return CifarResNet((2, 2, 2, 2), num_classes=num_classes, width=width, in_channels=in_channels)

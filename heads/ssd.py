"""SSD-style single-shot detectors assembled from torchvision's detection parts.

Two configurations share one module, :class:`SSDDetector`:

* ``paper``: SSD300 with a VGG-16 backbone and six source maps (conv4_3 with L2 norm, fc7,
  conv8_2 .. conv11_2), via torchvision's ``SSDFeatureExtractorVGG``; no weights are downloaded
  unless ``pretrained_backbone=True``.
* ``quick``: a light convolutional backbone for small inputs (128 to 160 px) that trains on a CPU.

The backbone is one module, ``backbone``, whose output is an ordered dict of the source maps, so a
FeatureTap on ``"backbone"`` sees exactly the maps the detector predicts from. The model returns
its raw outputs in train and eval alike::

    {"cls_logits": [B, A, C + 1], "bbox_regression": [B, A, 4], "anchors": [A, 4], "image_size": (H, W)}

where A is the number of default boxes, C the number of object classes (index 0 is background),
regressions are encoded against the anchors with the SSD box coder weights (10, 10, 5, 5) and
anchors are (x1, y1, x2, y2) in input pixels.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG, SSDHead

from lossal_tasks.errors import ConfigError

# SSD300's default boxes (Liu et al. 2016, as in torchvision's ssd300_vgg16).
PAPER_ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
PAPER_SCALES = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
PAPER_STEPS = [8, 16, 32, 64, 100, 300]
# The quick detector's five source maps (strides 8 .. 128 of a 128 px input).
QUICK_ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2], [2]]
QUICK_SCALES = [0.08, 0.18, 0.34, 0.52, 0.72, 0.92]


def _conv_bn(in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class QuickBackbone(nn.Module):
    """A light VGG-like backbone with batch norm; ``forward(x [B, 3, H, W])`` returns an ordered
    dict of five source maps at strides 8, 16, 32, 64 and 128 (for a 128 px input: 16x16 .. 1x1).

    Channels of the maps are :attr:`out_channels` (``4w, 6w, 4w, 4w, 4w`` for ``width`` w).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"ssd width must be positive, got {width}")
        w = int(width)
        self.stem = nn.Sequential(_conv_bn(3, w, 2), _conv_bn(w, 2 * w, 2), _conv_bn(2 * w, 2 * w))
        self.stage1 = nn.Sequential(_conv_bn(2 * w, 4 * w, 2), _conv_bn(4 * w, 4 * w))      # stride 8
        self.stage2 = nn.Sequential(_conv_bn(4 * w, 6 * w, 2), _conv_bn(6 * w, 6 * w))      # stride 16
        self.extras = nn.ModuleList(
            nn.Sequential(_conv_bn(channels, 2 * w, kernel_size=1), _conv_bn(2 * w, 4 * w, 2))
            for channels in (6 * w, 4 * w, 4 * w)                                        # 32, 64, 128
        )
        self.out_channels = [4 * w, 6 * w, 4 * w, 4 * w, 4 * w]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stage1(self.stem(x))
        maps = [x]
        x = self.stage2(x)
        maps.append(x)
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return OrderedDict((str(i), feature) for i, feature in enumerate(maps))


class SSDDetector(nn.Module):
    """Backbone (ordered dict of source maps) + torchvision ``SSDHead`` + ``DefaultBoxGenerator``.

    Args:
        backbone: module returning an ordered dict of source maps ``[B, C_k, H_k, W_k]``.
        source_channels: C_k of each source map.
        num_classes: object classes C, without the background (the head predicts C + 1).
        aspect_ratios, scales, steps: default-box settings (see torchvision's DefaultBoxGenerator).

    ``forward(images [B, 3, H, W]) -> {"cls_logits": [B, A, C+1], "bbox_regression": [B, A, 4],
    "anchors": [A, 4], "image_size": (H, W)}`` in train and eval alike.
    """

    def __init__(self, backbone: nn.Module, source_channels: Sequence[int], num_classes: int,
                 aspect_ratios: Sequence[Sequence[int]], scales: Sequence[float],
                 steps: Sequence[int] | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
        if len(source_channels) != len(aspect_ratios):
            raise ConfigError(f"{len(source_channels)} source maps but {len(aspect_ratios)} aspect-ratio lists")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.anchor_generator = DefaultBoxGenerator([list(r) for r in aspect_ratios], scales=list(scales),
                                                    steps=None if steps is None else list(steps))
        self.head = SSDHead(list(source_channels), self.anchor_generator.num_anchors_per_location(),
                            self.num_classes + 1)
        self._anchors: dict[tuple, torch.Tensor] = {}

    def anchors(self, images: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Default boxes [A, 4] (x1, y1, x2, y2 pixels) for this input size; cached per size."""
        key = (tuple(images.shape[-2:]), tuple(tuple(f.shape[-2:]) for f in features), features[0].device,
               torch.is_inference_mode_enabled())
        cached = self._anchors.get(key)
        if cached is None:
            with torch.no_grad():
                image_list = ImageList(images[:1], [tuple(images.shape[-2:])])
                cached = self.anchor_generator(image_list, [f.float() for f in features])[0].detach()
            if len(self._anchors) > 16:
                self._anchors.clear()
            self._anchors[key] = cached
        return cached

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        features = list(self.backbone(images).values())
        outputs = self.head(features)
        return {"cls_logits": outputs["cls_logits"], "bbox_regression": outputs["bbox_regression"],
                "anchors": self.anchors(images, features), "image_size": tuple(images.shape[-2:])}


def ssd_quick(num_classes: int, width: int = 16) -> SSDDetector:
    """The CPU detector: :class:`QuickBackbone` of ``width`` with five source maps; no weights."""
    backbone = QuickBackbone(width)
    return SSDDetector(backbone, backbone.out_channels, num_classes, QUICK_ASPECT_RATIOS, QUICK_SCALES)


def ssd300_vgg16(num_classes: int, pretrained_backbone: bool = False) -> SSDDetector:
    """SSD300 with VGG-16 (conv4_3 + L2 norm, fc7, conv8_2 .. conv11_2), the paper's detector.

    ``pretrained_backbone=True`` loads torchvision's ImageNet VGG-16 feature weights (downloaded
    by torchvision if not cached); otherwise nothing is downloaded.
    """
    from torchvision.models import VGG16_Weights, vgg16

    weights = VGG16_Weights.IMAGENET1K_FEATURES if pretrained_backbone else None
    backbone = SSDFeatureExtractorVGG(vgg16(weights=weights).features, highres=False)
    return SSDDetector(backbone, [512, 1024, 512, 256, 256, 256], num_classes, PAPER_ASPECT_RATIOS,
                       PAPER_SCALES, PAPER_STEPS)


def build_ssd(config: str, num_classes: int, width: int = 16, pretrained_backbone: bool = False) -> SSDDetector:
    """``config`` "quick" or "paper" (see the module docstring); an unknown name raises ConfigError."""
    if config == "quick":
        if pretrained_backbone:
            raise ConfigError("pretrained_backbone: the quick ssd has no pretrained weights; use config='paper'")
        return ssd_quick(num_classes, width)
    if config == "paper":
        return ssd300_vgg16(num_classes, pretrained_backbone)
    raise ConfigError(f"unknown ssd config {config!r}; known: paper, quick")

"""The detection task: an SSD-style detector, the per-image multibox loss, COCO / VOC07 AP.

Samples are ``(image [H, W, 3] uint8, target)`` with ``target = {"boxes": [G, 4] float32
(x1, y1, x2, y2 pixels), "labels": [G] int64 (0 .. C-1), "difficult": [G] bool}``; G may be 0.
``collate`` gives ``(images [B, 3, H, W] float, [target dict of tensors] * B)``; all images of a
batch must have one size (the datasets resize to ``image_size``).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossal_tasks.data import DataSplits
from lossal_tasks.datasets.coco import coco_splits
from lossal_tasks.datasets.detection_transforms import DetectionAugmentation
from lossal_tasks.datasets.labels_detection import detection_project_splits
from lossal_tasks.datasets.synthetic_detection import DETECTION_CLASSES, SyntheticDetection
from lossal_tasks.datasets.transforms import images_to_tensor
from lossal_tasks.datasets.voc import voc_splits
from lossal_tasks.detection_loss import MultiboxLoss, decode_detections
from lossal_tasks.detection_metrics import DetectionMetric
from lossal_tasks.errors import BadDataError, ConfigError
from lossal_tasks.heads.ssd import build_ssd
from lossal_tasks.labeling import project_splits
from lossal_tasks.registry import DATASETS, TASKS
from lossal_tasks.task import Metric, Task

Target = dict[str, torch.Tensor]


@TASKS.register("detection")
class DetectionTask(Task):
    """Object detection with an SSD-style detector (heads/ssd.py), tapping its source maps.

    ``per_sample_loss`` is the multibox loss of each image [B]: (smooth-L1 over its positive
    anchors + cross-entropy over its positives and 3:1 hard-mined negatives) / max(1, its
    positives); ``batch_loss`` is SSD's usual objective, the sum over the batch divided by the
    batch's positives. ``predict`` decodes boxes and applies per-class NMS.

    Args:
        min_negatives: negatives mined in every image even with few or no objects (0: the paper's
            loss, where an image without objects has loss 0).
        score_threshold, nms_iou, max_detections: decoding settings of ``predict``.
    """

    name = "detection"
    feature_layers = ("backbone",)       # its output: the ordered dict of source maps
    loss_weight = 1.0
    primary_metric = "ap50"
    presets = {
        "quick": {
            "model": {"config": "quick", "width": 16},
            "data": {"train_size": 4000, "test_size": 300, "image_size": 128},
            # Adam: from scratch, on a few hundred images, it converges in far fewer steps than SGD.
            "train": {"epochs": 16, "batch_size": 16, "optimizer": "adam", "lr": 3e-3, "milestones": [12],
                      "detach_epoch": 10, "weight_decay": 0.0, "eval_batch_size": 64},
            "loop": {"cycles": 4, "initial_size": 300, "budget": 300, "subset_size": 1500},
        },
        "paper": {
            "model": {"config": "paper"},
            "data": {"train_size": 16551, "test_size": 4952, "image_size": 300},
            "train": {"epochs": 300, "batch_size": 32, "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9,
                      "weight_decay": 5e-4, "milestones": [240], "detach_epoch": 120, "eval_batch_size": 64},
            "loop": {"cycles": 10, "initial_size": 1000, "budget": 1000, "subset_size": None},
        },
    }

    def __init__(self, num_classes: int | None = None, min_negatives: int = 0, score_threshold: float = 0.01,
                 nms_iou: float = 0.45, max_detections: int = 100) -> None:
        self.num_classes = num_classes
        self.multibox = MultiboxLoss(iou_threshold=0.5, neg_pos_ratio=3.0, min_negatives=min_negatives)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    def build_model(self, num_classes: int | None = None, config: str = "quick", width: int = 16,
                    pretrained_backbone: bool = False, **options: Any) -> nn.Module:
        if options:
            raise ConfigError(f"unknown detection model options {sorted(options)}; "
                              "known: num_classes, config, width, pretrained_backbone")
        classes = num_classes or self.num_classes or len(DETECTION_CLASSES)
        return build_ssd(config, classes, width=width, pretrained_backbone=pretrained_backbone)

    def collate(self, samples: Sequence[tuple[np.ndarray, dict[str, np.ndarray]]]) -> tuple[torch.Tensor, list[Target]]:
        shapes = {image.shape for image, _ in samples}
        if len(shapes) > 1:
            raise BadDataError(f"images of one batch differ in size {sorted(shapes)}; "
                               "give the dataset an image_size so it resizes them")
        images = images_to_tensor([image for image, _ in samples])
        targets = []
        for _, target in samples:
            boxes = torch.as_tensor(np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4))
            labels = torch.as_tensor(np.asarray(target["labels"], dtype=np.int64).reshape(-1))
            difficult = target.get("difficult")
            difficult = (torch.zeros(len(labels), dtype=torch.bool) if difficult is None
                         else torch.as_tensor(np.asarray(difficult, dtype=bool).reshape(-1)))
            targets.append({"boxes": boxes, "labels": labels, "difficult": difficult})
        return images, targets

    def per_sample_loss(self, outputs: dict[str, Any], targets: Sequence[Target]) -> torch.Tensor:
        """Multibox loss of each image, [B] (see the class docstring)."""
        terms = self.multibox.terms(outputs, targets)
        # batch_loss needs the positives of this very batch: remember them (weakly) to skip a re-match
        self._last_positives = (weakref.ref(outputs["cls_logits"]), id(targets), terms.positives)
        return terms.per_image()

    def batch_loss(self, per_sample_loss: torch.Tensor, outputs: dict[str, Any],
                   targets: Sequence[Target]) -> torch.Tensor:
        """SSD's objective: sum over images of (loc + conf) / positives of the whole batch."""
        logits_ref, targets_id, positives = getattr(self, "_last_positives", (lambda: None, None, None))
        if logits_ref() is not outputs["cls_logits"] or targets_id != id(targets):
            positives = self.multibox.positives(outputs["anchors"].float(), targets)
        positives = positives.to(per_sample_loss.dtype)
        return (per_sample_loss * positives.clamp(min=1)).sum() / positives.sum().clamp(min=1)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_last_positives", None)            # weak references do not pickle (DataLoader workers)
        return state

    def predict(self, outputs: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes": [N, 4], "scores": [N], "labels": [N]}``, best first, on the CPU."""
        return decode_detections(outputs, self.score_threshold, self.nms_iou, self.max_detections)

    def metric(self) -> Metric:
        return DetectionMetric(self.num_classes)

    def uncertainty(self, outputs: dict[str, Any], top: int = 16) -> torch.Tensor:
        """Mean class entropy of the ``top`` anchors most likely to hold an object, [B]."""
        probs = F.softmax(outputs["cls_logits"].float(), dim=2)
        entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=2)
        foreground = 1.0 - probs[:, :, 0]
        picked = foreground.topk(min(top, foreground.shape[1]), dim=1).indices
        return entropy.gather(1, picked).mean(dim=1)

    def augmentation(self, seed: int) -> Callable[[Any], Any] | None:
        return DetectionAugmentation(seed)

    def model_options_for(self, dataset: Any) -> dict[str, Any]:
        classes = getattr(dataset, "classes", None)
        return {"num_classes": len(classes)} if classes is not None else {}


@DATASETS.register("detection/synthetic")
def synthetic_detection(root: str | None = None, seed: int = 0, download: bool = False,
                        train_size: int = 4000, test_size: int = 300, image_size: int = 128,
                        num_classes: int = 6, max_objects: int = 6, min_size: float = 0.06,
                        max_size: float = 0.5) -> DataSplits:
    """The embedded default: generated shape scenes (datasets/synthetic_detection.py); ``root`` unused."""
    options = {"image_size": image_size, "num_classes": num_classes, "max_objects": max_objects,
               "min_size": min_size, "max_size": max_size}
    return DataSplits(SyntheticDetection(train_size, seed=seed, split="train", **options),
                      SyntheticDetection(test_size, seed=seed + 1_000_003, split="test", **options))


@DATASETS.register("detection/voc")
def voc(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 300,
        **options: Any) -> DataSplits:
    """Pascal VOC from ``root``: a VOCdevkit tree or a plain pair of image and XML folders
    (see datasets/voc.py for the layouts and options); nothing is downloaded."""
    return DataSplits(*voc_splits(root, seed=seed, download=download, image_size=image_size, **options))


@DATASETS.register("detection/coco")
def coco(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 300,
         **options: Any) -> DataSplits:
    """COCO detection JSON from ``root`` (see datasets/coco.py); nothing is downloaded."""
    return DataSplits(*coco_splits(root, seed=seed, download=download, image_size=image_size, **options))


@DATASETS.register("detection/labels")
def labeling_project(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 300,
                     **options: Any) -> DataSplits:
    """A labeling project (datasets/labels_detection.py): ``root/images/`` (the pool) and a growing
    ``root/labels.json`` (COCO) or ``root/labels/`` (VOC XML, with ``root/classes.txt``), optionally
    ``root/test/`` with ``root/test.json`` or ``root/test_labels/``. Used by lossal_tasks/labeling.py."""
    known = {"images", "labels", "classes", "test_images", "test_labels"}
    return project_splits(*detection_project_splits(
        root, image_size, **{key: value for key, value in options.items() if key in known}))

"""Detection samples: box repair, resizing and the seeded albumentations training pipeline.

A detection sample is ``(image [H, W, 3] uint8, target)`` with ``target = {"boxes": [G, 4] float32
(x1, y1, x2, y2 pixels), "labels": [G] int64, "difficult": [G] bool}``. Nothing is dropped
silently: a box that is clipped or removed is counted (attributes) and logged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import cv2
import numpy as np

log = logging.getLogger(__name__)

Target = dict[str, np.ndarray]


def empty_target() -> Target:
    return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
            "difficult": np.zeros(0, bool)}


def select(target: Target, keep: np.ndarray) -> Target:
    """The objects of ``target`` where ``keep`` (bool [G] or indices) says so."""
    return {key: value[keep] for key, value in target.items()}


@dataclass
class BoxRepairs:
    """Counts of what box repair did: boxes clipped to the image, degenerate boxes dropped."""

    clipped: int = 0
    dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def total(self) -> int:
        return self.clipped + self.dropped


def repair_boxes(target: Target, width: float, height: float, where: str,
                 repairs: BoxRepairs | None = None) -> Target:
    """Clip boxes to the ``width`` x ``height`` image and drop the degenerate ones.

    ``where`` names the file and sample in the log lines. Counts go to ``repairs`` (when given);
    each repair is logged as a warning. Returns the repaired target.
    """
    boxes = target["boxes"].astype(np.float32).reshape(-1, 4)
    if boxes.size == 0:
        return {**target, "boxes": boxes}
    clipped = np.stack([boxes[:, 0].clip(0, width), boxes[:, 1].clip(0, height),
                        boxes[:, 2].clip(0, width), boxes[:, 3].clip(0, height)], axis=1)
    moved = np.any(np.abs(clipped - boxes) > 1e-6, axis=1)
    valid = (clipped[:, 2] - clipped[:, 0] >= 1.0) & (clipped[:, 3] - clipped[:, 1] >= 1.0)
    for k in np.nonzero(moved & valid)[0]:
        note = f"{where}: object {k} box {boxes[k].tolist()} outside the {width:g}x{height:g} image; clipped"
        log.warning(note)
        if repairs is not None:
            repairs.clipped += 1
            repairs.notes.append(note)
    for k in np.nonzero(~valid)[0]:
        note = f"{where}: object {k} box {boxes[k].tolist()} is degenerate (under 1 px inside the image); dropped"
        log.warning(note)
        if repairs is not None:
            repairs.dropped += 1
            repairs.notes.append(note)
    repaired = select({**target, "boxes": clipped}, valid)
    return repaired


def resize_sample(image: np.ndarray, target: Target, size: int | None) -> tuple[np.ndarray, Target]:
    """Resize ``image`` to ``size`` x ``size`` (SSD-style warp) and scale its boxes; None keeps it."""
    if size is None or image.shape[:2] == (size, size):
        return image, target
    height, width = image.shape[:2]
    scale = np.array([size / width, size / height, size / width, size / height], dtype=np.float32)
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if size < min(height, width)
                         else cv2.INTER_LINEAR)
    boxes = np.clip(target["boxes"] * scale, 0.0, float(size)).astype(np.float32)   # no float overshoot
    return resized, {**target, "boxes": boxes}


class DetectionAugmentation:
    """Seeded training-time augmentation of one detection sample; output has the input's size.

    Photometric jitter, a zoom-out (objects shrink, borders filled with grey), a random crop
    resized back to the input size, and a horizontal flip (milder than SSD's by default, which
    suits short schedules; raise ``crop_p`` / ``zoom_out_p`` for long ones), through albumentations with
    ``bbox_params`` (pascal_voc boxes, clipping, ``min_visibility``). Boxes that end up less than
    ``min_visibility`` visible are dropped; the count is kept in :attr:`dropped_boxes` (and
    :attr:`repairs` counts boxes clipped or dropped before augmenting), each logged at DEBUG,
    the first one at INFO. Single-process counts: with DataLoader workers each worker counts its own.
    """

    def __init__(self, seed: int, flip_p: float = 0.5, crop_p: float = 0.3, zoom_out_p: float = 0.2,
                 color_p: float = 0.5, crop_scale: tuple[float, float] = (0.5, 1.0),
                 zoom_out_scale: tuple[float, float] = (0.6, 1.0), min_visibility: float = 0.3) -> None:
        self.seed = int(seed) % (2**32)
        self.flip_p, self.crop_p, self.zoom_out_p, self.color_p = flip_p, crop_p, zoom_out_p, color_p
        self.crop_scale, self.zoom_out_scale = tuple(crop_scale), tuple(zoom_out_scale)
        self.min_visibility = float(min_visibility)
        self.dropped_boxes = 0
        self.samples = 0
        self.repairs = BoxRepairs()
        self._pipelines: dict[tuple[int, int], A.Compose] = {}

    def _pipeline(self, height: int, width: int) -> A.Compose:
        key = (height, width)
        if key not in self._pipelines:
            steps: list[Any] = []
            if self.color_p > 0:
                steps += [A.RandomBrightnessContrast(0.2, 0.2, p=self.color_p),
                          A.HueSaturationValue(10, 20, 10, p=self.color_p)]
            if self.zoom_out_p > 0:
                steps.append(A.Affine(scale=self.zoom_out_scale, keep_ratio=True, fill=127,
                                      border_mode=cv2.BORDER_CONSTANT, p=self.zoom_out_p))
            if self.crop_p > 0:
                steps.append(A.RandomResizedCrop((height, width), scale=self.crop_scale, ratio=(0.5, 2.0),
                                                 p=self.crop_p))
            if self.flip_p > 0:
                steps.append(A.HorizontalFlip(p=self.flip_p))
            bbox_params = A.BboxParams(format="pascal_voc", label_fields=["box_ids"], clip=True,
                                       min_visibility=self.min_visibility)
            self._pipelines[key] = A.Compose(steps, bbox_params=bbox_params,
                                             seed=(self.seed + len(self._pipelines)) % (2**32))
        return self._pipelines[key]

    def __call__(self, sample: tuple[np.ndarray, Target]) -> tuple[np.ndarray, Target]:
        image, target = sample
        height, width = image.shape[:2]
        where = f"augmented sample {self.samples}"
        target = repair_boxes(target, width, height, where, self.repairs)
        count = len(target["boxes"])
        result = self._pipeline(height, width)(image=image, bboxes=target["boxes"].reshape(-1, 4),
                                               box_ids=np.arange(count))
        self.samples += 1
        kept = np.asarray(result["box_ids"], dtype=np.int64).reshape(-1)
        dropped = count - len(kept)
        if dropped:
            if self.dropped_boxes == 0:
                log.info("augmentation dropped %d of %d boxes (under %.0f%% visible after cropping) in %s; "
                         "later drops are counted in .dropped_boxes and logged at DEBUG",
                         dropped, count, 100 * self.min_visibility, where)
            else:
                log.debug("augmentation dropped %d of %d boxes in %s", dropped, count, where)
            self.dropped_boxes += dropped
        augmented = select(target, kept)
        augmented["boxes"] = np.asarray(result["bboxes"], dtype=np.float32).reshape(-1, 4)
        return result["image"], augmented

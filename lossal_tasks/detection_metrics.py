"""Detection metrics: COCO mAP@[.5:.95] / AP50 / AP75 through pycocotools, and the VOC07 11-point AP50.

Predictions and targets are one dict per image. Predictions: ``boxes`` [N, 4] (x1, y1, x2, y2),
``scores`` [N], ``labels`` [N] (0 .. C-1). Targets: ``boxes`` [G, 4], ``labels`` [G], optional
``difficult`` [G] bool. Difficult objects are ignored: a detection on one is neither right nor
wrong (VOC07 exactly; for COCO they become ``iscrowd`` regions, which COCOeval ignores).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from lossal_tasks.task import Metric

log = logging.getLogger(__name__)


def _numpy(value: Any, dtype: Any, width: int | None = None) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=dtype)
    return array.reshape(-1, width) if width else array.reshape(-1)


def _ground_truth(target: dict[str, Any]) -> dict[str, np.ndarray]:
    boxes = _numpy(target["boxes"], np.float64, 4)
    difficult = target.get("difficult")
    return {"boxes": boxes, "labels": _numpy(target["labels"], np.int64),
            "difficult": np.zeros(len(boxes), bool) if difficult is None else _numpy(difficult, bool)}


def _detections(prediction: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"boxes": _numpy(prediction["boxes"], np.float64, 4),
            "scores": _numpy(prediction["scores"], np.float64),
            "labels": _numpy(prediction["labels"], np.int64)}


def coco_metrics(ground_truths: Sequence[dict[str, np.ndarray]], detections: Sequence[dict[str, np.ndarray]],
                 num_classes: int) -> dict[str, float]:
    """COCO ``map`` (AP@[.5:.95]), ``ap50`` and ``ap75`` (area all, 100 detections per image).

    The ground truth is built in memory (image and annotation ids from 1, ``area`` and ``iscrowd``
    set). No detections at all gives 0; no ground-truth object at all gives nan (logged).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotations = []
    for image_id, truth in enumerate(ground_truths, start=1):
        for box, label, difficult in zip(truth["boxes"], truth["labels"], truth["difficult"]):
            width, height = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [float(box[0]), float(box[1]), width, height],
                                "area": width * height, "iscrowd": int(difficult)})
    if not any(a["iscrowd"] == 0 for a in annotations):
        log.warning("COCO metrics: the ground truth has no (non-difficult) object; AP is undefined (nan)")
        return {"map": math.nan, "ap50": math.nan, "ap75": math.nan}
    results = [{"image_id": image_id, "category_id": int(label) + 1, "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]}
               for image_id, found in enumerate(detections, start=1)
               for box, score, label in zip(found["boxes"], found["scores"], found["labels"])]
    if not results:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints progress
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in range(1, len(ground_truths) + 1)],
                         "annotations": annotations,
                         "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(0.0, float(value)) for value in evaluator.stats[:3]]
    return {"map": stats[0], "ap50": stats[1], "ap75": stats[2]}


def voc07_ap(ground_truths: Sequence[dict[str, np.ndarray]], detections: Sequence[dict[str, np.ndarray]],
             num_classes: int, iou_threshold: float = 0.5) -> tuple[float, list[float]]:
    """VOC2007 11-point interpolated AP at ``iou_threshold``: ``(mean over classes, per-class AP)``.

    Classes without a (non-difficult) object get nan and are left out of the mean. Greedy matching
    in score order; a detection on a difficult object is ignored; a second detection of an object
    is a false positive. IoU uses continuous coordinates (no +1 pixel).
    """
    scores: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    outcome: list[list[np.ndarray]] = [[] for _ in range(num_classes)]   # 1 tp, 0 fp, -1 ignored
    positives = np.zeros(num_classes, dtype=np.int64)
    for truth, found in zip(ground_truths, detections):
        positives += np.bincount(truth["labels"][~truth["difficult"]], minlength=num_classes)[:num_classes]
        for label in np.unique(found["labels"]):
            mine = found["labels"] == label
            order = np.argsort(-found["scores"][mine], kind="stable")
            boxes, conf = found["boxes"][mine][order], found["scores"][mine][order]
            same = truth["labels"] == label
            result = np.zeros(len(boxes), dtype=np.int64)
            if same.any():
                ious = box_iou(torch.from_numpy(boxes), torch.from_numpy(truth["boxes"][same])).numpy()
                difficult = truth["difficult"][same]
                taken = np.zeros(len(difficult), dtype=bool)
                best = ious.argmax(axis=1)
                for k, j in enumerate(best):
                    if ious[k, j] < iou_threshold:
                        continue
                    if difficult[j]:
                        result[k] = -1
                    elif not taken[j]:
                        result[k], taken[j] = 1, True
            scores[label].append(conf)
            outcome[label].append(result)
    per_class = []
    for label in range(num_classes):
        if positives[label] == 0:
            per_class.append(math.nan)
            continue
        if not scores[label]:
            per_class.append(0.0)
            continue
        conf, result = np.concatenate(scores[label]), np.concatenate(outcome[label])
        order = np.argsort(-conf, kind="stable")
        result = result[order][result[order] >= 0]
        true_pos = np.cumsum(result == 1)
        false_pos = np.cumsum(result == 0)
        recall = true_pos / positives[label]
        precision = true_pos / np.maximum(true_pos + false_pos, np.finfo(np.float64).eps)
        points = [precision[recall >= threshold].max(initial=0.0) for threshold in np.linspace(0.0, 1.0, 11)]
        per_class.append(float(sum(points) / 11.0))
    known = [ap for ap in per_class if not math.isnan(ap)]
    return (float(np.mean(known)) if known else math.nan), per_class


class DetectionMetric(Metric):
    """Accumulates detections and ground truth; ``compute()`` returns ``map`` (COCO AP@[.5:.95]),
    ``ap50``, ``ap75`` (COCO) and ``voc07_ap50`` (VOC2007 11-point).

    ``num_classes``: object classes C; None infers it from the largest label seen.
    """

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.ground_truths: list[dict[str, np.ndarray]] = []
        self.detections: list[dict[str, np.ndarray]] = []

    def update(self, predictions: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
        self.detections.extend(_detections(p) for p in predictions)
        self.ground_truths.extend(_ground_truth(t) for t in targets)

    def _classes(self) -> int:
        if self.num_classes is not None:
            return int(self.num_classes)
        largest = [int(part["labels"].max()) for part in self.ground_truths + self.detections if part["labels"].size]
        return max(largest, default=-1) + 1

    def compute(self) -> dict[str, float]:
        num_classes = self._classes()
        if not self.ground_truths or num_classes == 0:
            return {"map": math.nan, "ap50": math.nan, "ap75": math.nan, "voc07_ap50": math.nan}
        results = coco_metrics(self.ground_truths, self.detections, num_classes)
        results["voc07_ap50"] = voc07_ap(self.ground_truths, self.detections, num_classes)[0]
        return results

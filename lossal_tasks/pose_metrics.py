"""Pose metrics: PCKh@0.5, box-normalised PCK@0.2 and COCO keypoint AP (OKS, via pycocotools).

All coordinates are in the same frame (network input pixels); PCK and OKS are invariant to the
uniform scale and shift of a crop, so no mapping back to the original image is needed.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Sequence

import numpy as np
import torch

from lossal_tasks.task import Metric

log = logging.getLogger(__name__)

VISIBLE = 2
# COCO's per-joint OKS sigmas (person_keypoints, 17 joints).
COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07,
                        0.87, 0.87, 0.89, 0.89]) / 10.0
# MPII's 16 joints, each given the sigma of the nearest COCO joint (pelvis and thorax: hip and shoulder;
# upper neck: shoulder; head top: ear).
MPII_SIGMAS = np.array([0.89, 0.87, 1.07, 1.07, 0.87, 0.89, 1.07, 0.79, 0.79, 0.35, 0.62, 0.72, 0.79,
                        0.79, 0.72, 0.62]) / 10.0
DEFAULT_SIGMA = 0.072


def oks_sigmas(num_joints: int) -> np.ndarray:
    """OKS sigmas [J] for a joint count: COCO's for 17, MPII's for 16, else a uniform 0.072 (logged)."""
    if num_joints == len(COCO_SIGMAS):
        return COCO_SIGMAS.copy()
    if num_joints == len(MPII_SIGMAS):
        return MPII_SIGMAS.copy()
    log.warning("no OKS sigmas known for %d joints; using %.3f for every joint", num_joints, DEFAULT_SIGMA)
    return np.full(num_joints, DEFAULT_SIGMA)


def pck_hits(predicted: np.ndarray, truth: np.ndarray, counted: np.ndarray, normaliser: np.ndarray,
             threshold: float) -> tuple[int, int]:
    """Correct and counted joints: a joint is correct when its error is at most
    ``threshold * normaliser`` of its sample.

    Args:
        predicted, truth: [N, J, 2]. counted: bool [N, J], the joints that count.
        normaliser: [N] (samples whose normaliser is not a positive number count no joint).
    Returns:
        ``(correct, counted)`` joint totals.
    """
    usable = np.isfinite(normaliser) & (normaliser > 0)
    counted = counted & usable[:, None]
    error = np.linalg.norm(predicted - truth, axis=2)
    correct = counted & (error <= threshold * np.where(usable, normaliser, 0.0)[:, None])
    return int(correct.sum()), int(counted.sum())


def coco_keypoint_ap(predicted: np.ndarray, scores: np.ndarray, truth: np.ndarray, visibility: np.ndarray,
                     areas: np.ndarray, boxes: np.ndarray, sigmas: Sequence[float]) -> tuple[float, float]:
    """COCO keypoint AP and AP50 (OKS) by pycocotools, one person per image, ground truth built in memory.

    Args:
        predicted: [N, J, 2]; scores: [N, J] joint confidences (the instance score is their mean).
        truth: [N, J, 2]; visibility: [N, J] in {0, 1, 2}; areas: [N]; boxes: [N, 4] (x0, y0, x1, y1).
        sigmas: [J] per-joint OKS sigmas.
    Returns:
        ``(AP over OKS 0.50:0.95, AP at OKS 0.5)``; nan when no sample has a labeled joint.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    count, joints = truth.shape[:2]
    if len(sigmas) != joints:
        raise ValueError(f"{len(sigmas)} OKS sigmas for {joints} joints")
    labeled = (visibility > 0).sum(axis=1)
    if count == 0 or not labeled.any():
        return float("nan"), float("nan")
    images, annotations, results = [], [], []
    for i in range(count):
        image_id = i + 1
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        keypoints = np.concatenate([truth[i], visibility[i, :, None]], axis=1)
        keypoints[visibility[i] == 0, :2] = 0.0
        images.append({"id": image_id})
        annotations.append({"id": image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                            "area": float(areas[i]), "bbox": [x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)],
                            "num_keypoints": int(labeled[i]),
                            "keypoints": [float(v) for v in keypoints.reshape(-1)]})
        guess = np.concatenate([predicted[i], np.ones((joints, 1))], axis=1)
        results.append({"image_id": image_id, "category_id": 1, "keypoints": [float(v) for v in guess.reshape(-1)],
                        "score": float(np.clip(np.mean(scores[i]), 1e-6, None))})
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
        ground_truth.createIndex()
        detections = ground_truth.loadRes(results)
        evaluator = COCOeval(ground_truth, detections, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50 = float(evaluator.stats[0]), float(evaluator.stats[1])
    return (ap if ap >= 0 else float("nan")), (ap50 if ap50 >= 0 else float("nan"))


class PoseMetric(Metric):
    """Accumulates decoded keypoints against targets and computes, over the whole split:

    - ``pckh``: PCKh@0.5 (error <= 0.5 x head size, head size = 0.6 x head box diagonal; visible
      joints of samples with a head box; nan where no sample has one);
    - ``pck_bbox``: PCK@0.2 normalised by the person box's longer side (visible joints);
    - ``pck``: the headline: each sample's joints judged by PCKh@0.5 where it has a head box, else
      by PCK@0.2 of its box (so it is PCKh on MPII-style data and PCK@0.2 on COCO);
    - ``oks_ap``, ``oks_ap50``: COCO keypoint AP through pycocotools, sigmas by joint count.

    ``update(predictions, targets)``: predictions from ``PoseTask.predict`` (dicts with
    ``keypoints`` [J, 2] and ``scores`` [J]); targets the collated dict (``keypoints`` [B, J, 2],
    ``visibility`` [B, J], ``head_size`` [B], ``box`` [B, 4], ``area`` [B]).
    """

    def __init__(self, sigmas: Sequence[float] | None = None, pckh_threshold: float = 0.5,
                 pck_threshold: float = 0.2) -> None:
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        self.pckh_threshold = pckh_threshold
        self.pck_threshold = pck_threshold
        self._parts: dict[str, list[np.ndarray]] = {key: [] for key in (
            "predicted", "scores", "truth", "visibility", "head_size", "box", "area")}

    def update(self, predictions: Sequence[dict[str, Any]], targets: dict[str, torch.Tensor]) -> None:
        if not predictions:
            return
        self._parts["predicted"].append(np.stack([np.asarray(p["keypoints"], dtype=np.float64) for p in predictions]))
        self._parts["scores"].append(np.stack([np.asarray(p["scores"], dtype=np.float64) for p in predictions]))
        for key, name in (("truth", "keypoints"), ("visibility", "visibility"), ("head_size", "head_size"),
                          ("box", "box"), ("area", "area")):
            self._parts[key].append(targets[name].detach().cpu().double().numpy())

    def _gathered(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(parts) for key, parts in self._parts.items()}

    def compute(self) -> dict[str, float]:
        keys = ("pck", "pckh", "pck_bbox", "oks_ap", "oks_ap50")
        if not self._parts["predicted"]:
            return {key: float("nan") for key in keys}
        data = self._gathered()
        visible = data["visibility"] >= VISIBLE
        box = data["box"]
        box_size = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
        head = data["head_size"]
        has_head = np.isfinite(head) & (head > 0)
        pckh = pck_hits(data["predicted"], data["truth"], visible, head, self.pckh_threshold)
        pck_bbox = pck_hits(data["predicted"], data["truth"], visible, box_size, self.pck_threshold)
        # Headline: PCKh where there is a head box, PCK@0.2 of the box elsewhere.
        scaled = np.where(has_head, head * self.pckh_threshold / self.pck_threshold, box_size)
        pck = pck_hits(data["predicted"], data["truth"], visible, scaled, self.pck_threshold)
        sigmas = self.sigmas if self.sigmas is not None else oks_sigmas(data["truth"].shape[1])
        ap, ap50 = coco_keypoint_ap(data["predicted"], data["scores"], data["truth"],
                                    data["visibility"].astype(np.int64), data["area"], box, sigmas)

        def ratio(hits: tuple[int, int]) -> float:
            return hits[0] / hits[1] if hits[1] else float("nan")

        return {"pck": ratio(pck), "pckh": ratio(pckh), "pck_bbox": ratio(pck_bbox), "oks_ap": ap,
                "oks_ap50": ap50}

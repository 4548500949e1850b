"""The SSD multibox loss, per image, and the decoding of SSD outputs into detections.

Matching, box coding and NMS are torchvision's (SSDMatcher, BoxCoder, box_iou, batched_nms).
Outputs are those of :class:`lossal_tasks.heads.ssd.SSDDetector`::

    {"cls_logits": [B, A, C + 1], "bbox_regression": [B, A, 4], "anchors": [A, 4], "image_size": (H, W)}

Targets are one dict per image: ``boxes`` [G, 4] float (x1, y1, x2, y2 pixels), ``labels`` [G]
long (0 .. C-1; the background is internal to the loss), optional ``difficult`` [G] bool
(difficult objects are left out of training, as in the VOC convention). G may be 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@dataclass
class MultiboxTerms:
    """The parts of the multibox loss of each image of a batch, all shape [B].

    localization: smooth-L1 summed over the image's positive anchors.
    classification: cross-entropy summed over its positives and its mined negatives.
    positives: number of positive anchors (long).
    """

    localization: torch.Tensor
    classification: torch.Tensor
    positives: torch.Tensor

    def per_image(self) -> torch.Tensor:
        """(localization + classification) / max(1, positives), shape [B]."""
        return (self.localization + self.classification) / self.positives.clamp(min=1).to(self.localization.dtype)


def training_boxes(target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes [G', 4] and labels [G'] of ``target`` that take part in training (not difficult)."""
    boxes, labels = target["boxes"], target["labels"]
    difficult = target.get("difficult")
    if difficult is not None and difficult.numel() and bool(difficult.any()):
        keep = ~difficult.bool()
        boxes, labels = boxes[keep], labels[keep]
    return boxes, labels


class MultiboxLoss:
    """Per-image SSD loss: (smooth-L1 over positives + CE over positives and hard-mined negatives)
    / max(1, positives).

    Args:
        iou_threshold: anchors with IoU >= this with a box are positives (plus each box's best anchor).
        neg_pos_ratio: negatives mined per positive (3 in SSD).
        min_negatives: negatives mined in an image even when it has few or no positives; 0 (the
            paper's loss) makes the loss of an image without objects exactly 0.
    """

    def __init__(self, iou_threshold: float = 0.5, neg_pos_ratio: float = 3.0, min_negatives: int = 0) -> None:
        self.matcher = SSDMatcher(iou_threshold)
        self.box_coder = BoxCoder(BOX_CODER_WEIGHTS)
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.min_negatives = int(min_negatives)

    def match(self, anchors: torch.Tensor,
              targets: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Assign boxes to anchors [A, 4].

        Returns ``(labels [B, A] long, 0 = background, c + 1 = class c; matched boxes [B, A, 4])``;
        an anchor without a box keeps its own coordinates as its (unused) matched box.
        """
        labels = torch.zeros((len(targets), anchors.shape[0]), dtype=torch.long, device=anchors.device)
        matched = anchors.unsqueeze(0).repeat(len(targets), 1, 1)
        for i, target in enumerate(targets):
            boxes, classes = training_boxes(target)
            if boxes.numel() == 0:
                continue
            boxes = boxes.to(anchors.dtype)
            index = self.matcher(box_iou(boxes, anchors))
            positive = index >= 0
            labels[i, positive] = classes[index[positive]].long() + 1
            matched[i, positive] = boxes[index[positive]]
        return labels, matched

    def positives(self, anchors: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Positive anchors per image [B] (long)."""
        labels, _ = self.match(anchors, targets)
        return (labels > 0).sum(dim=1)

    def terms(self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]) -> MultiboxTerms:
        """The loss parts of each image (see :class:`MultiboxTerms`)."""
        logits = outputs["cls_logits"].float()
        regression = outputs["bbox_regression"].float()
        anchors = outputs["anchors"].float()
        batch, num_anchors, num_columns = logits.shape
        if len(targets) != batch:
            raise ValueError(f"{len(targets)} targets for a batch of {batch} images")
        with torch.no_grad():
            labels, matched = self.match(anchors, targets)
            encoded = self.box_coder.encode_single(matched.reshape(-1, 4), anchors.repeat(batch, 1))
            encoded = encoded.reshape(batch, num_anchors, 4)
        positive = labels > 0
        num_positive = positive.sum(dim=1)
        localization = (F.smooth_l1_loss(regression, encoded, reduction="none").sum(dim=2)
                        * positive).sum(dim=1)
        cross_entropy = F.cross_entropy(logits.reshape(-1, num_columns), labels.reshape(-1),
                                        reduction="none").reshape(batch, num_anchors)
        with torch.no_grad():
            wanted = (num_positive.float() * self.neg_pos_ratio).floor().long().clamp(min=self.min_negatives)
            wanted = torch.minimum(wanted, num_anchors - num_positive)
            negative_loss = cross_entropy.detach().masked_fill(positive, float("-inf"))
            rank = negative_loss.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
            chosen = positive | (rank < wanted.unsqueeze(1))
        classification = (cross_entropy * chosen).sum(dim=1)
        return MultiboxTerms(localization, classification, num_positive)


def decode_detections(outputs: dict[str, torch.Tensor], score_threshold: float = 0.01, nms_iou: float = 0.45,
                      max_detections: int = 100, candidates_per_image: int = 1000) -> list[dict[str, torch.Tensor]]:
    """Decode boxes, keep (anchor, class) pairs scoring above ``score_threshold``, NMS per class.

    Returns one dict per image: ``boxes`` [N, 4] (x1, y1, x2, y2 pixels, clipped to the image),
    ``scores`` [N], ``labels`` [N] (0 .. C-1), best first, N <= ``max_detections``; on the CPU.
    """
    logits = outputs["cls_logits"].float()
    regression = outputs["bbox_regression"].float()
    anchors = outputs["anchors"].float()
    batch, num_anchors, num_columns = logits.shape
    image_size = outputs["image_size"]
    coder = BoxCoder(BOX_CODER_WEIGHTS)
    boxes = coder.decode_single(regression.reshape(-1, 4), anchors.repeat(batch, 1)).reshape(batch, num_anchors, 4)
    boxes = clip_boxes_to_image(boxes, (int(image_size[0]), int(image_size[1])))
    scores = F.softmax(logits, dim=2)[:, :, 1:]
    results = []
    for i in range(batch):
        flat = scores[i].reshape(-1)
        keep = torch.nonzero(flat > score_threshold).squeeze(1)
        if keep.numel() > candidates_per_image:
            keep = keep[flat[keep].topk(candidates_per_image).indices]
        anchor_index = torch.div(keep, num_columns - 1, rounding_mode="floor")
        labels = keep % (num_columns - 1)
        kept_boxes, kept_scores = boxes[i, anchor_index], flat[keep]
        order = batched_nms(kept_boxes, kept_scores, labels, nms_iou)[:max_detections]
        results.append({"boxes": kept_boxes[order].cpu(), "scores": kept_scores[order].cpu(),
                        "labels": labels[order].cpu()})
    return results

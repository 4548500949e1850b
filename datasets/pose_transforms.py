"""Pose samples: the joint sets, cropping a person to the network input, and seeded augmentation.

A pose sample is a dict:

- ``image``: uint8 [S, S, 3], the network input (a crop around one person);
- ``keypoints``: float32 [J, 2], (x, y) in input pixels, continuous coordinates (pixel k spans
  [k, k + 1), so its centre is k + 0.5);
- ``visibility``: uint8 [J], 0 = not labeled or outside the input, 1 = labeled but occluded,
  2 = labeled and visible (COCO's convention);
- ``head_size``: float, the PCKh normaliser (0.6 x the head box diagonal) in input pixels, nan
  where there is no head box;
- ``box``: float32 [4], the person box (x0, y0, x1, y1) in input pixels;
- ``area``: float, the person's area in input pixels squared (for COCO's OKS);
- ``crop``: float32 [3], (x0, y0, s): original image point = input point * s + (x0, y0); nan
  after augmentation (the input is then no plain crop of the original);
- ``flip_index``: int64 [J], the joint a joint becomes under a mirror (left <-> right).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import albumentations as A
import cv2
import numpy as np

from lossal_tasks.datasets.folder import load_rgb
from lossal_tasks.errors import BadDataError, ConfigError

log = logging.getLogger(__name__)

MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
               "l_wrist")
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
COCO_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
               "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

NOT_LABELED, OCCLUDED, VISIBLE = 0, 1, 2


def flip_index(num_joints: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """The permutation [J] a mirror applies to joints: ``new[j] = old[flip_index[j]]``."""
    index = np.arange(num_joints, dtype=np.int64)
    for left, right in pairs:
        index[left], index[right] = right, left
    return index


MPII_FLIP_INDEX = flip_index(len(MPII_JOINTS), MPII_FLIP_PAIRS)
COCO_FLIP_INDEX = flip_index(len(COCO_JOINTS), COCO_FLIP_PAIRS)
_DEFAULT_FLIP = {len(MPII_JOINTS): MPII_FLIP_INDEX, len(COCO_JOINTS): COCO_FLIP_INDEX}


def inside(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bool [J]: the point lies in the image (continuous coordinates, [0, W) x [0, H))."""
    x, y = keypoints[:, 0], keypoints[:, 1]
    return np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < width) & (y >= 0) & (y < height)


def recompute_visibility(keypoints: np.ndarray, visibility: np.ndarray, width: int,
                         height: int) -> tuple[np.ndarray, int]:
    """Visibility [J] after a geometric change: labeled joints now outside the image become 0.

    Returns ``(visibility, dropped)`` where ``dropped`` counts labeled joints that left the image.
    """
    labeled = visibility > NOT_LABELED
    outside = labeled & ~inside(keypoints, width, height)
    new = visibility.copy()
    new[outside] = NOT_LABELED
    return new, int(outside.sum())


def crop_person(image: np.ndarray, keypoints: np.ndarray, center: Sequence[float], side: float,
                size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a square of ``side`` original pixels centred on ``center`` and resize it to ``size``.

    Args:
        image: uint8 [H, W, 3]. keypoints: [J, 2] in original continuous pixel coordinates.
    Returns:
        ``(crop uint8 [size, size, 3], keypoints [J, 2] in crop pixels, crop [3] = (x0, y0, s))``
        with original point = crop point * s + (x0, y0). Outside the image the crop is black.
    """
    s = float(side) / size
    x0, y0 = float(center[0]) - side / 2.0, float(center[1]) - side / 2.0
    # Continuous-coordinate map: u = (x - x0) / s. cv2 maps pixel centres, hence the half-pixel terms.
    matrix = np.array([[1.0 / s, 0.0, -x0 / s + 0.5 / s - 0.5],
                       [0.0, 1.0 / s, -y0 / s + 0.5 / s - 0.5]], dtype=np.float64)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    moved = ((keypoints.astype(np.float64) - np.array([x0, y0])) / s).astype(np.float32)
    return crop, moved, np.array([x0, y0, s], dtype=np.float32)


def person_sample(crop: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray, crop_map: np.ndarray,
                  head_size: float, box: np.ndarray | None, area: float | None,
                  flip: np.ndarray) -> dict[str, Any]:
    """A pose sample dict from a crop. ``head_size``, ``box`` (x0, y0, x1, y1) and ``area`` are in
    original pixels (scaled to the crop here); without a box, the labeled joints' box is used, and
    without an area, the box's."""
    s = float(crop_map[2])
    if box is None:
        labeled = keypoints[visibility > NOT_LABELED]
        box_in = (np.concatenate([labeled.min(axis=0), labeled.max(axis=0)]) if len(labeled)
                  else np.zeros(4, dtype=np.float32))
    else:
        box_in = (np.asarray(box, dtype=np.float64) - np.tile(crop_map[:2], 2)) / s
    area_in = (float(area) / (s * s) if area is not None
               else max(float((box_in[2] - box_in[0]) * (box_in[3] - box_in[1])), 1.0))
    return {"image": crop, "keypoints": keypoints.astype(np.float32), "visibility": visibility.astype(np.uint8),
            "head_size": float(head_size) / s, "box": np.asarray(box_in, dtype=np.float32),
            "area": area_in, "crop": crop_map.astype(np.float32), "flip_index": flip}


def load_image(path: Any, where: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] of ``path``; a missing or unreadable file raises BadDataError naming the
    file and ``where`` (the annotation and sample that need it)."""
    try:
        return load_rgb(path)
    except BadDataError as error:
        raise BadDataError(f"{error} (needed by {where})") from None


def default_flip_index(num_joints: int) -> np.ndarray:
    """MPII's (16 joints) or COCO's (17 joints) mirror permutation; other counts raise ConfigError."""
    if num_joints not in _DEFAULT_FLIP:
        raise ConfigError(f"no default left/right pairs for {num_joints} joints; give each sample a "
                          "'flip_index' (the joint each joint becomes under a mirror)")
    return _DEFAULT_FLIP[num_joints]


_REFERENCE_OFFSET = 16.0  # px between the reference points used to read off the applied linear map


class PoseAugmentation:
    """Seeded albumentations pipeline for one pose sample (image plus keypoints).

    Horizontal flip, rotation/scale/shift and photometric jitter. Keypoints go through
    albumentations with ``remove_invisible=False`` (the joint count never changes); afterwards the
    visibility is recomputed (a labeled joint pushed outside the input becomes 0 and is counted
    in :attr:`dropped`), and when the transform mirrored the image (negative determinant of its
    linear part) left and right joints swap places so joint j is still joint j.

    ``__call__(sample) -> sample`` (a new dict). Counters: :attr:`samples`, :attr:`flipped`,
    :attr:`dropped` (labeled joints that left the input).
    """

    def __init__(self, seed: int, rotate: float = 30.0, scale: tuple[float, float] = (0.75, 1.25),
                 shift: float = 0.1, flip: float = 0.5, color: float = 0.5, geometric: float = 0.8) -> None:
        self.pipeline = A.Compose([
            A.HorizontalFlip(p=flip),
            A.Affine(scale=scale, rotate=(-rotate, rotate), translate_percent=(-shift, shift),
                     keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=0, p=geometric),
            A.RandomBrightnessContrast(0.2, 0.2, p=color),
        ], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False), seed=int(seed) % (2**32))
        self.samples = 0
        self.flipped = 0
        self.dropped = 0

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = sample["image"]
        height, width = image.shape[:2]
        keypoints = np.nan_to_num(np.asarray(sample["keypoints"], dtype=np.float32), nan=0.0,
                                  posinf=0.0, neginf=0.0)
        visibility = np.asarray(sample["visibility"], dtype=np.uint8)
        num_joints = len(keypoints)
        x0, y0, x1, y1 = (float(v) for v in sample["box"])
        cx, cy = width / 2.0, height / 2.0
        extra = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [cx, cy],
                          [cx + _REFERENCE_OFFSET, cy], [cx, cy + _REFERENCE_OFFSET]], dtype=np.float32)
        # albumentations puts pixel centres at whole numbers; ours sit at k + 0.5.
        result = self.pipeline(image=image, keypoints=np.concatenate([keypoints, extra]) - 0.5)
        points = np.asarray(result["keypoints"], dtype=np.float32)[:, :2] + 0.5
        moved, corners, reference = points[:num_joints], points[num_joints:num_joints + 4], points[-3:]
        linear = np.stack([reference[1] - reference[0], reference[2] - reference[0]]) / _REFERENCE_OFFSET
        determinant = float(np.linalg.det(linear.astype(np.float64)))
        out_height, out_width = result["image"].shape[:2]
        new_visibility, dropped = recompute_visibility(moved, visibility, out_width, out_height)
        self.samples += 1
        if determinant < 0:
            index = sample.get("flip_index")
            index = default_flip_index(num_joints) if index is None else np.asarray(index)
            moved, new_visibility = moved[index], new_visibility[index]
            self.flipped += 1
        if dropped:
            self.dropped += dropped
            log.debug("augmentation moved %d labeled joint(s) outside the input (%d so far)", dropped,
                      self.dropped)
        scale = abs(determinant) ** 0.5
        out = dict(sample)
        out.update(image=result["image"], keypoints=moved.astype(np.float32), visibility=new_visibility,
                   box=np.array([*corners.min(axis=0), *corners.max(axis=0)], dtype=np.float32),
                   head_size=float(sample["head_size"]) * scale, area=float(sample["area"]) * abs(determinant),
                   crop=np.full(3, np.nan, dtype=np.float32))  # no longer a plain crop of the original
        return out


def pose_augmentation(seed: int, **options: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A seeded :class:`PoseAugmentation` (the same seed gives the same sequence of transforms)."""
    return PoseAugmentation(seed, **options)

"""MPII Human Pose in the widely used JSON form (one record per person).

``root/annot/train.json`` and ``root/annot/valid.json`` each hold a list of records::

    {"image": "015601864.jpg", "joints": [[x, y] * 16], "joints_vis": [0 or 1] * 16,
     "center": [x, y], "scale": s, "head_box": [x1, y1, x2, y2]  # head_box optional}

with MATLAB (1-based) pixel coordinates, the person's box about ``200 * scale`` pixels tall, and
images under ``root/images/``. Each person is cropped (a square of ``200 * scale * 1.25`` pixels
about ``center`` moved down by ``15 * scale``, as in the usual code) and resized to ``image_size``.

Bad input is reported, never silently lost: a malformed record, a wrong joint count or a missing
image raises BadDataError naming the file and the record; a labeled joint outside its image is
repaired (marked unlabeled), counted in :attr:`MPIIPose.repaired` and logged; labeled joints that
fall outside the crop are counted in :attr:`MPIIPose.cropped_out`.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.folder import image_size_of
from lossal_tasks.datasets.pose_transforms import (MPII_FLIP_INDEX, MPII_JOINTS, NOT_LABELED, VISIBLE,
                                                   crop_person, inside, load_image, person_sample,
                                                   recompute_visibility)
from lossal_tasks.errors import BadDataError, ConfigError

log = logging.getLogger(__name__)

NUM_JOINTS = len(MPII_JOINTS)


def _number_list(value: Any, length: int | None, what: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadDataError(f"{where}: {what} is not a list of numbers") from None
    if length is not None and array.shape[:1] != (length,):
        raise BadDataError(f"{where}: {what} has {array.shape[0] if array.ndim else 0} entries, expected {length}")
    return array


class MPIIPose(Dataset):
    """People of one MPII JSON file; ``dataset[i]`` is a pose sample dict (pose_transforms.py).

    Args:
        annotation_file: the JSON list of records. image_dir: folder of the images.
        image_size: side of the network input. padding: crop side = 200 * scale * padding.
    """

    joint_names = MPII_JOINTS
    flip_index = MPII_FLIP_INDEX
    num_joints = NUM_JOINTS

    def __init__(self, annotation_file: str | os.PathLike, image_dir: str | os.PathLike, image_size: int = 256,
                 padding: float = 1.25) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.image_size = int(image_size)
        if self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16, got {image_size}")
        try:
            records = json.loads(self.annotation_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadDataError(f"{self.annotation_file}: annotation file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadDataError(f"{self.annotation_file}: not valid JSON ({error})") from None
        if not isinstance(records, list):
            raise BadDataError(f"{self.annotation_file}: expected a list of person records")
        self._sizes: dict[str, tuple[int, int]] = {}
        self.records = [self._parse(number, record, padding) for number, record in enumerate(records)]
        self.repaired = sum(len(r["repaired"]) for r in self.records)
        self.cropped_out = sum(r["cropped_out"] for r in self.records)
        if self.repaired:
            log.warning("%s: %d labeled joint(s) outside their image were marked unlabeled (first: %s)",
                        self.annotation_file, self.repaired,
                        next(f"record {i} joint {r['repaired'][0]}" for i, r in enumerate(self.records)
                             if r["repaired"]))
        if self.cropped_out:
            log.info("%s: %d labeled joint(s) fall outside their person crop", self.annotation_file,
                     self.cropped_out)

    def _parse(self, number: int, record: Any, padding: float) -> dict[str, Any]:
        where = f"{self.annotation_file}, record {number}"
        if not isinstance(record, dict):
            raise BadDataError(f"{where}: expected an object, got {type(record).__name__}")
        missing = [key for key in ("image", "joints", "joints_vis", "center", "scale") if key not in record]
        if missing:
            raise BadDataError(f"{where}: missing {missing}")
        image = str(record["image"])
        where = f"{where} (image {image})"
        joints = _number_list(record["joints"], None, "joints", where)
        if joints.ndim != 2 or joints.shape[1] < 2:
            raise BadDataError(f"{where}: joints must be a list of [x, y] pairs")
        if joints.shape[0] != NUM_JOINTS:
            raise BadDataError(f"{where}: {joints.shape[0]} joints, MPII has {NUM_JOINTS}")
        labeled = _number_list(record["joints_vis"], NUM_JOINTS, "joints_vis", where) > 0
        center = _number_list(record["center"], 2, "center", where) - 0.5  # 1-based pixel -> continuous
        scale = float(_number_list([record["scale"]], 1, "scale", where)[0])
        if not scale > 0:
            raise BadDataError(f"{where}: scale must be positive, got {record['scale']!r}")
        keypoints = joints[:, :2] - 0.5
        labeled &= np.isfinite(keypoints).all(axis=1)
        if image not in self._sizes:
            self._sizes[image] = image_size_of(self.image_dir / image, where)
        width, height = self._sizes[image]
        outside = labeled & ~inside(keypoints, width, height)
        labeled &= ~outside
        head_size = float("nan")
        if record.get("head_box") is not None:
            box = _number_list(record["head_box"], 4, "head_box", where) - 0.5
            head_size = 0.6 * math.hypot(box[2] - box[0], box[3] - box[1])
        center = center + np.array([0.0, 15.0 * scale])
        side = 200.0 * scale * padding
        in_crop = inside((keypoints - (center - side / 2)) * (self.image_size / side), self.image_size,
                         self.image_size)
        return {"image": image, "keypoints": keypoints.astype(np.float32),
                "visibility": np.where(labeled, VISIBLE, NOT_LABELED).astype(np.uint8),
                "center": center, "side": side, "head_size": head_size,
                "repaired": np.flatnonzero(outside).tolist(), "cropped_out": int((labeled & ~in_crop).sum())}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = load_image(self.image_dir / record["image"], f"{self.annotation_file}, record {index}")
        crop, keypoints, crop_map = crop_person(image, record["keypoints"], record["center"], record["side"],
                                                self.image_size)
        visibility, _ = recompute_visibility(keypoints, record["visibility"], self.image_size, self.image_size)
        return person_sample(crop, keypoints, visibility, crop_map, record["head_size"], None, None,
                             MPII_FLIP_INDEX)

    def sample_key(self, index: int) -> str:
        return f"{self.records[index]['image']}#{index}"


def mpii_splits(root: str | os.PathLike, image_size: int = 256) -> tuple[MPIIPose, MPIIPose]:
    """``(train, test)``: ``root/annot/train.json`` (the pool) and ``root/annot/valid.json``, images in
    ``root/images``."""
    base = Path(root)
    if not (base / "annot").is_dir():
        raise ConfigError(f"{base / 'annot'}: missing; the mpii dataset expects annot/train.json, "
                          "annot/valid.json and images/ under --root")
    images = base / "images"
    return (MPIIPose(base / "annot" / "train.json", images, image_size),
            MPIIPose(base / "annot" / "valid.json", images, image_size))

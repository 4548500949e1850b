"""COCO keypoints: one sample per annotated person, cropped from its box.

Layout under ``root``: ``annotations/person_keypoints_{train,val}2017.json`` and the images in
``train2017/`` and ``val2017/``. COCO keypoints are 0-based pixel indices (x, y, v) with v = 0 not
labeled, 1 labeled but not visible, 2 labeled and visible; they become continuous coordinates
(+0.5). Each person is cropped to a square of ``padding`` x its box's longer side about the box
centre and resized to ``image_size``.

Bad input is reported, never silently lost: a malformed annotation, a wrong joint count, an
unknown image id or a missing image file raises BadDataError naming the file and the annotation;
a labeled keypoint outside its image is repaired (marked unlabeled) and a box without extent is
replaced by the box of the labeled keypoints, each counted in :attr:`COCOKeypoints.repaired` and
logged; labeled keypoints outside the person crop are counted in :attr:`COCOKeypoints.cropped_out`;
crowd annotations and people with fewer than ``min_keypoints`` labeled keypoints are
skipped and counted in :attr:`COCOKeypoints.skipped`.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.pose_transforms import (COCO_JOINTS, NOT_LABELED, crop_person, default_flip_index,
                                                   flip_index, inside, load_image, person_sample,
                                                   recompute_visibility)
from lossal_tasks.errors import BadDataError, ConfigError

log = logging.getLogger(__name__)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadDataError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadDataError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise BadDataError(f"{path}: expected a COCO object with 'images' and 'annotations' lists")
    return data


def _person_category(data: dict[str, Any], path: Path) -> tuple[int, tuple[str, ...], np.ndarray]:
    """The category id with keypoints, its joint names and its mirror permutation."""
    for category in data.get("categories") or []:
        if category.get("keypoints"):
            names = tuple(str(n) for n in category["keypoints"])
            if len(names) == len(COCO_JOINTS):
                flip = default_flip_index(len(names))
            else:
                pairs = [(i, names.index(n.replace("left", "right"))) for i, n in enumerate(names)
                         if "left" in n and n.replace("left", "right") in names]
                flip = flip_index(len(names), pairs)
            return int(category["id"]), names, flip
    log.info("%s: no category lists keypoints; assuming COCO's 17 person joints (category 1)", path)
    return 1, COCO_JOINTS, default_flip_index(len(COCO_JOINTS))


class COCOKeypoints(Dataset):
    """People of one COCO keypoints JSON file; ``dataset[i]`` is a pose sample dict (pose_transforms.py).

    Args:
        annotation_file: the COCO JSON. image_dir: folder of its images.
        image_size: side of the network input. padding: crop side / box's longer side.
        min_keypoints: people with fewer labeled keypoints are skipped (and counted).
    """

    def __init__(self, annotation_file: str | os.PathLike, image_dir: str | os.PathLike, image_size: int = 256,
                 padding: float = 1.25, min_keypoints: int = 1) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.image_size = int(image_size)
        if self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16, got {image_size}")
        data = _load_json(self.annotation_file)
        category, self.joint_names, self.flip_index = _person_category(data, self.annotation_file)
        self.num_joints = len(self.joint_names)
        images = {}
        for entry in data["images"]:
            try:
                images[int(entry["id"])] = (str(entry["file_name"]), float(entry["width"]), float(entry["height"]))
            except (KeyError, TypeError, ValueError):
                raise BadDataError(f"{self.annotation_file}: image entry {entry!r} lacks id, file_name, "
                                   "width or height") from None
        self.skipped: Counter[str] = Counter()
        self.repaired: Counter[str] = Counter()
        self.people: list[dict[str, Any]] = []
        self.cropped_out = 0
        for number, annotation in enumerate(data["annotations"]):
            person = self._parse(number, annotation, images, category, padding, min_keypoints)
            if person is not None:
                self.people.append(person)
        if self.skipped:
            log.info("%s: skipped %s", self.annotation_file, dict(self.skipped))
        if self.repaired:
            log.warning("%s: repaired %s", self.annotation_file, dict(self.repaired))
        if self.cropped_out:
            log.info("%s: %d labeled keypoint(s) fall outside their person crop", self.annotation_file,
                     self.cropped_out)

    def _parse(self, number: int, annotation: Any, images: dict[int, tuple[str, float, float]], category: int,
               padding: float, min_keypoints: int) -> dict[str, Any] | None:
        if not isinstance(annotation, dict):
            raise BadDataError(f"{self.annotation_file}, annotation #{number}: expected an object")
        where = f"{self.annotation_file}, annotation {annotation.get('id', f'#{number}')}"
        if annotation.get("category_id", category) != category:
            self.skipped["other category"] += 1
            return None
        if annotation.get("iscrowd", 0):
            self.skipped["crowd"] += 1
            return None
        image_id = annotation.get("image_id")
        if image_id not in images:
            raise BadDataError(f"{where}: image_id {image_id!r} is not in the file's images")
        file_name, width, height = images[image_id]
        where = f"{where} (image {file_name})"
        try:
            raw = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1)
            box = np.asarray(annotation["bbox"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            raise BadDataError(f"{where}: keypoints and bbox must be lists of numbers") from None
        if raw.size != 3 * self.num_joints:
            raise BadDataError(f"{where}: {raw.size} keypoint values, expected 3 x {self.num_joints} joints")
        if box.size != 4:
            raise BadDataError(f"{where}: bbox has {box.size} values, expected 4 (x, y, w, h)")
        triples = raw.reshape(self.num_joints, 3)
        keypoints = triples[:, :2] + 0.5
        visibility = np.clip(triples[:, 2], 0, 2).astype(np.uint8)
        outside = (visibility > NOT_LABELED) & ~inside(keypoints, int(width), int(height))
        if outside.any():
            self.repaired["keypoint outside its image"] += int(outside.sum())
            log.debug("%s: joints %s outside the %dx%d image marked unlabeled", where,
                      np.flatnonzero(outside).tolist(), width, height)
            visibility[outside] = NOT_LABELED
        labeled = visibility > NOT_LABELED
        if labeled.sum() < min_keypoints:
            self.skipped[f"fewer than {min_keypoints} labeled keypoints"] += 1
            return None
        if not (self.image_dir / file_name).is_file():
            raise BadDataError(f"{self.image_dir / file_name}: image file not found (needed by {where})")
        corners = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
        if not (np.isfinite(box).all() and box[2] > 1 and box[3] > 1):
            self.repaired["box without extent replaced by the keypoints' box"] += 1
            corners = np.concatenate([keypoints[labeled].min(axis=0), keypoints[labeled].max(axis=0)])
        area = float(annotation.get("area") or (corners[2] - corners[0]) * (corners[3] - corners[1]))
        side = max(corners[2] - corners[0], corners[3] - corners[1], 1.0) * padding
        center = (corners[:2] + corners[2:]) / 2.0
        in_crop = inside((keypoints - (center - side / 2)) * (self.image_size / side), self.image_size,
                         self.image_size)
        self.cropped_out += int((labeled & ~in_crop).sum())
        return {"image": file_name, "id": annotation.get("id", number), "keypoints": keypoints.astype(np.float32),
                "visibility": visibility, "box": corners, "area": area,
                "center": center, "side": side}

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, index: int) -> dict[str, Any]:
        person = self.people[index]
        image = load_image(self.image_dir / person["image"],
                           f"{self.annotation_file}, annotation {person['id']}, sample {index}")
        crop, keypoints, crop_map = crop_person(image, person["keypoints"], person["center"], person["side"],
                                                self.image_size)
        visibility, _ = recompute_visibility(keypoints, person["visibility"], self.image_size, self.image_size)
        return person_sample(crop, keypoints, visibility, crop_map, float("nan"), person["box"], person["area"],
                             self.flip_index)

    def sample_key(self, index: int) -> str:
        person = self.people[index]
        return f"{person['image']}#{person['id']}"


def coco_keypoint_splits(root: str | os.PathLike, image_size: int = 256, year: str = "2017",
                         min_keypoints: int = 1) -> tuple[COCOKeypoints, COCOKeypoints]:
    """``(train, test)``: the train file (the pool) and the val file of ``root/annotations``."""
    base = Path(root)
    if not (base / "annotations").is_dir():
        raise ConfigError(f"{base / 'annotations'}: missing; the coco dataset expects "
                          f"annotations/person_keypoints_train{year}.json and train{year}/ under --root")
    return tuple(COCOKeypoints(base / "annotations" / f"person_keypoints_{split}{year}.json", base / f"{split}{year}",
                               image_size, min_keypoints=min_keypoints)
                 for split in ("train", "val"))  # type: ignore[return-value]

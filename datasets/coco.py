"""COCO detection data: an ``instances_*.json`` file and its folder of images.

Default layout (nothing is downloaded): ``root/annotations/instances_train2017.json`` with images
in ``root/train2017/``, and ``instances_val2017.json`` with ``root/val2017/`` for testing. The
options ``train_json``, ``train_images``, ``test_json``, ``test_images`` (relative to ``root`` or
absolute) choose other files.

Category ids map to contiguous labels 0 .. C-1 in id order (the train file's categories; the test
file must use the same ids). ``iscrowd`` regions become ``difficult`` objects (left out of training
and ignored by the metrics). Images without annotations are legal (no objects). A malformed JSON
file, an annotation naming an unknown image or category, a malformed box or a missing image file
raises BadDataError naming the file and sample; a box reaching outside its image is clipped and
a degenerate box dropped, each counted in ``repairs`` and logged.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.detection_transforms import BoxRepairs, Target, repair_boxes, resize_sample
from lossal_tasks.datasets.folder import load_rgb
from lossal_tasks.errors import BadDataError, ConfigError

log = logging.getLogger(__name__)


def read_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed COCO file; a missing or malformed file raises BadDataError naming it."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise BadDataError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadDataError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise BadDataError(f"{path}: not a COCO detection file (no 'images' list)")
    return data


class COCODetection(Dataset):
    """COCO samples: ``dataset[i] -> (image uint8 [S, S, 3], target)`` (see
    datasets/detection_transforms.py), resized to ``image_size`` (None: native size).

    Args:
        annotation_file: the COCO JSON file.
        image_folder: where its ``file_name`` s are.
        categories: ``[(category id, name), ...]`` fixing the label order (default: this file's, by id).
    Attributes: ``classes``, ``category_ids`` (label c is COCO category ``category_ids[c]``),
    ``repairs`` (:class:`BoxRepairs`).
    """

    def __init__(self, annotation_file: str | os.PathLike, image_folder: str | os.PathLike,
                 image_size: int | None = 300, categories: Sequence[tuple[int, str]] | None = None,
                 name: str = "coco") -> None:
        self.annotation_file = Path(annotation_file)
        self.image_folder = Path(image_folder)
        self.image_size = image_size
        self.name = name
        self.repairs = BoxRepairs()
        data = read_coco_json(self.annotation_file)
        where = str(self.annotation_file)
        if categories is None:
            try:
                categories = sorted((int(c["id"]), str(c["name"])) for c in data.get("categories", []))
            except (KeyError, TypeError, ValueError) as error:
                raise BadDataError(f"{where}: malformed category ({error})") from None
        self.category_ids = [cid for cid, _ in categories]
        self.classes = tuple(cname for _, cname in categories)
        label_of = {cid: c for c, cid in enumerate(self.category_ids)}
        try:
            self.images = [{"id": int(i["id"]), "file_name": str(i["file_name"]),
                            "width": int(i.get("width") or 0), "height": int(i.get("height") or 0)}
                           for i in data["images"]]
        except (KeyError, TypeError, ValueError) as error:
            raise BadDataError(f"{where}: malformed image entry ({error})") from None
        position: dict[int, int] = {}
        for k, image in enumerate(self.images):
            if image["id"] in position:  # its annotations would all go to one of the two samples
                raise BadDataError(f"{where}: duplicate image id {image['id']} (samples {position[image['id']]} "
                                   f"and {k}: {self.images[position[image['id']]]['file_name']!r}, "
                                   f"{image['file_name']!r})")
            position[image["id"]] = k
        per_image: list[list[tuple[list[float], int, bool]]] = [[] for _ in self.images]
        for number, ann in enumerate(data.get("annotations", [])):
            ann_where = f"{where}, annotation {ann.get('id', number)}"
            sample = position.get(ann.get("image_id"))
            if sample is None:
                raise BadDataError(f"{ann_where}: unknown image_id {ann.get('image_id')!r}")
            if ann.get("category_id") not in label_of:
                raise BadDataError(f"{ann_where} (sample {sample}): unknown category_id {ann.get('category_id')!r}")
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise BadDataError(f"{ann_where} (sample {sample}): bbox must be [x, y, w, h], got {bbox!r}")
            try:
                x, y, w, h = (float(v) for v in bbox)
            except (TypeError, ValueError):
                raise BadDataError(f"{ann_where} (sample {sample}): bbox is not numeric: {bbox!r}") from None
            per_image[sample].append(([x, y, x + w, y + h], label_of[ann["category_id"]], bool(ann.get("iscrowd", 0))))
        missing = [k for k, image in enumerate(self.images) if not (self.image_folder / image["file_name"]).is_file()]
        if missing:
            first = self.images[missing[0]]
            raise BadDataError(f"{self.image_folder / first['file_name']} (sample {missing[0]}, image id "
                               f"{first['id']} in {where}): image file not found"
                               + (f"; {len(missing) - 1} more are missing" if len(missing) > 1 else ""))
        self.targets: list[Target] = []
        for sample, (image, objects) in enumerate(zip(self.images, per_image)):
            if objects and not (image["width"] and image["height"]):
                from PIL import Image

                with Image.open(self.image_folder / image["file_name"]) as opened:
                    image["width"], image["height"] = opened.size
            target = {"boxes": np.asarray([o[0] for o in objects], np.float32).reshape(-1, 4),
                      "labels": np.asarray([o[1] for o in objects], np.int64),
                      "difficult": np.asarray([o[2] for o in objects], bool)}
            self.targets.append(repair_boxes(target, image["width"], image["height"],
                                             f"{where}, image {image['file_name']} (sample {sample})", self.repairs))
        if self.repairs.total():
            log.warning("%s: %d box(es) clipped to their image and %d degenerate box(es) dropped (see above)",
                        name, self.repairs.clipped, self.repairs.dropped)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Target]:
        path = self.image_folder / self.images[index]["file_name"]
        image = load_rgb(path)
        return resize_sample(image, {key: value.copy() for key, value in self.targets[index].items()},
                             self.image_size)

    def sample_key(self, index: int) -> str:
        return self.images[index]["file_name"]

    def image_info(self, index: int) -> dict[str, Any]:
        """COCO image entry of sample ``index`` (id, file_name, width, height)."""
        return dict(self.images[index])


def _path(root: Path, value: str) -> Path:
    return Path(value) if os.path.isabs(value) else root / value


def coco_splits(root: str | os.PathLike | None, seed: int = 0, download: bool = False, image_size: int | None = 300,
                train_json: str = "annotations/instances_train2017.json", train_images: str = "train2017",
                test_json: str = "annotations/instances_val2017.json", test_images: str = "val2017",
                **ignored: Any) -> tuple[COCODetection, COCODetection]:
    """The tuple ``(train, test)`` of :class:`COCODetection` sets under ``root``; ``ignored`` takes
    the options of other datasets so presets can be shared."""
    if root is None:
        raise ConfigError("--root is required for the coco dataset")
    if download:
        raise ConfigError("the coco dataset cannot be downloaded by lossal; fetch it and pass --root")
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"COCO folder not found: {base}")
    for option, value in (("train_json", train_json), ("test_json", test_json)):
        if not _path(base, value).is_file():
            raise ConfigError(f"{option}: {_path(base, value)} not found")
    train = COCODetection(_path(base, train_json), _path(base, train_images), image_size, name="coco train")
    test = COCODetection(_path(base, test_json), _path(base, test_images), image_size,
                         categories=list(zip(train.category_ids, train.classes)), name="coco test")
    return train, test

"""A detection labeling project: a folder of images plus a growing COCO JSON file or VOC XML folder.

* COCO: every entry of ``images`` counts as annotated (with or without objects) and is matched to
  the images folder by ``file_name``; the categories are the file's own (fixed at the first import
  by the labeling loop). Parsing and its checks are datasets/coco.py's.
* VOC: one XML file per annotated image, matched by its ``<filename>`` (relative to the images
  folder) or, failing that, by the XML file's stem; the categories come from the project's class
  list. Parsing and its checks are datasets/voc.py's.

Checks on import (BadDataError naming the file and the entry): an annotation for an image that is
not in the images folder (unknown image), an image annotated twice or a repeated image or
annotation id (duplicate), an object of a category outside the project's (wrong category).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.coco import COCODetection, read_coco_json
from lossal_tasks.datasets.detection_transforms import Target, empty_target, resize_sample
from lossal_tasks.datasets.folder import load_rgb
from lossal_tasks.datasets.labels_common import ProjectImages, check_unique, normalize_key, read_class_list
from lossal_tasks.datasets.voc import IMAGE_SUFFIXES, VOCDetection
from lossal_tasks.errors import BadDataError, ConfigError


class DetectionProject(ProjectImages, Dataset):
    """``dataset[i] -> (image uint8 [S, S, 3], target)`` (see datasets/detection_transforms.py);
    an image without annotation has an empty target (it is only ever scored, never trained on).

    Args:
        image_folder: the pool's images.
        labels: a COCO JSON file, or a folder of VOC XML files; it may not exist yet.
        classes: the categories of a VOC folder (required there; a COCO file brings its own).
        image_size: side of the square images are resized to (None: native size).
        categories: ``[(COCO category id, name), ...]`` fixing a COCO file's label order (default:
            the file's categories, by id); the test split passes the train split's.
    """

    def __init__(self, image_folder: str | os.PathLike, labels: str | os.PathLike,
                 classes: Sequence[str] | None = None, image_size: int | None = 300,
                 categories: Sequence[tuple[int, str]] | None = None) -> None:
        ProjectImages.__init__(self, image_folder)
        self.annotation_source = str(labels)
        self.image_size = image_size
        self._fixed_classes = tuple(classes) if classes is not None else None
        self._fixed_categories = list(categories) if categories is not None else None
        self.classes: tuple[str, ...] = self._fixed_classes or ()
        self.category_ids: list[int] | None = None
        self._parsed: Dataset | None = None
        self._parsed_position: dict[int, int] = {}
        self.annotated = self.import_annotations()

    @property
    def is_coco(self) -> bool:
        return not Path(self.annotation_source).is_dir()

    def import_annotations(self) -> dict[int, str]:
        """(Re)read the annotations; returns ``{dataset index: where}`` of every annotated image."""
        source = Path(self.annotation_source)
        if not source.exists():
            self._parsed, self._parsed_position, self.annotated = None, {}, {}
            return {}
        parsed, position, where = self._read_coco(source) if self.is_coco else self._read_voc(source)
        self._parsed = parsed
        self._parsed_position = position
        self.annotated = where
        return dict(where)

    def _read_coco(self, path: Path) -> tuple[COCODetection, dict[int, int], dict[int, str]]:
        data = read_coco_json(path)
        for k, entry in enumerate(data["images"] + list(data.get("annotations", []))):
            if not isinstance(entry, dict):
                raise BadDataError(f"{path}: entry {k} of 'images' + 'annotations' is not an object: {entry!r}")
        check_unique([(image.get("id"), f"{path}, images[{k}]") for k, image in enumerate(data["images"])],
                     "image id")
        check_unique([(ann.get("id"), f"{path}, annotations[{k}]")
                      for k, ann in enumerate(data.get("annotations", [])) if "id" in ann], "annotation id")
        where: dict[int, str] = {}
        position: dict[int, int] = {}
        for k, image in enumerate(data["images"]):
            place = f"{path}, image id {image.get('id')!r}"
            if "file_name" not in image:
                raise BadDataError(f"{place}: image entry without a file_name")
            index = self.lookup(str(image["file_name"]), place)
            if index in where:
                raise BadDataError(f"{place}: duplicate annotation of image {image['file_name']!r} "
                                   f"(already annotated at {where[index]})")
            where[index] = place
            position[index] = k
        categories = self._fixed_categories
        parsed = COCODetection(path, self.image_folder, self.image_size, categories=categories,
                               name=f"labels {path.name}")
        self.classes, self.category_ids = parsed.classes, list(parsed.category_ids)
        return parsed, position, where

    def coco_categories(self) -> list[dict[str, object]]:
        """``[{"id", "name"}, ...]``: the annotation file's own category ids (VOC: 1 .. C)."""
        ids = self.category_ids or range(1, len(self.classes) + 1)
        return [{"id": int(i), "name": str(name)} for i, name in zip(ids, self.classes)]

    def _read_voc(self, folder: Path) -> tuple[VOCDetection, dict[int, int], dict[int, str]]:
        if self._fixed_classes is None:
            raise ConfigError(f"{folder}: a VOC annotation folder needs the project's class list (classes=)")
        items = []
        where: dict[int, str] = {}
        for xml in sorted(folder.glob("*.xml")):
            index = self._voc_image(xml)
            if index in where:
                raise BadDataError(f"{xml}: duplicate annotation of image {self.keys[index]!r} "
                                   f"(already annotated by {where[index]})")
            where[index] = str(xml)
            items.append((self.image_path(index), xml))
        parsed = VOCDetection(items, self._fixed_classes, self.image_size, root=self.image_folder,
                              name=f"labels {folder.name}")
        position = {index: k for k, index in enumerate(where)}
        return parsed, position, where

    def _voc_image(self, xml: Path) -> int:
        try:
            named = ET.parse(xml).getroot().findtext("filename")
        except ET.ParseError as error:
            raise BadDataError(f"{xml}: malformed or truncated XML ({error})") from None
        if named and normalize_key(named) in self.position:
            return self.position[normalize_key(named)]
        for key in (xml.stem + suffix for suffix in IMAGE_SUFFIXES):
            if key in self.position:
                return self.position[key]
        return self.lookup(named.strip() if named else xml.stem, str(xml))

    def __getitem__(self, index: int) -> tuple[np.ndarray, Target]:
        k = self._parsed_position.get(index)
        if k is not None and self._parsed is not None:
            return self._parsed[k]
        return resize_sample(load_rgb(self.image_path(index)), empty_target(), self.image_size)


def detection_project_splits(root: str | os.PathLike | None, image_size: int | None = 300,
                             images: str = "images", labels: str | None = None, classes: str = "classes.txt",
                             test_images: str = "test", test_labels: str | None = None,
                             ) -> tuple[DetectionProject, DetectionProject | None]:
    """The project under ``root``: ``(pool, test)``; ``test`` is None without test annotations.

    ``labels`` defaults to ``labels.json`` (COCO) or, when only it exists, the ``labels/`` folder
    (VOC XML); ``test_labels`` likewise to ``test.json`` or ``test_labels/``, for the images in
    ``test_images``. A VOC project needs ``classes`` (one category a line).
    """
    base = _project_root(root)
    labels_path = _pick(base, labels, "labels.json", "labels")
    class_list = read_class_list(base / classes) if labels_path.is_dir() else None
    pool = DetectionProject(base / images, labels_path, class_list, image_size)
    test_path = _pick(base, test_labels, "test.json", "test_labels")
    if not test_path.exists():
        return pool, None
    categories = list(zip(pool.category_ids, pool.classes)) if pool.category_ids is not None else None
    test = DetectionProject(base / test_images, test_path, pool.classes if test_path.is_dir() else None,
                            image_size, categories=categories if not test_path.is_dir() else None)
    return pool, test


def _pick(base: Path, given: str | None, coco_name: str, voc_name: str) -> Path:
    if given is not None:
        return base / given
    return base / voc_name if (base / voc_name).is_dir() and not (base / coco_name).exists() else base / coco_name


def _project_root(root: str | os.PathLike | None) -> Path:
    if root is None:
        raise ConfigError("--root is required for the labels dataset (the labeling project's folder)")
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"labeling project folder not found: {base}")
    return base

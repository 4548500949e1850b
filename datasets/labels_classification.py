"""A classification labeling project: a folder of images plus a growing CSV of ``path,class``.

The CSV has a header row naming at least the columns ``path`` (relative to the images folder)
and ``class``; other columns (annotator, date, ...) are kept out of the way. Every image file
under the images folder is a sample (see labels_common.py); the CSV says which of them are
labeled. The category list is fixed by the project's class list, so a class outside it is an
error, not a new class.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.folder import load_rgb
from lossal_tasks.datasets.labels_common import ProjectImages, read_class_list
from lossal_tasks.errors import BadDataError, ConfigError

UNLABELED = -1


class ClassificationProject(ProjectImages, Dataset):
    """``dataset[i] -> (image [S, S, 3] uint8, label int)``; the label is -1 while image i has no
    annotation (such samples are only ever scored, never trained on).

    Args:
        image_folder: the pool's images.
        labels_file: the ``path,class`` CSV; it may not exist yet (nothing labeled).
        classes: the project's categories; label c is ``classes[c]``.
        image_size: side of the square images are resized to (None: native size).
    """

    def __init__(self, image_folder: str | os.PathLike, labels_file: str | os.PathLike,
                 classes: Sequence[str], image_size: int | None = 32) -> None:
        ProjectImages.__init__(self, image_folder)
        self.annotation_source = str(labels_file)
        self.classes = tuple(classes)
        self.image_size = image_size
        self.labels = np.full(len(self.keys), UNLABELED, dtype=np.int64)
        self.annotated = self.import_annotations()

    def import_annotations(self) -> dict[int, str]:
        """(Re)read the CSV and return ``{dataset index: "file:line"}`` of every labeled image.

        Raises BadDataError naming the file, line and entry for an image not in the images
        folder (unknown image), an image labeled twice (duplicate) or a class outside the
        project's categories (wrong category), and for a file without ``path`` and ``class``
        columns.
        """
        path = Path(self.annotation_source)
        labels = np.full(len(self.keys), UNLABELED, dtype=np.int64)
        annotated: dict[int, str] = {}
        if path.exists():
            class_of = {name: c for c, name in enumerate(self.classes)}
            with open(path, newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                if not reader.fieldnames or not {"path", "class"} <= {f.strip() for f in reader.fieldnames}:
                    raise BadDataError(f"{path}: needs a header row with the columns path and class, "
                                       f"got {reader.fieldnames}")
                for row in reader:
                    row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
                    where = f"{path}:{reader.line_num}"
                    if not row.get("path") and not row.get("class"):
                        continue
                    if not row.get("path") or not row.get("class"):
                        raise BadDataError(f"{where}: an entry needs both a path and a class, got {row}")
                    index = self.lookup(row["path"], where)
                    if index in annotated:
                        raise BadDataError(f"{where}: duplicate annotation of image {row['path']!r} "
                                           f"(already labeled at {annotated[index]})")
                    if row["class"] not in class_of:
                        raise BadDataError(f"{where}: wrong category {row['class']!r} for image {row['path']!r}; "
                                           f"the project's categories: {', '.join(self.classes)}")
                    labels[index] = class_of[row["class"]]
                    annotated[index] = where
        self.labels = labels
        self.annotated = annotated
        return dict(annotated)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return load_rgb(self.image_path(index), self.image_size), int(self.labels[index])


def classification_project_splits(root: str | os.PathLike | None, image_size: int | None = 32,
                                  images: str = "images", labels: str = "labels.csv",
                                  classes: str = "classes.txt", test_images: str = "test",
                                  test_labels: str = "test.csv",
                                  ) -> tuple[ClassificationProject, ClassificationProject | None]:
    """The project under ``root`` (paths relative to it): ``(pool, test)``; ``test`` is None when
    there is no ``test_labels`` file (its paths are relative to ``test_images``)."""
    if root is None:
        raise ConfigError("--root is required for the labels dataset (the labeling project's folder)")
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"labeling project folder not found: {base}")
    names = read_class_list(base / classes)
    pool = ClassificationProject(base / images, base / labels, names, image_size)
    if not (base / test_labels).exists():
        return pool, None
    return pool, ClassificationProject(base / test_images, base / test_labels, names, image_size)

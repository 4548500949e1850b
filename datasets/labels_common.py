"""What every labeling-project dataset shares: the image listing and the fixed category list.

A labeling project is a folder of images (the pool) plus an annotation source that grows as
people label. Every image file under the images folder is a sample; samples are ordered by their
path relative to that folder (POSIX separators), so dataset indices stay stable while labels are
added. The same relative path is the sample key, the ``file_name`` of exported COCO image lists and
the path the annotation files use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from torchvision.datasets.folder import IMG_EXTENSIONS

from lossal_tasks.datasets.folder import image_size_of
from lossal_tasks.errors import BadDataError, ConfigError


def list_images(folder: str | os.PathLike) -> list[str]:
    """Every image file under ``folder`` (any depth, hidden files and folders skipped), as paths
    relative to ``folder`` with ``/`` separators, sorted. A missing folder raises ConfigError."""
    base = Path(folder)
    if not base.is_dir():
        raise ConfigError(f"images folder not found: {base}")
    found = []
    for directory, subdirs, files in os.walk(base):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS):
                found.append((Path(directory) / name).relative_to(base).as_posix())
    return sorted(found)


def normalize_key(path: str) -> str:
    """An annotation file's image path in the form of :func:`list_images` (``/``, no ``./``)."""
    key = path.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def read_class_list(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names, one a line (blank lines and ``#`` comments skipped). A missing file raises
    ConfigError; a repeated name raises BadDataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: class list not found; write the project's categories there, one a line")
    names: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name in names:
            raise BadDataError(f"{path}:{number}: category {name!r} is listed twice")
        names.append(name)
    if not names:
        raise BadDataError(f"{path}: the class list is empty")
    return tuple(names)


class ProjectImages:
    """The image listing of a project folder; the mixin behind the project datasets.

    Attributes: ``image_folder`` (Path), ``keys`` (relative paths, sorted), ``position``
    ({key: dataset index}).
    """

    def __init__(self, image_folder: str | os.PathLike) -> None:
        self.image_folder = Path(image_folder)
        self.keys = list_images(self.image_folder)
        self.position = {key: index for index, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def sample_key(self, index: int) -> str:
        return self.keys[index]

    def image_path(self, index: int) -> Path:
        return self.image_folder / self.keys[index]

    def image_info(self, index: int) -> dict[str, Any]:
        """``{"file_name", "width", "height"}`` of sample ``index`` (native size, from the file header)."""
        width, height = image_size_of(self.image_path(index))
        return {"file_name": self.keys[index], "width": width, "height": height}

    def lookup(self, path: str, where: str) -> int:
        """The dataset index of the image an annotation calls ``path``; an image that is not in
        the images folder raises BadDataError ("unknown image") naming ``where``."""
        index = self.position.get(normalize_key(path))
        if index is None:
            raise BadDataError(f"{where}: unknown image {path!r}: no such image in {self.image_folder}")
        return index


def check_unique(values: Sequence[tuple[Any, str]], what: str) -> None:
    """``values`` are ``(value, where)`` pairs; the second occurrence of a value raises
    BadDataError ("duplicate ...") naming both places."""
    first: dict[Any, str] = {}
    for value, where in values:
        if value in first:
            raise BadDataError(f"{where}: duplicate {what} {value!r} (first at {first[value]})")
        first[value] = where

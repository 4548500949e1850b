"""Image-folder classification data: ``root/<class>/<image>`` (optionally under train/ and test/)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from lossal_tasks.errors import BadDataError, ConfigError


def load_rgb(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3] (resized to ``size`` x ``size`` when given).

    A missing, truncated or unreadable file raises BadDataError naming it.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise BadDataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadDataError(f"{path}: corrupt or unreadable image ({error})") from None


def image_size_of(path: str | os.PathLike, where: str | None = None) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding the pixels.

    A missing or unreadable file raises BadDataError naming it and ``where`` (the record that needs it).
    """
    context = f"{where}: " if where else ""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise BadDataError(f"{path}: image file not found" + (f" ({where})" if where else "")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadDataError(f"{path}: corrupt or unreadable image ({context}{error})") from None


class ImageFolderDataset(Dataset):
    """Images in ``root/<class name>/`` (torchvision's ImageFolder layout), resized to ``image_size``.

    ``dataset[i] -> (image [S, S, 3] uint8, label int)``; ``sample_key(i)`` is the path relative to
    ``root``. Pass ``classes`` to force the class list (so train and test agree).
    """

    def __init__(self, root: str | os.PathLike, image_size: int = 32,
                 classes: list[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"image folder not found: {self.root}")
        try:
            found, _ = find_classes(str(self.root)) if classes is None else (classes, None)
        except FileNotFoundError:
            raise BadDataError(f"{self.root}: no class folders (expected <root>/<class>/<image>); "
                               "the pool would be empty") from None
        self.classes = list(found)
        class_to_idx = {name: i for i, name in enumerate(self.classes)}
        try:
            self.samples = make_dataset(str(self.root), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as error:
            raise BadDataError(f"{self.root}: {error}") from None
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        return load_rgb(path, self.image_size), label

    def sample_key(self, index: int) -> str:
        return os.path.relpath(self.samples[index][0], self.root)

    def check(self) -> None:
        """Open every image once; the first unreadable one raises BadDataError naming it."""
        for path, _ in self.samples:
            load_rgb(path)

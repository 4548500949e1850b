"""Pascal VOC detection data, from a VOCdevkit tree or from a plain pair of folders.

Layouts ``root`` may have (nothing is downloaded):

* VOCdevkit: ``root`` is ``VOCdevkit/``, its parent, or one ``VOC<year>/`` folder, each year with
  ``JPEGImages/``, ``Annotations/`` and ``ImageSets/Main/<split>.txt``. Train = ``train_split``
  of every year in ``years`` that is present (VOC07+12 trainval by default), test =
  ``test_split`` of ``test_year`` (VOC07 test).
* Plain pair: ``root/images/`` and ``root/annotations/`` (VOC XML files; names set by
  ``image_dir`` / ``annotation_dir``), either under ``root/train/`` and ``root/test/`` or directly
  under ``root`` and split by ``seed`` with ``test_fraction`` held out. Each XML file is a sample;
  its image is the file its ``<filename>`` names, or the image with the same stem.

Every XML file is read when the dataset is built: a malformed (e.g. truncated) file, a missing
field or a missing image file raises BadDataError naming the file and sample; a box reaching
outside its image is clipped and a degenerate box dropped, each counted in ``repairs`` and logged.
VOC pixel coordinates (1-based, inclusive) become continuous ``(x1 - 1, y1 - 1, x2, y2)``.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from lossal_tasks.datasets.detection_transforms import BoxRepairs, Target, repair_boxes, resize_sample
from lossal_tasks.datasets.folder import load_rgb
from lossal_tasks.errors import BadDataError, ConfigError

log = logging.getLogger(__name__)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def _text(node: ET.Element, tag: str, where: str, required: bool = True) -> str | None:
    found = node.find(tag)
    if found is None or found.text is None or not found.text.strip():
        if required:
            raise BadDataError(f"{where}: missing <{tag}>")
        return None
    return found.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        return float(text)  # type: ignore[arg-type]
    except ValueError:
        raise BadDataError(f"{where}: <{tag}> is not a number: {text!r}") from None


def parse_voc_xml(path: str | os.PathLike, sample: int | None = None) -> dict[str, Any]:
    """Read one VOC annotation file.

    Returns ``{"filename": str or None, "width": float or None, "height": float or None,
    "objects": [(name, [x1, y1, x2, y2] continuous pixels, difficult bool), ...]}``.
    A malformed file or object raises BadDataError naming the file (and ``sample``).
    """
    where = f"{path}" + (f" (sample {sample})" if sample is not None else "")
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise BadDataError(f"{where}: annotation file not found") from None
    except ET.ParseError as error:
        raise BadDataError(f"{where}: malformed or truncated XML ({error})") from None
    size = root.find("size")
    width = height = None
    if size is not None:
        width = float(_text(size, "width", where, False) or 0) or None
        height = float(_text(size, "height", where, False) or 0) or None
    objects = []
    for k, node in enumerate(root.findall("object")):
        place = f"{where}, object {k}"
        name = _text(node, "name", place)
        box = node.find("bndbox")
        if box is None:
            raise BadDataError(f"{place} ({name}): missing <bndbox>")
        coords = [_number(box, tag, f"{place} ({name})") for tag in ("xmin", "ymin", "xmax", "ymax")]
        difficult = (_text(node, "difficult", place, False) or "0") not in ("0", "false", "False")
        objects.append((name, [coords[0] - 1.0, coords[1] - 1.0, coords[2], coords[3]], difficult))
    return {"filename": _text(root, "filename", where, False), "width": width, "height": height,
            "objects": objects}


class VOCDetection(Dataset):
    """VOC-style samples: ``dataset[i] -> (image uint8 [S, S, 3], target)`` (see
    datasets/detection_transforms.py for the target), resized to ``image_size`` (None: native).

    Args:
        items: ``(image path, annotation path)`` pairs, one per sample.
        classes: class names; label c is ``classes[c]``. An object of another class raises BadDataError.
        image_size: side of the square the images are resized to.
        root: paths in :meth:`sample_key` are relative to it.
    Attributes: ``classes``, ``repairs`` (:class:`BoxRepairs`).
    """

    def __init__(self, items: Sequence[tuple[Path, Path]], classes: Sequence[str], image_size: int | None = 300,
                 root: str | os.PathLike | None = None, name: str = "voc") -> None:
        self.items = [(Path(image), Path(xml)) for image, xml in items]
        self.classes = tuple(classes)
        self.image_size = image_size
        self.root = Path(root) if root is not None else None
        self.name = name
        self.repairs = BoxRepairs()
        index = {cls: c for c, cls in enumerate(self.classes)}
        missing = [(sample, image, xml) for sample, (image, xml) in enumerate(self.items) if not image.is_file()]
        if missing:
            sample, image, xml = missing[0]
            raise BadDataError(f"{image} (sample {sample}, annotated in {xml}): image file not found"
                               + (f"; {len(missing) - 1} more image file(s) of {name} are missing"
                                  if len(missing) > 1 else ""))
        self.targets: list[Target] = []
        self.sizes: list[tuple[int, int]] = []
        for sample, (image, xml) in enumerate(self.items):
            parsed = parse_voc_xml(xml, sample)
            width, height = parsed["width"], parsed["height"]
            if not width or not height:
                with Image.open(image) as opened:
                    width, height = opened.size
            labels = []
            for k, (cls, _, _) in enumerate(parsed["objects"]):
                if cls not in index:
                    raise BadDataError(f"{xml} (sample {sample}), object {k}: unknown class {cls!r}; "
                                       f"known: {', '.join(self.classes)}")
                labels.append(index[cls])
            target = {"boxes": np.asarray([box for _, box, _ in parsed["objects"]], np.float32).reshape(-1, 4),
                      "labels": np.asarray(labels, np.int64),
                      "difficult": np.asarray([d for _, _, d in parsed["objects"]], bool)}
            self.targets.append(repair_boxes(target, width, height, f"{xml} (sample {sample})", self.repairs))
            self.sizes.append((int(round(width)), int(round(height))))
        if self.repairs.total():
            log.warning("%s: %d box(es) clipped to their image and %d degenerate box(es) dropped (see above)",
                        name, self.repairs.clipped, self.repairs.dropped)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Target]:
        image_path, xml = self.items[index]
        image = load_rgb(image_path)
        width, height = self.sizes[index]
        if image.shape[:2] != (height, width):
            raise BadDataError(f"{image_path} (sample {index}): image is {image.shape[1]}x{image.shape[0]} "
                               f"but {xml.name} says {width}x{height}")
        return resize_sample(image, {key: value.copy() for key, value in self.targets[index].items()},
                             self.image_size)

    def sample_key(self, index: int) -> str:
        image = self.items[index][0]
        if self.root is not None:
            try:
                return image.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return image.name

    def image_info(self, index: int) -> dict[str, Any]:
        width, height = self.sizes[index]
        return {"file_name": self.sample_key(index), "width": width, "height": height}


def _year_folders(root: Path) -> dict[str, Path]:
    """``{year: VOC<year> folder}`` for a VOCdevkit, its parent, or a single VOC folder."""
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir() and (root / "ImageSets").is_dir():
        year = root.name[3:] if root.name.startswith("VOC") else root.name
        return {year: root}
    for base in (root, root / "VOCdevkit"):
        found = {p.name[3:]: p for p in sorted(base.glob("VOC*")) if (p / "Annotations").is_dir()}
        if found:
            return found
    return {}


def _split_items(folder: Path, split: str) -> list[tuple[Path, Path]]:
    listing = folder / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise ConfigError(f"{listing}: split list not found (choose another train_split / test_split)")
    items = []
    for line in listing.read_text(encoding="utf-8").split("\n"):
        stem = line.strip().split(" ")[0] if line.strip() else ""
        if stem:
            items.append((folder / "JPEGImages" / f"{stem}.jpg", folder / "Annotations" / f"{stem}.xml"))
    return items


def _pair_items(images: Path, annotations: Path) -> list[tuple[Path, Path]]:
    """One (image, xml) pair per XML file; images without an XML file are counted and logged."""
    items = []
    for xml in sorted(annotations.glob("*.xml")):
        image = None
        try:
            named = ET.parse(xml).getroot().findtext("filename")
        except ET.ParseError:
            named = None            # reported with file and sample when the dataset parses it
        if named and (images / named.strip()).is_file():
            image = images / named.strip()
        else:
            image = next((images / (xml.stem + s) for s in IMAGE_SUFFIXES if (images / (xml.stem + s)).is_file()),
                         images / (named.strip() if named else xml.stem + ".jpg"))
        items.append((image, xml))
    used = {image.name for image, _ in items}
    unlabeled = [p.name for p in sorted(images.iterdir()) if p.suffix in IMAGE_SUFFIXES and p.name not in used]
    if unlabeled:
        log.warning("%s: %d image(s) have no annotation file in %s and are not used, e.g. %s",
                    images, len(unlabeled), annotations, unlabeled[:3])
    return items


def _classes_of(item_lists: Sequence[Sequence[tuple[Path, Path]]]) -> tuple[str, ...]:
    names = set()
    for items in item_lists:
        for sample, (_, xml) in enumerate(items):
            names.update(name for name, _, _ in parse_voc_xml(xml, sample)["objects"])
    return VOC_CLASSES if names <= set(VOC_CLASSES) else tuple(sorted(names))


def voc_splits(root: str | os.PathLike | None, seed: int = 0, download: bool = False, image_size: int | None = 300,
               years: Sequence[str] = ("2007", "2012"), train_split: str = "trainval", test_year: str = "2007",
               test_split: str = "test", image_dir: str = "images", annotation_dir: str = "annotations",
               test_fraction: float = 0.2, classes: Sequence[str] | None = None,
               **ignored: Any) -> tuple[VOCDetection, VOCDetection]:
    """Train and test :class:`VOCDetection` sets from ``root`` (layouts in the module docstring).

    Returns the tuple ``(train, test)``. ``classes`` fixes the class list (default: the 20 VOC classes, or the
    sorted names found in a plain pair when they are not VOC's). ``ignored`` takes the options of
    other datasets (e.g. ``train_size``) so presets can be shared.
    """
    if root is None:
        raise ConfigError("--root is required for the voc dataset (a VOCdevkit or a folder of images/ + annotations/)")
    if download:
        raise ConfigError("the voc dataset cannot be downloaded by lossal; fetch VOCdevkit and pass --root")
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"VOC folder not found: {base}")
    folders = _year_folders(base)
    if folders:
        chosen = [folders[y] for y in years if y in folders] or (list(folders.values()) if len(folders) == 1 else [])
        if not chosen:
            raise ConfigError(f"{base}: none of the years {list(years)} found; found {sorted(folders)}")
        test_folder = folders.get(test_year) or (chosen[0] if len(folders) == 1 else None)
        if test_folder is None:
            raise ConfigError(f"{base}: test_year {test_year} not found; found {sorted(folders)}")
        train_items = [item for folder in chosen for item in _split_items(folder, train_split)]
        test_items = _split_items(test_folder, test_split)
        names = tuple(classes) if classes else VOC_CLASSES
        return (VOCDetection(train_items, names, image_size, base, "voc train"),
                VOCDetection(test_items, names, image_size, base, "voc test"))
    if (base / "train" / annotation_dir).is_dir():
        if not (base / "test" / annotation_dir).is_dir():
            raise ConfigError(f"{base / 'test' / annotation_dir}: missing (a folder with train/ needs test/ too)")
        train_items = _pair_items(base / "train" / image_dir, base / "train" / annotation_dir)
        test_items = _pair_items(base / "test" / image_dir, base / "test" / annotation_dir)
    elif (base / annotation_dir).is_dir():
        everything = _pair_items(base / image_dir, base / annotation_dir)
        order = np.random.default_rng(seed).permutation(len(everything))
        cut = int(round(len(order) * test_fraction))
        train_items = [everything[i] for i in sorted(order[cut:])]
        test_items = [everything[i] for i in sorted(order[:cut])]
    else:
        raise ConfigError(f"{base}: neither a VOCdevkit (VOC<year>/Annotations, JPEGImages, ImageSets) nor a "
                          f"pair of folders {image_dir}/ and {annotation_dir}/")
    names = tuple(classes) if classes else _classes_of([train_items, test_items])
    return (VOCDetection(train_items, names, image_size, base, "voc train"),
            VOCDetection(test_items, names, image_size, base, "voc test"))

"""Exporting a selection for labeling tools: a COCO JSON image list (no annotations yet)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.data import sample_key
from lossal_tasks.runio import atomic_write_json


def image_entry(dataset: Dataset, index: int) -> dict[str, Any]:
    """``{"file_name", "width", "height"}`` of sample ``index`` (plus ``id`` when the dataset has one).

    Uses ``dataset.image_info(index)`` when the dataset offers it; otherwise the sample key and the
    shape of the sample's image (loading the sample).
    """
    info = getattr(dataset, "image_info", None)
    if callable(info):
        return dict(info(index))
    sample = dataset[index]
    image = sample[0] if isinstance(sample, (tuple, list)) else sample
    shape = np.shape(image)
    height, width = (shape[0], shape[1]) if len(shape) >= 2 else (0, 0)
    return {"file_name": sample_key(dataset, index), "width": int(width), "height": int(height)}


def coco_image_list(dataset: Dataset, indices: Sequence[int], scores: Sequence[float] | None = None,
                    info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A COCO-format dict listing the images at ``indices`` (in that order) for annotation.

    ``images`` holds ``id`` (the dataset's own image id where it has one, else index + 1),
    ``file_name``, ``width``, ``height`` and, as extra fields, ``lossal_rank``,
    ``lossal_dataset_index`` and ``lossal_score``; ``annotations`` is empty; ``categories`` lists
    the dataset's ``classes`` (ids from 1), or ``dataset.coco_categories()`` where it has that.
    """
    images = []
    for rank, index in enumerate(indices, start=1):
        entry = image_entry(dataset, int(index))
        entry.setdefault("id", int(index) + 1)
        entry.update({"lossal_rank": rank, "lossal_dataset_index": int(index)})
        if scores is not None:
            score = float(scores[rank - 1])
            entry["lossal_score"] = None if math.isnan(score) else score   # JSON has no NaN
        images.append(entry)
    classes = getattr(dataset, "classes", None) or ()
    categories = [{"id": c + 1, "name": str(name)} for c, name in enumerate(classes)]
    own = getattr(dataset, "coco_categories", None)
    if callable(own):
        # a labeling project's annotation file has its own ids; annotations must come back in them
        categories = own()
    return {"info": dict(info or {}), "images": images, "annotations": [], "categories": categories}


def write_coco_image_list(path: str | os.PathLike, dataset: Dataset, indices: Sequence[int],
                          scores: Sequence[float] | None = None, info: dict[str, Any] | None = None) -> Path:
    """Write :func:`coco_image_list` to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_json(path, coco_image_list(dataset, indices, scores, info))
    return path

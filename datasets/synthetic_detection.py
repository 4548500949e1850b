"""Procedurally generated detection data: several shapes of several classes per image.

Sample i of a dataset with seed s is drawn from (s, i) alone, so a pool of a million images costs
no memory and is the same on every machine and in every worker. Objects vary in class, size
(from a few pixels up to half the image), colour (each class has its own, jittered, and look-alike
classes share one) and aspect; later objects may hide part
of earlier ones (each keeps at least half of its pixels visible, and its box is the tight box of
what is visible); clutter lines and noise make some images harder; some images have no objects.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.synthetic import _draw_clutter, _grid, _shape_mask, sample_rng
from lossal_tasks.errors import ConfigError

DETECTION_CLASSES = ("disk", "ring", "square", "diamond", "triangle_up", "plus", "cross", "ellipse")
# Relative class frequencies (the look-alike member of a pair is rarer).
DETECTION_CLASS_WEIGHTS = np.array([1.0, 0.6, 1.0, 0.5, 1.0, 1.0, 0.5, 0.6])
# Base colour (RGB in [0, 1]) of each class; look-alike pairs share a colour.
CLASS_COLOURS = np.array([[0.9, 0.2, 0.2], [0.85, 0.3, 0.25], [0.2, 0.35, 0.9], [0.25, 0.3, 0.85],
                          [0.95, 0.85, 0.15], [0.15, 0.8, 0.3], [0.2, 0.75, 0.35], [0.9, 0.2, 0.2]])
# Probability of 0, 1, 2, ... objects in an image (truncated at max_objects and renormalised).
OBJECT_COUNT_WEIGHTS = np.array([0.06, 0.18, 0.2, 0.18, 0.14, 0.1, 0.08, 0.06])
MIN_VISIBLE = 0.5       # an object keeps at least this fraction of its pixels visible


def render_detection_image(seed: int, index: int, size: int = 128, num_classes: int = 6,
                           max_objects: int = 6, min_size: float = 0.06,
                           max_size: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw sample ``index`` of dataset ``seed``.

    Returns ``(image [size, size, 3] uint8, boxes [G, 4] float32 (x1, y1, x2, y2 pixels, the tight
    box of the visible pixels), labels [G] int64 (0 .. num_classes-1), visible [G] float32 (the
    visible fraction of each object's pixels))``. G may be 0.
    """
    rng = sample_rng(seed, index)
    weights = DETECTION_CLASS_WEIGHTS[:num_classes] / DETECTION_CLASS_WEIGHTS[:num_classes].sum()
    counts = OBJECT_COUNT_WEIGHTS[: max_objects + 1] / OBJECT_COUNT_WEIGHTS[: max_objects + 1].sum()
    wanted = int(rng.choice(len(counts), p=counts))
    hardness = float(rng.uniform(0.0, 1.0)) ** 2       # most images clean, a tail hard

    x, y = _grid(size)
    background = rng.uniform(0.2, 0.8, size=3)
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = background + 0.2 * (x[..., None] * rng.uniform(-0.5, 0.5, size=3)
                                   + y[..., None] * rng.uniform(-0.5, 0.5, size=3))
    for _ in range(int(rng.integers(0, 2 + round(4 * hardness)))):
        _draw_clutter(image, x, y, rng)

    owner = np.full((size, size), -1, dtype=np.int16)
    areas: list[int] = []
    visible: list[int] = []
    labels: list[int] = []
    log_low, log_high = np.log(max(3.0, min_size * size)), np.log(max_size * size)
    for _ in range(wanted):
        label = int(rng.choice(num_classes, p=weights))
        diameter = float(np.exp(rng.uniform(log_low, log_high)))
        aspect = float(rng.uniform(0.8, 1.25))
        angle = float(rng.uniform(-0.3, 0.3))
        # each class has its own colour, jittered; look-alike pairs share one, so shape must tell them apart
        jitter = rng.normal(0.0, 0.06 + 0.1 * hardness, size=3)
        colour = np.clip(CLASS_COLOURS[label] + jitter, 0.0, 1.0)
        if np.abs(colour - background).max() < 0.15:       # keep a little contrast to the background
            colour = np.clip(colour + 0.2 * np.sign(colour - background + 1e-6), 0.0, 1.0)
        for _attempt in range(3):
            placed = _place(owner, areas, visible, size, diameter, aspect, angle, DETECTION_CLASSES[label], rng)
            if placed is not None:
                window, mask = placed
                image[window][mask] = colour
                labels.append(label)
                break
    image += rng.normal(0.0, 0.02 + 0.12 * hardness, size=image.shape).astype(np.float32)
    image = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)

    boxes = np.zeros((len(labels), 4), dtype=np.float32)
    for k in range(len(labels)):
        rows, cols = np.nonzero(owner == k)
        boxes[k] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    fractions = np.asarray(visible, dtype=np.float32) / np.maximum(np.asarray(areas, dtype=np.float32), 1.0)
    return image, boxes, np.asarray(labels, dtype=np.int64), fractions



def _place(owner: np.ndarray, areas: list[int], visible: list[int], size: int, diameter: float,
           aspect: float, angle: float, shape: str,
           rng: np.random.Generator) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Try to put one object on ``owner``; None if it would hide too much of an earlier one."""
    half_w, half_h = 0.5 * diameter * aspect, 0.5 * diameter / aspect
    reach = int(np.ceil(max(half_w, half_h))) + 1
    cx = rng.uniform(half_w, size - half_w) if size > 2 * half_w else size / 2
    cy = rng.uniform(half_h, size - half_h) if size > 2 * half_h else size / 2
    x0, x1 = max(0, int(cx) - reach), min(size, int(cx) + reach + 1)
    y0, y1 = max(0, int(cy) - reach), min(size, int(cy) + reach + 1)
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5 - cy
    px, py = np.meshgrid(xs, ys, indexing="xy")
    cos, sin = np.cos(angle), np.sin(angle)
    u = (px * cos + py * sin) / half_w
    v = (-px * sin + py * cos) / half_h
    mask = _shape_mask(shape, u, v, rng)
    area = int(mask.sum())
    if area < 6:
        return None
    window = (slice(y0, y1), slice(x0, x1))
    hidden = owner[window][mask]
    hidden = np.bincount(hidden[hidden >= 0], minlength=len(areas))
    for k, lost in enumerate(hidden):
        if lost and visible[k] - lost < MIN_VISIBLE * areas[k]:
            return None
    for k, lost in enumerate(hidden):
        visible[k] -= int(lost)
    owner[window][mask] = len(areas)
    areas.append(area)
    visible.append(area)
    return window, mask


class SyntheticDetection(Dataset):
    """Generated detection images, ``dataset[i] -> (image [S, S, 3] uint8, target)`` where
    ``target = {"boxes": [G, 4] float32 (x1, y1, x2, y2 pixels), "labels": [G] int64
    (0 .. num_classes-1), "difficult": [G] bool (all False)}``; G may be 0.

    ``visibility(i)`` gives each object's visible fraction; ``sample_key(i)`` a file-like name.
    """

    def __init__(self, num_samples: int, seed: int = 0, image_size: int = 128, num_classes: int = 6,
                 max_objects: int = 6, min_size: float = 0.06, max_size: float = 0.5,
                 split: str = "train") -> None:
        if num_samples < 0:
            raise ConfigError(f"synthetic dataset size must be non-negative, got {num_samples}")
        if not 1 <= num_classes <= len(DETECTION_CLASSES):
            raise ConfigError(f"num_classes must be between 1 and {len(DETECTION_CLASSES)}, got {num_classes}")
        if not 0 <= max_objects < len(OBJECT_COUNT_WEIGHTS):
            raise ConfigError(f"max_objects must be between 0 and {len(OBJECT_COUNT_WEIGHTS) - 1}, got {max_objects}")
        if image_size < 32:
            raise ConfigError(f"image_size must be at least 32, got {image_size}")
        if not 0 < min_size <= max_size <= 1:
            raise ConfigError(f"need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.max_objects = int(max_objects)
        self.min_size, self.max_size = float(min_size), float(max_size)
        self.split = split
        self.classes = DETECTION_CLASSES[:num_classes]

    def __len__(self) -> int:
        return self.num_samples

    def _render(self, index: int):
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample {index} outside synthetic {self.split} set of {self.num_samples}")
        return render_detection_image(self.seed, index, self.image_size, self.num_classes, self.max_objects,
                                      self.min_size, self.max_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        image, boxes, labels, _ = self._render(index)
        return image, {"boxes": boxes, "labels": labels, "difficult": np.zeros(len(labels), dtype=bool)}

    def visibility(self, index: int) -> np.ndarray:
        """Visible fraction [G] of each object of sample ``index`` (1.0 = not occluded)."""
        return self._render(index)[3]

    def sample_key(self, index: int) -> str:
        return f"synthetic-{self.split}-{index:07d}.png"

    def image_info(self, index: int) -> dict[str, Any]:
        """File name and size of sample ``index`` (for COCO image lists)."""
        return {"file_name": self.sample_key(index), "width": self.image_size, "height": self.image_size}

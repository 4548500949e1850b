"""Procedurally generated datasets: every sample is drawn from (seed, index), nothing is stored.

A pool of a million samples costs no memory; sample i is the same on every machine and in
every worker. Difficulty varies on purpose: some classes look alike (disk/ring/ellipse,
square/diamond, plus/cross, triangle up/down), some are rarer, and nuisance factors (noise, low
contrast, small scale, clutter) make some samples much harder than others, so choosing which
samples to label matters.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.errors import ConfigError

SHAPE_CLASSES = ("disk", "ring", "ellipse", "square", "diamond", "plus", "cross",
                 "horizontal_bars", "vertical_bars", "triangle_up", "triangle_down", "dots")
# Relative class frequencies: the look-alike member of each pair is rarer.
CLASS_WEIGHTS = np.array([1.0, 0.6, 0.35, 1.0, 0.4, 1.0, 0.45, 1.0, 0.8, 1.0, 0.4, 0.7])


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``index`` of dataset ``seed``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(coords, coords, indexing="xy")


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of shape ``name`` in its own frame (u right, v down, unit radius)."""
    radius = np.sqrt(u * u + v * v)
    if name == "disk":
        return radius < 1.0
    if name == "ring":
        return (radius < 1.0) & (radius > rng.uniform(0.35, 0.75))
    if name == "ellipse":
        return (u / 1.0) ** 2 + (v / rng.uniform(0.45, 0.75)) ** 2 < 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) < 0.8
    if name == "diamond":
        return np.abs(u) + np.abs(v) < 1.05
    if name in ("plus", "cross"):
        if name == "cross":
            u, v = (u + v) * 0.7071, (v - u) * 0.7071
        arm = rng.uniform(0.2, 0.32)
        return ((np.abs(u) < arm) & (np.abs(v) < 1.0)) | ((np.abs(v) < arm) & (np.abs(u) < 1.0))
    if name in ("horizontal_bars", "vertical_bars"):
        across = v if name == "horizontal_bars" else u
        inside = np.maximum(np.abs(u), np.abs(v)) < 0.9
        return inside & (np.sin(across * np.pi * rng.uniform(1.8, 2.6)) > 0)
    if name in ("triangle_up", "triangle_down"):
        if name == "triangle_down":
            v = -v
        return (v < 0.7) & (np.abs(u) < (v + 1.0) * 0.62)
    if name == "dots":
        mask = np.zeros_like(u, dtype=bool)
        for angle in rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.1, 4.2]):
            mask |= (u - 0.62 * np.cos(angle)) ** 2 + (v - 0.62 * np.sin(angle)) ** 2 < 0.33 ** 2
        return mask
    raise ValueError(name)


def _difficulty(rng: np.random.Generator) -> float:
    """0 (clean) .. 1 (hard): most samples are easy, a tail is hard."""
    tier = rng.choice(3, p=[0.6, 0.3, 0.1])
    low, high = ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0))[tier]
    return float(rng.uniform(low, high))


def render_shape_image(seed: int, index: int, size: int = 32,
                       num_classes: int = len(SHAPE_CLASSES)) -> tuple[np.ndarray, int, float]:
    """Image [size, size, 3] uint8, class label and difficulty in [0, 1] of sample ``index``."""
    rng = sample_rng(seed, index)
    weights = CLASS_WEIGHTS[:num_classes] / CLASS_WEIGHTS[:num_classes].sum()
    label = int(rng.choice(num_classes, p=weights))
    difficulty = _difficulty(rng)
    x, y = _grid(size)
    scale = rng.uniform(0.55, 0.85) - 0.3 * difficulty * rng.uniform(0.5, 1.0)
    centre = rng.uniform(-0.9 + scale, 0.9 - scale, size=2) if scale < 0.9 else np.zeros(2)
    angle = rng.uniform(-0.35, 0.35)
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((x - centre[0]) * cos + (y - centre[1]) * sin) / scale
    v = (-(x - centre[0]) * sin + (y - centre[1]) * cos) / scale
    mask = _shape_mask(SHAPE_CLASSES[label], u, v, rng)

    background = rng.uniform(0.15, 0.85, size=3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-8
    contrast = 0.75 * (1.0 - 0.8 * difficulty) + 0.05
    foreground = np.clip(background + contrast * direction * rng.choice([-1.0, 1.0]), 0.0, 1.0)
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = background + 0.25 * (x[..., None] * rng.uniform(-0.3, 0.3, size=3))
    image[mask] = foreground
    for _ in range(int(rng.integers(0, 1 + round(4 * difficulty)))):
        _draw_clutter(image, x, y, rng)
    image += rng.normal(0.0, 0.02 + 0.22 * difficulty, size=image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), label, difficulty


def _draw_clutter(image: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """A random line segment of random colour: a distractor that is not the object."""
    start = rng.uniform(-1, 1, size=2)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-8
    along = (x - start[0]) * direction[0] + (y - start[1]) * direction[1]
    across = np.abs(-(x - start[0]) * direction[1] + (y - start[1]) * direction[0])
    image[(across < 0.07) & (along > 0) & (along < rng.uniform(0.4, 1.2))] = rng.uniform(0, 1, size=3)


class SyntheticShapes(Dataset):
    """Shape classification: ``num_samples`` images of ``image_size`` px, drawn from (seed, index).

    ``dataset[i] -> (image [H, W, 3] uint8, label int)``. ``difficulty(i)`` gives the nuisance level
    in [0, 1]; ``labels()`` lists every label (computed, not stored, on demand).
    """

    classes = SHAPE_CLASSES

    def __init__(self, num_samples: int, seed: int = 0, image_size: int = 32,
                 num_classes: int = len(SHAPE_CLASSES), split: str = "train") -> None:
        if num_samples < 0:
            raise ConfigError(f"synthetic dataset size must be non-negative, got {num_samples}")
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise ConfigError(f"num_classes must be between 2 and {len(SHAPE_CLASSES)}, got {num_classes}")
        if image_size < 8:
            raise ConfigError(f"image_size must be at least 8, got {image_size}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.split = split
        self.classes = SHAPE_CLASSES[:num_classes]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample {index} outside synthetic {self.split} set of {self.num_samples}")
        image, label, _ = render_shape_image(self.seed, index, self.image_size, self.num_classes)
        return image, label

    def difficulty(self, index: int) -> float:
        return render_shape_image(self.seed, index, self.image_size, self.num_classes)[2]

    def sample_key(self, index: int) -> str:
        return f"synthetic-{self.split}-{index:07d}"

"""Albumentations pipelines and the conversion of uint8 images to normalised tensors."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch


def classification_augmentation(seed: int, shift: int = 4) -> Callable[[Any], Any]:
    """CIFAR-style augmentation of ``(image, label)``: a random shift of up to ``shift`` pixels with
    reflected borders (the same as reflect-pad + random crop, for any image size) and a horizontal flip.

    Seeded: the same seed gives the same sequence of transforms.
    """
    pipeline = A.Compose([
        A.Affine(translate_px={"x": (-shift, shift), "y": (-shift, shift)},
                 border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.HorizontalFlip(p=0.5),
    ], seed=int(seed) % (2**32))

    def augment(sample: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
        image, label = sample
        return pipeline(image=image)["image"], label

    return augment


def images_to_tensor(images: Sequence[np.ndarray], mean: Sequence[float] = (0.5, 0.5, 0.5),
                     std: Sequence[float] = (0.25, 0.25, 0.25)) -> torch.Tensor:
    """uint8 images [H, W, 3] -> float tensor [B, 3, H, W], normalised per channel."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean_t).div_(std_t)

"""The pose task: a stacked hourglass, per-sample heatmap MSE over stacks, PCKh / PCK / OKS AP."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from lossal_tasks.data import DataSplits
from lossal_tasks.datasets.coco_keypoints import coco_keypoint_splits
from lossal_tasks.datasets.mpii import mpii_splits
from lossal_tasks.datasets.pose_transforms import VISIBLE, pose_augmentation
from lossal_tasks.datasets.synthetic_pose import SyntheticPose
from lossal_tasks.datasets.transforms import images_to_tensor
from lossal_tasks.errors import BadDataError, ConfigError
from lossal_tasks.heads.hourglass import OUTPUT_STRIDE, stacked_hourglass
from lossal_tasks.pose_heatmaps import decode_heatmaps, gaussian_heatmaps
from lossal_tasks.pose_metrics import PoseMetric
from lossal_tasks.registry import DATASETS, TASKS
from lossal_tasks.task import Metric, Task

_MODEL_OPTIONS = ("num_joints", "stacks", "width", "depth", "blocks")


@TASKS.register("pose")
class PoseTask(Task):
    """Human pose estimation with a stacked hourglass; the loss head taps every stack's features.

    Samples are pose dicts (see datasets/pose_transforms.py). ``collate`` gives
    ``(images [B, 3, S, S], targets)`` with targets ``heatmaps`` [B, J, S/4, S/4] (Gaussians of
    ``sigma`` heatmap pixels), ``weights`` [B, J] (1 for labeled, visible joints, else 0),
    ``keypoints`` [B, J, 2], ``visibility`` [B, J], ``head_size`` [B], ``box`` [B, 4], ``area`` [B]
    and ``crop`` [B, 3]. The model returns heatmaps [B, stacks, J, S/4, S/4].

    Args:
        sigma: target Gaussian sigma in heatmap pixels (about 1 at 64 px heatmaps, as usual).
        oks_sigmas: per-joint OKS sigmas; None picks them by joint count (COCO 17, MPII 16).
        augment: whether labeled training samples are augmented (flip, rotate, scale, colour).
    """

    name = "pose"
    feature_layers = ("stack_features",)  # one tap point receiving every stack's features
    loss_weight = 1e-4
    primary_metric = "pck"
    presets = {
        "quick": {
            "model": {"stacks": 2, "width": 48, "depth": 2},
            "data": {"train_size": 5000, "test_size": 400, "image_size": 64},
            "train": {"epochs": 20, "batch_size": 32, "optimizer": "adam", "lr": 2.5e-3, "weight_decay": 0.0,
                      "milestones": [15], "detach_epoch": 12, "eval_batch_size": 100},
            "loop": {"cycles": 4, "initial_size": 400, "budget": 400, "subset_size": 2000},
        },
        "paper": {
            "model": {"stacks": 8, "width": 256, "depth": 4},
            "data": {"train_size": 14679, "test_size": 2729, "image_size": 256},
            "train": {"epochs": 125, "batch_size": 6, "optimizer": "adam", "lr": 2.5e-4, "weight_decay": 0.0,
                      "milestones": [100], "detach_epoch": 75, "eval_batch_size": 32},
            "loop": {"cycles": 10, "initial_size": 1000, "budget": 1000, "subset_size": 5000},
        },
    }

    def __init__(self, sigma: float = 1.0, oks_sigmas: Sequence[float] | None = None, augment: bool = True) -> None:
        if sigma <= 0:
            raise ConfigError(f"pose task option sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        self.oks_sigmas = None if oks_sigmas is None else [float(s) for s in oks_sigmas]
        self.augment = augment
        self.stride = OUTPUT_STRIDE

    def build_model(self, num_joints: int = 16, stacks: int = 8, width: int = 256, depth: int = 4,
                    blocks: int = 1, **options: Any) -> nn.Module:
        if options:
            raise ConfigError(f"unknown pose model options {sorted(options)}; known: {', '.join(_MODEL_OPTIONS)}")
        for option, value in (("num_joints", num_joints), ("stacks", stacks), ("width", width),
                              ("depth", depth), ("blocks", blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if option == "width" else 1):
                raise ConfigError(f"pose model option {option} must be a positive whole number, got {value!r}")
        return stacked_hourglass(num_joints=num_joints, stacks=stacks, width=width, depth=depth, blocks=blocks)

    def collate(self, samples: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = [sample["image"] for sample in samples]
        height, width = images[0].shape[:2]
        if any(image.shape[:2] != (height, width) for image in images):
            raise BadDataError(f"pose batch mixes image sizes {sorted({i.shape[:2] for i in images})}; "
                               "crop every sample to one input size")
        if height % self.stride or width % self.stride:
            raise ConfigError(f"pose image_size must be a multiple of {self.stride}, got {height}x{width}")
        keypoints = torch.from_numpy(np.stack([np.asarray(s["keypoints"], dtype=np.float32) for s in samples]))
        visibility = torch.from_numpy(np.stack([np.asarray(s["visibility"], dtype=np.uint8) for s in samples]))
        targets = {
            "heatmaps": gaussian_heatmaps(keypoints, height // self.stride, width // self.stride, self.stride,
                                          self.sigma),
            "weights": (visibility >= VISIBLE).float(),
            "keypoints": keypoints,
            "visibility": visibility.long(),
            "head_size": torch.tensor([float(s["head_size"]) for s in samples], dtype=torch.float32),
            "box": torch.from_numpy(np.stack([np.asarray(s["box"], dtype=np.float32) for s in samples])),
            "area": torch.tensor([float(s["area"]) for s in samples], dtype=torch.float32),
            "crop": torch.from_numpy(np.stack([np.asarray(s.get("crop", (np.nan,) * 3), dtype=np.float32)
                                               for s in samples])),
        }
        return images_to_tensor(images), targets

    def per_sample_loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Heatmap MSE per sample [B]: mean over joints and pixels, masked joints contributing zero,
        summed over the stacks (intermediate supervision). ``outputs``: [B, stacks, J, h, w]."""
        heatmaps, weights = targets["heatmaps"], targets["weights"]
        if outputs.shape[0] != heatmaps.shape[0] or outputs.shape[2:] != heatmaps.shape[1:]:
            raise ValueError(f"heatmaps {tuple(outputs.shape)} do not match targets {tuple(heatmaps.shape)}; "
                             "is the model built for this joint count and input size?")
        squared = (outputs.float() - heatmaps.unsqueeze(1)) ** 2  # [B, S, J, h, w]
        per_joint = squared.mean(dim=(3, 4))  # [B, S, J]
        return (per_joint * weights.unsqueeze(1)).sum(dim=(1, 2)) / heatmaps.shape[1]

    def predict(self, outputs: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """Per sample ``{"keypoints": [J, 2] input pixels, "scores": [J]}`` from the last stack."""
        keypoints, scores = decode_heatmaps(outputs[:, -1], self.stride)
        keypoints, scores = keypoints.cpu().numpy(), scores.cpu().numpy()
        return [{"keypoints": k, "scores": s} for k, s in zip(keypoints, scores)]

    def metric(self) -> Metric:
        return PoseMetric(self.oks_sigmas)

    def uncertainty(self, outputs: torch.Tensor) -> torch.Tensor:
        """1 - mean peak height of the last stack's heatmaps [B] (low peaks: unsure)."""
        peaks = outputs[:, -1].float().flatten(2).amax(dim=2).clamp(0.0, 1.0)
        return 1.0 - peaks.mean(dim=1)

    def augmentation(self, seed: int) -> Callable[[Any], Any] | None:
        return pose_augmentation(seed) if self.augment else None

    def model_options_for(self, dataset: Any) -> dict[str, Any]:
        joints = getattr(dataset, "num_joints", None)
        return {"num_joints": int(joints)} if joints is not None else {}


@DATASETS.register("pose/synthetic")
def synthetic_pose(root: str | None = None, seed: int = 0, download: bool = False, train_size: int = 5000,
                   test_size: int = 400, image_size: int = 64) -> DataSplits:
    """The embedded default: generated figures with the 16 MPII joints (datasets/synthetic_pose.py)."""
    return DataSplits(SyntheticPose(train_size, seed=seed, image_size=image_size, split="train"),
                      SyntheticPose(test_size, seed=seed + 1_000_003, image_size=image_size, split="test"))


def _no_download(name: str, download: bool) -> None:
    if download:
        raise ConfigError(f"--download: {name} cannot be downloaded automatically (its licence needs a "
                          "sign-up); fetch it by hand and pass --root")


@DATASETS.register("pose/mpii")
def mpii(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 256,
         **ignored: Any) -> DataSplits:
    """MPII in the common JSON form: ``root/annot/{train,valid}.json`` and ``root/images/``."""
    _no_download("MPII", download)
    if root is None:
        raise ConfigError("--root is required for the mpii dataset (the folder holding annot/ and images/)")
    return DataSplits(*mpii_splits(root, image_size=image_size))


@DATASETS.register("pose/coco")
def coco(root: str | None = None, seed: int = 0, download: bool = False, image_size: int = 256,
         **ignored: Any) -> DataSplits:
    """COCO keypoints: ``root/annotations/person_keypoints_{train,val}2017.json``, ``root/{train,val}2017/``;
    one sample per person box."""
    _no_download("COCO", download)
    if root is None:
        raise ConfigError("--root is required for the coco dataset (the folder holding annotations/)")
    return DataSplits(*coco_keypoint_splits(root, image_size=image_size))

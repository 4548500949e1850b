"""A procedurally generated pose set: an articulated figure with the 16 MPII joints, in MPII order.

Sample i of seed s is drawn from (s, i) alone, so a pool of any size costs no memory. Each figure
has its own pose (torso lean, body turn, arm and leg angles, bends), scale and position; the parts
facing away from the camera are drawn behind the torso, so joints can be hidden by the body
(visibility 1), by an occluder drawn over it (1), or fall outside the image or go unlabeled (0).
The person's right limbs are lighter and the left limbs darker than the torso, so left and right
can be told apart, and background clutter (bars, blobs, limb-like strokes) and noise vary from
sample to sample, so some samples are much harder than others.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.datasets.pose_transforms import (MPII_FLIP_INDEX, MPII_JOINTS, NOT_LABELED, OCCLUDED,
                                                   VISIBLE, inside)
from lossal_tasks.datasets.synthetic import sample_rng
from lossal_tasks.errors import ConfigError

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing
_ONE = 1 << _SHIFT

# Parts: (name, joint a, joint b, side) where side is "r", "l" or "" (centre).
_LIMBS = (("r_shin", 0, 1, "r"), ("r_thigh", 1, 2, "r"), ("l_thigh", 3, 4, "l"), ("l_shin", 4, 5, "l"),
          ("r_forearm", 10, 11, "r"), ("r_upper_arm", 11, 12, "r"), ("l_upper_arm", 13, 14, "l"),
          ("l_forearm", 14, 15, "l"))
_TORSO, _NECK, _HEAD = 20, 21, 22
_OCCLUDER = 30
_BACKGROUND = 0
# The parts each joint belongs to (a joint covered only by its own parts is visible).
_JOINT_PARTS = {
    0: {1}, 1: {1, 2}, 2: {2, _TORSO}, 3: {3, _TORSO}, 4: {3, 4}, 5: {4},
    6: {_TORSO, 2, 3}, 7: {_TORSO, _NECK, 6, 7}, 8: {_NECK, _HEAD, _TORSO}, 9: {_HEAD},
    10: {5}, 11: {5, 6}, 12: {6, _TORSO}, 13: {7, _TORSO}, 14: {7, 8}, 15: {8},
}  # limb part id = position in _LIMBS + 1


def _difficulty(rng: np.random.Generator) -> float:
    tier = rng.choice(3, p=[0.5, 0.35, 0.15])
    low, high = ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0))[tier]
    return float(rng.uniform(low, high))


def _unit(angle: float) -> np.ndarray:
    """Direction of ``angle`` measured from straight down (image y grows downward)."""
    return np.array([math.sin(angle), math.cos(angle)])


def _skeleton(rng: np.random.Generator, height: float, pelvis: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Joint positions [16, 2] of a figure ``height`` px tall, the body turn (yaw) and the lean."""
    joints = np.zeros((16, 2))
    lean = rng.normal(0.0, 0.25) if rng.random() > 0.1 else rng.uniform(-math.pi, math.pi)
    yaw = rng.uniform(0.0, 2 * math.pi)
    up = -_unit(lean)  # pelvis -> thorax
    across = np.array([-up[1], up[0]])  # image-right when upright
    facing = math.cos(yaw)  # > 0: the figure faces the camera, its right side on the image's left
    joints[6] = pelvis
    joints[7] = pelvis + up * 0.30 * height
    joints[8] = joints[7] + up * 0.06 * height
    head_angle = lean + math.pi + rng.normal(0.0, 0.25)
    joints[9] = joints[8] + _unit(head_angle) * 0.13 * height
    shoulder, hip = 0.10 * height * facing, 0.065 * height * facing
    joints[12], joints[13] = joints[7] - across * shoulder, joints[7] + across * shoulder
    joints[2], joints[3] = pelvis - across * hip, pelvis + across * hip
    for root, (upper, lower), (mid, end), spread, bend in (
            (12, (0.16, 0.15), (11, 10), 2.6, 2.6), (13, (0.16, 0.15), (14, 15), 2.6, 2.6),
            (2, (0.24, 0.23), (1, 0), 1.0, 2.0), (3, (0.24, 0.23), (4, 5), 1.0, 2.0)):
        first = lean + rng.uniform(-spread, spread) * (1.0 if rng.random() < 0.7 else 0.5)
        second = first + rng.uniform(-bend, bend) * rng.uniform(0.2, 1.0)
        joints[mid] = joints[root] + _unit(first) * upper * height
        joints[end] = joints[mid] + _unit(second) * lower * height
    return joints, yaw, lean


def _fixed(point: np.ndarray) -> tuple[int, int]:
    """Continuous coordinates -> cv2 fixed-point pixel-centre coordinates."""
    return int(round((point[0] - 0.5) * _ONE)), int(round((point[1] - 0.5) * _ONE))


def _stroke(canvas: np.ndarray, owner: np.ndarray, a: np.ndarray, b: np.ndarray, thickness: float,
            colour: tuple[float, ...], part: int) -> None:
    width = max(1, int(round(thickness)))
    cv2.line(canvas, _fixed(a), _fixed(b), colour, width, cv2.LINE_AA, _SHIFT)
    cv2.line(owner, _fixed(a), _fixed(b), part, width, cv2.LINE_8, _SHIFT)


def _background(rng: np.random.Generator, size: int, difficulty: float) -> np.ndarray:
    base = rng.uniform(0.1, 0.9, size=3)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    slope = rng.uniform(-0.3, 0.3, size=(2, 3)).astype(np.float32)
    image = (base.astype(np.float32)[None, None, :] + ramp[None, :, None] * slope[0]
             + ramp[:, None, None] * slope[1])
    for _ in range(int(rng.integers(1, 3 + round(8 * difficulty)))):
        colour = tuple(float(c) for c in rng.uniform(0, 1, size=3))
        kind = rng.integers(3)
        a, b = rng.uniform(-0.1, 1.1, size=(2, 2)) * size
        if kind == 0:
            cv2.rectangle(image, _fixed(a), _fixed(b), colour, -1, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            radius = int(rng.uniform(0.03, 0.15) * size * _ONE)
            cv2.circle(image, _fixed(a), radius, colour, -1, cv2.LINE_AA, _SHIFT)
        else:  # limb-like stroke: a distractor
            cv2.line(image, _fixed(a), _fixed(b), colour, max(1, int(rng.uniform(0.02, 0.07) * size)),
                     cv2.LINE_AA, _SHIFT)
    return image


def render_pose_sample(seed: int, index: int, size: int = 64) -> tuple[dict, float]:
    """Sample ``index`` of dataset ``seed`` as a pose sample dict (see pose_transforms) and its
    difficulty in [0, 1]. The image is uint8 [size, size, 3]; 16 MPII joints in MPII order."""
    rng = sample_rng(seed, index)
    difficulty = _difficulty(rng)
    height = size * rng.uniform(0.55, 0.95) * (1.0 - 0.35 * difficulty * rng.random())
    margin = 0.15 if rng.random() > 0.15 else -0.05  # some figures run out of the frame
    pelvis = rng.uniform(margin, 1 - margin, size=2) * size
    if margin > 0:
        pelvis[1] = np.clip(pelvis[1], size * 0.25, size * 0.8)
    joints, yaw, _ = _skeleton(rng, height, pelvis)
    # Pull the figure into the frame unless it was meant to be cut off.
    if margin > 0:
        low, high = joints.min(axis=0), joints.max(axis=0)
        shift = np.clip(size * 0.05 - low, 0, None) - np.clip(high - size * 0.95, 0, None)
        joints += shift

    image = _background(rng, size, difficulty)
    owner = np.full((size, size), _BACKGROUND, dtype=np.uint8)
    torso_colour = rng.uniform(0.15, 0.85, size=3)
    lighter = tuple(float(c) for c in np.clip(torso_colour + 0.35, 0, 1))
    darker = tuple(float(c) for c in np.clip(torso_colour - 0.35, 0, 1))
    torso_rgb = tuple(float(c) for c in torso_colour)
    skin = tuple(float(c) for c in rng.uniform(0.3, 1.0, size=3))
    limb_width = max(1.0, 0.055 * height)
    near_right = math.sin(yaw) > 0  # which side is nearer the camera (drawn over the torso)

    def draw_side(side: str) -> None:
        for part, (_, a, b, limb_side) in enumerate(_LIMBS, start=1):
            if limb_side == side:
                width = limb_width * (1.25 if a < 6 else 1.0)
                _stroke(image, owner, joints[a], joints[b], width, lighter if side == "r" else darker, part)

    draw_side("l" if near_right else "r")
    torso = np.array([joints[12], joints[13], joints[3], joints[2]])
    polygon = np.array([_fixed(p) for p in torso], dtype=np.int32)
    cv2.fillConvexPoly(image, polygon, torso_rgb, cv2.LINE_AA, _SHIFT)
    cv2.fillConvexPoly(owner, polygon, _TORSO, cv2.LINE_8, _SHIFT)
    _stroke(image, owner, joints[7], joints[6], max(limb_width * 1.6, 0.09 * height), torso_rgb, _TORSO)
    _stroke(image, owner, joints[7], joints[8], limb_width, skin, _NECK)
    head_centre = (joints[8] + joints[9]) / 2.0
    head_radius = max(1.0, 0.5 * float(np.linalg.norm(joints[9] - joints[8])))
    cv2.circle(image, _fixed(head_centre), int(head_radius * _ONE), skin, -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(owner, _fixed(head_centre), int(head_radius * _ONE), _HEAD, -1, cv2.LINE_8, _SHIFT)
    if math.cos(yaw) > 0.3:  # a face: the figure looks at the camera
        cv2.circle(image, _fixed(head_centre), max(1, int(head_radius * 0.35 * _ONE)), darker, -1,
                   cv2.LINE_AA, _SHIFT)
    draw_side("r" if near_right else "l")
    area = float(np.count_nonzero(owner))

    for _ in range(int(rng.random() < 0.25 + 0.4 * difficulty) * int(rng.integers(1, 3))):
        centre = joints[rng.integers(16)] + rng.normal(0, 0.1 * height, size=2)
        half = rng.uniform(0.06, 0.18, size=2) * height
        colour = tuple(float(c) for c in rng.uniform(0, 1, size=3))
        corners = (_fixed(centre - half), _fixed(centre + half))
        cv2.rectangle(image, *corners, colour, -1, cv2.LINE_AA, _SHIFT)
        cv2.rectangle(owner, *corners, _OCCLUDER, -1, cv2.LINE_8, _SHIFT)

    contrast = 1.0 - 0.6 * difficulty * rng.random()
    image = (image - image.mean()) * contrast + image.mean()
    image += rng.normal(0.0, 0.01 + 0.12 * difficulty, size=image.shape).astype(np.float32)
    pixels = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)

    keypoints = joints.astype(np.float32)
    visibility = np.full(16, VISIBLE, dtype=np.uint8)
    in_frame = inside(keypoints, size, size)
    cells = np.clip(np.floor(keypoints).astype(int), 0, size - 1)
    for joint in range(16):
        top = int(owner[cells[joint, 1], cells[joint, 0]])
        if top != _BACKGROUND and top not in _JOINT_PARTS[joint]:
            visibility[joint] = OCCLUDED
    visibility[~in_frame] = NOT_LABELED
    visibility[rng.random(16) < 0.02] = NOT_LABELED  # the annotator skipped it
    head_side = 1.2 * 2 * head_radius
    low = np.clip(joints.min(axis=0) - limb_width, 0, size)
    high = np.clip(joints.max(axis=0) + limb_width, 0, size)
    sample = {"image": pixels, "keypoints": keypoints, "visibility": visibility,
              "head_size": float(0.6 * math.sqrt(2.0) * head_side),
              "box": np.concatenate([low, high]).astype(np.float32), "area": max(area, 1.0),
              "crop": np.array([0.0, 0.0, 1.0], dtype=np.float32), "flip_index": MPII_FLIP_INDEX}
    return sample, difficulty


class SyntheticPose(Dataset):
    """``num_samples`` generated figures of ``image_size`` px, drawn from (seed, index).

    ``dataset[i]`` is a pose sample dict (see datasets/pose_transforms.py) with the 16 MPII joints
    in MPII order and a head box (so PCKh works). ``difficulty(i)`` gives its nuisance level.
    """

    joint_names = MPII_JOINTS
    flip_index = MPII_FLIP_INDEX

    def __init__(self, num_samples: int, seed: int = 0, image_size: int = 64, split: str = "train") -> None:
        if num_samples < 0:
            raise ConfigError(f"synthetic pose dataset size must be non-negative, got {num_samples}")
        if image_size < 16:
            raise ConfigError(f"image_size must be at least 16, got {image_size}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.split = split

    @property
    def num_joints(self) -> int:
        return len(MPII_JOINTS)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample {index} outside synthetic pose {self.split} set of {self.num_samples}")
        return render_pose_sample(self.seed, index, self.image_size)[0]

    def difficulty(self, index: int) -> float:
        return render_pose_sample(self.seed, index, self.image_size)[1]

    def sample_key(self, index: int) -> str:
        return f"synthetic-pose-{self.split}-{index:07d}"

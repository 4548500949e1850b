"""Pose augmentation: seeded, keeps the joint count and order, swaps left/right on a mirror,
recomputes visibility and counts joints pushed out of the input."""
import numpy as np
import pytest

import lossal_tasks as lt
from lossal_tasks.datasets.pose_transforms import (COCO_FLIP_INDEX, MPII_FLIP_INDEX, MPII_JOINTS, PoseAugmentation,
                                                   crop_person, default_flip_index, recompute_visibility)
from lossal_tasks.errors import ConfigError


def _sample(size=32, joints=16):
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(6, size - 6, size=(joints, 2)).astype(np.float32)
    return {"image": rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8), "keypoints": keypoints,
            "visibility": np.full(joints, 2, dtype=np.uint8), "head_size": 4.0,
            "box": np.array([2, 2, size - 2, size - 2], dtype=np.float32), "area": 400.0,
            "crop": np.array([0, 0, 1], dtype=np.float32)}


def test_flipped_sample_swaps_left_and_right_and_keeps_the_joint_count():
    sample = _sample()
    flip = PoseAugmentation(seed=0, flip=1.0, geometric=0.0, color=0.0)
    out = flip(sample)
    assert out["keypoints"].shape == (16, 2) and out["visibility"].shape == (16,)
    assert flip.flipped == 1 and flip.dropped == 0
    right_wrist, left_wrist = MPII_JOINTS.index("r_wrist"), MPII_JOINTS.index("l_wrist")
    # The new right wrist is the mirror image of the old left wrist, and vice versa.
    assert out["keypoints"][right_wrist] == pytest.approx([32 - sample["keypoints"][left_wrist][0],
                                                           sample["keypoints"][left_wrist][1]], abs=1e-3)
    assert out["keypoints"][left_wrist][0] == pytest.approx(32 - sample["keypoints"][right_wrist][0], abs=1e-3)
    pelvis = MPII_JOINTS.index("pelvis")  # a centre joint keeps its index
    assert out["keypoints"][pelvis][0] == pytest.approx(32 - sample["keypoints"][pelvis][0], abs=1e-3)
    assert np.array_equal(out["image"], sample["image"][:, ::-1])
    assert out["head_size"] == pytest.approx(4.0) and np.isnan(out["crop"]).all()


def test_visibility_is_swapped_with_the_joints():
    sample = _sample()
    sample["visibility"][MPII_JOINTS.index("r_ankle")] = 1
    out = PoseAugmentation(seed=0, flip=1.0, geometric=0.0, color=0.0)(sample)
    assert out["visibility"][MPII_JOINTS.index("l_ankle")] == 1
    assert out["visibility"][MPII_JOINTS.index("r_ankle")] == 2


def test_augmentation_is_seeded_and_counts_joints_pushed_outside():
    sample = _sample()
    sample["keypoints"][0] = [0.5, 0.5]  # in a corner: some transforms push it out
    first, again = PoseAugmentation(seed=3, rotate=40, shift=0.3), PoseAugmentation(seed=3, rotate=40, shift=0.3)
    outputs = [first(sample) for _ in range(12)]
    repeats = [again(sample) for _ in range(12)]
    for a, b in zip(outputs, repeats):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
    dropped = sum(int(((s["visibility"] == 0) & (sample["visibility"] > 0)).sum()) for s in outputs)
    assert first.dropped == dropped > 0 and first.samples == 12
    for out in outputs:  # every joint outside the input is marked unlabeled, every joint kept
        outside = ((out["keypoints"] < 0) | (out["keypoints"] >= 32)).any(axis=1)
        assert len(out["keypoints"]) == 16 and (out["visibility"][outside] == 0).all()


def test_task_augmentation_runs_on_synthetic_samples_and_collates():
    task = lt.TASKS.build("pose")
    data = lt.build_datasets("pose", "synthetic", train_size=6, test_size=1, image_size=32)
    augment = task.augmentation(1)
    samples = [augment(data.train[i]) for i in range(6)]
    images, targets = task.collate(samples)
    assert images.shape == (6, 3, 32, 32) and targets["heatmaps"].shape == (6, 16, 8, 8)


def test_recompute_visibility_and_crop():
    keypoints = np.array([[1.0, 1.0], [-0.1, 3.0], [5.0, 8.0]], dtype=np.float32)
    visibility, dropped = recompute_visibility(keypoints, np.array([2, 2, 0], dtype=np.uint8), 8, 8)
    assert visibility.tolist() == [2, 0, 0] and dropped == 1
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[10, 30] = 255  # pixel (x=30, y=10), centre (30.5, 10.5)
    crop, moved, mapping = crop_person(image, np.array([[30.5, 10.5]]), center=(30.5, 10.5), side=20, size=40)
    assert moved[0] == pytest.approx([20.0, 20.0])
    assert np.unravel_index(crop[..., 0].argmax(), crop.shape[:2]) in ((19, 19), (19, 20), (20, 19), (20, 20))
    assert moved[0] * mapping[2] + mapping[:2] == pytest.approx([30.5, 10.5])


def test_flip_index_defaults_by_joint_count():
    assert default_flip_index(16) is MPII_FLIP_INDEX and default_flip_index(17) is COCO_FLIP_INDEX
    assert sorted(MPII_FLIP_INDEX[MPII_FLIP_INDEX]) == list(range(16))
    with pytest.raises(ConfigError, match="flip_index"):
        default_flip_index(5)

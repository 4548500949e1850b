"""PCKh, box PCK and COCO keypoint AP (pycocotools) on hand-made cases."""
import math

import numpy as np
import pytest
import torch

import lossal_tasks as lt
from lossal_tasks.pose_metrics import COCO_SIGMAS, coco_keypoint_ap, oks_sigmas

J = 16


def _targets(keypoints, visibility, head_size, box=(0.0, 0.0, 40.0, 80.0), area=1000.0):
    count = len(keypoints)
    return {"keypoints": torch.as_tensor(np.asarray(keypoints), dtype=torch.float32),
            "visibility": torch.as_tensor(np.asarray(visibility)),
            "head_size": torch.full((count,), float(head_size)),
            "box": torch.tensor([box] * count, dtype=torch.float32), "area": torch.full((count,), area)}


def _predictions(keypoints):
    return [{"keypoints": np.asarray(k, dtype=np.float32), "scores": np.ones(len(k))} for k in keypoints]


def _compute(predicted, truth, visibility, head_size=10.0, **extra):
    metric = lt.TASKS.build("pose").metric()
    metric.update(_predictions(predicted), _targets(truth, visibility, head_size, **extra))
    return metric.compute()


def test_pckh_all_within_threshold_is_one():
    truth = np.random.default_rng(0).uniform(10, 50, size=(2, J, 2))
    moved = truth + np.array([4.9, 0.0])  # threshold: 0.5 * head size 10 = 5 px
    result = _compute(moved, truth, np.full((2, J), 2))
    assert result["pckh"] == 1.0 and result["pck"] == 1.0


def test_pckh_none_within_threshold_is_zero():
    truth = np.random.default_rng(1).uniform(10, 50, size=(2, J, 2))
    result = _compute(truth + np.array([0.0, 5.1]), truth, np.full((2, J), 2))
    assert result["pckh"] == 0.0


def test_pckh_counts_visible_joints_only():
    truth = np.random.default_rng(2).uniform(10, 50, size=(1, J, 2))
    predicted = truth.copy()
    predicted[0, :4] += 30.0  # wrong, but these joints are not visible (unlabeled or occluded)
    predicted[0, 4] += 30.0  # wrong and visible: 1 miss among 12 counted joints
    visibility = np.full((1, J), 2)
    visibility[0, :2], visibility[0, 2:4] = 0, 1
    assert _compute(predicted, truth, visibility)["pckh"] == pytest.approx(11 / 12)


def test_pck_falls_back_to_the_box_without_a_head_box():
    truth = np.random.default_rng(3).uniform(10, 50, size=(1, J, 2))
    # Box 40 x 80: PCK@0.2 threshold = 0.2 * 80 = 16 px.
    result = _compute(truth + np.array([15.0, 0.0]), truth, np.full((1, J), 2), head_size=float("nan"))
    assert math.isnan(result["pckh"]) and result["pck"] == 1.0 and result["pck_bbox"] == 1.0
    result = _compute(truth + np.array([17.0, 0.0]), truth, np.full((1, J), 2), head_size=float("nan"))
    assert result["pck"] == 0.0


def test_oks_ap_of_a_perfect_prediction_is_one():
    rng = np.random.default_rng(4)
    for joints in (16, 17):
        truth = rng.uniform(5, 60, size=(6, joints, 2))
        visibility = rng.integers(0, 3, size=(6, joints))
        visibility[:, 0] = 2
        ap, ap50 = coco_keypoint_ap(truth, np.ones((6, joints)), truth, visibility, np.full(6, 900.0),
                                    np.tile([0.0, 0.0, 64.0, 64.0], (6, 1)), oks_sigmas(joints))
        assert ap == pytest.approx(1.0) and ap50 == pytest.approx(1.0)


def test_oks_ap_drops_for_a_bad_prediction_and_sigmas_follow_the_joint_count(capsys):
    rng = np.random.default_rng(5)
    truth = rng.uniform(5, 60, size=(4, 17, 2))
    visibility = np.full((4, 17), 2)
    ap, _ = coco_keypoint_ap(truth + 20.0, np.ones((4, 17)), truth, visibility, np.full(4, 900.0),
                             np.tile([0.0, 0.0, 64.0, 64.0], (4, 1)), COCO_SIGMAS)
    assert ap < 0.2
    assert len(oks_sigmas(16)) == 16 and np.array_equal(oks_sigmas(17), COCO_SIGMAS)
    assert len(oks_sigmas(5)) == 5
    assert capsys.readouterr().out == ""  # pycocotools' printing is kept out of stdout

"""Pose heatmap targets, their decoding, and the masked per-sample loss."""
import numpy as np
import torch

import lossal_tasks as lt
from lossal_tasks.pose_heatmaps import decode_heatmaps, gaussian_heatmaps


def test_heatmap_target_peaks_at_the_joint():
    keypoints = torch.tensor([[[10.0, 21.0], [33.3, 5.9], [63.0, 62.0]]])
    heatmaps = gaussian_heatmaps(keypoints, 16, 16, stride=4, sigma=1.0)
    assert heatmaps.shape == (1, 3, 16, 16)
    for joint, (x, y) in enumerate(keypoints[0].tolist()):
        row, column = divmod(int(heatmaps[0, joint].argmax()), 16)
        assert (column, row) == (int(x // 4), int(y // 4))  # the heatmap pixel holding the joint
        assert heatmaps[0, joint].max() > 0.85 and heatmaps[0, joint].min() >= 0


def test_decoded_keypoint_of_a_perfect_heatmap_is_within_a_quarter_pixel():
    generator = torch.Generator().manual_seed(0)
    keypoints = torch.rand(8, 16, 2, generator=generator) * 64
    decoded, confidence = decode_heatmaps(gaussian_heatmaps(keypoints, 16, 16, stride=4, sigma=1.0), stride=4)
    assert decoded.shape == (8, 16, 2) and confidence.shape == (8, 16)
    assert (decoded - keypoints).norm(dim=2).max() < 0.25  # input pixels, borders included
    # A small sigma at a wider stride too.
    decoded, _ = decode_heatmaps(gaussian_heatmaps(keypoints, 8, 8, stride=8, sigma=0.8), stride=8)
    assert (decoded - keypoints).norm(dim=2).max() < 0.25


def test_decoding_noisy_or_flat_heatmaps_stays_inside_the_peak_pixel():
    heatmaps = torch.zeros(1, 2, 16, 16)
    heatmaps[0, 0, 5, 7] = 1.0  # a single spike: no parabola to fit
    heatmaps[0, 1] = -0.3  # flat and negative: argmax is the first pixel
    decoded, confidence = decode_heatmaps(heatmaps, stride=4)
    assert torch.allclose(decoded[0, 0], torch.tensor([7.5 * 4, 5.5 * 4]), atol=1.0)
    assert torch.isfinite(decoded).all() and confidence[0, 1] == -0.3


def _batch(task, seed=0, count=3):
    data = lt.build_datasets("pose", "synthetic", seed=seed, train_size=count, test_size=1, image_size=32)
    return task.collate([data.train[i] for i in range(count)])


def test_per_sample_loss_ignores_masked_joints():
    task = lt.TASKS.build("pose")
    _, targets = _batch(task)
    targets["weights"][:] = 1.0
    targets["weights"][0, 3] = 0.0
    outputs = torch.rand(3, 2, 16, 8, 8)
    loss = task.per_sample_loss(outputs, targets)
    assert loss.shape == (3,)
    changed = outputs.clone()
    changed[0, :, 3] += 5.0  # a masked joint of sample 0
    assert torch.equal(task.per_sample_loss(changed, targets), loss)
    changed[0, :, 4] += 5.0  # an unmasked joint
    after = task.per_sample_loss(changed, targets)
    assert after[0] > loss[0] and torch.equal(after[1:], loss[1:])


def test_per_sample_loss_sums_stacks_and_is_zero_for_perfect_heatmaps():
    task = lt.TASKS.build("pose")
    _, targets = _batch(task)
    perfect = targets["heatmaps"].unsqueeze(1).repeat(1, 3, 1, 1, 1)
    assert torch.allclose(task.per_sample_loss(perfect, targets), torch.zeros(3))
    one_stack_off = perfect.clone()
    one_stack_off[:, 1] += 0.5
    weights = targets["weights"]
    expected = 0.25 * weights.sum(dim=1) / weights.shape[1]
    assert torch.allclose(task.per_sample_loss(one_stack_off, targets), expected)


def test_weights_mask_unlabeled_and_occluded_joints():
    task = lt.TASKS.build("pose")
    data = lt.build_datasets("pose", "synthetic", train_size=40, test_size=1, image_size=32)
    samples = [data.train[i] for i in range(40)]
    _, targets = task.collate(samples)
    visibility = np.stack([s["visibility"] for s in samples])
    assert {0, 1, 2} <= set(np.unique(visibility).tolist())
    assert torch.equal(targets["weights"], torch.from_numpy((visibility == 2).astype(np.float32)))

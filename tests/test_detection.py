"""The detection task: model, anchors and matching, per-image loss, decoding, metrics, augmentation."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

import lossal_tasks as lt
from lossal_tasks.datasets.detection_transforms import DetectionAugmentation, repair_boxes, BoxRepairs
from lossal_tasks.datasets.synthetic_detection import SyntheticDetection
from lossal_tasks.detection_loss import BOX_CODER_WEIGHTS, MultiboxLoss, decode_detections
from lossal_tasks.detection_metrics import DetectionMetric, voc07_ap
from lossal_tasks.heads.ssd import QUICK_SCALES, ssd_quick

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task():
    return lt.TASKS.build("detection")


@pytest.fixture(scope="module")
def tiny_data():
    return lt.build_datasets("detection", "synthetic", seed=1, train_size=64, test_size=16, image_size=64)


def hand_outputs(anchors, logits, regression=None):
    """Outputs as the model returns them, for a batch of hand-made logits [B, A, C+1]."""
    batch, count, _ = logits.shape
    regression = torch.zeros(batch, count, 4) if regression is None else regression
    return {"cls_logits": logits, "bbox_regression": regression, "anchors": anchors, "image_size": (64, 64)}


def target(boxes=(), labels=(), difficult=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor(labels, dtype=torch.long)
    difficult = torch.zeros(len(labels), dtype=torch.bool) if difficult is None else torch.tensor(difficult)
    return {"boxes": boxes, "labels": labels, "difficult": difficult}


# Four hand-made anchors: two far apart, one overlapping the first by a little.
ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [5.0, 0.0, 15.0, 10.0],
                        [40.0, 40.0, 60.0, 60.0]])


# ----------------------------------------------------------------------------- data


def test_synthetic_detection_is_a_pure_function_of_seed_and_index():
    big, again = SyntheticDetection(10**9, seed=4), SyntheticDetection(10**9, seed=4)
    image, boxes = big[10**9 - 1]
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again[10**9 - 1][0])
    assert np.array_equal(boxes["boxes"], again[10**9 - 1][1]["boxes"])
    with pytest.raises(IndexError):
        big[10**9]


def test_synthetic_detection_has_many_objects_sizes_occlusion_and_empty_images():
    data = SyntheticDetection(300, seed=0)
    counts, sides, labels, occluded = [], [], set(), 0
    for i in range(len(data)):
        image, t = data[i]
        boxes = t["boxes"]
        counts.append(len(boxes))
        assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= 128) & (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])).all()
        sides += np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist()
        labels |= set(t["labels"].tolist())
        if i < 100:
            visible = data.visibility(i)
            assert (visible >= 0.5).all()
            occluded += int((visible < 0.95).sum())
    counts = np.array(counts)
    assert (counts == 0).any() and (counts >= 4).mean() > 0.2
    assert labels == set(range(6))
    assert min(sides) < 10 and max(sides) > 50
    assert occluded >= 5
    assert data.sample_key(3) == "synthetic-train-0000003.png"


def test_collate_gives_images_and_target_dicts(task, tiny_data):
    images, targets = task.collate([tiny_data.train[i] for i in range(4)])
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert len(targets) == 4 and targets[0]["boxes"].dtype == torch.float32
    assert targets[0]["labels"].dtype == torch.long and targets[0]["difficult"].dtype == torch.bool
    with pytest.raises(lt.BadDataError, match="differ in size"):
        task.collate([tiny_data.train[0], (np.zeros((32, 32, 3), np.uint8), tiny_data.train[1][1])])


# ----------------------------------------------------------------------------- model and anchors


def test_quick_model_returns_raw_outputs_and_taps_every_source_map(task, tiny_data):
    model = lt.build_loss_model(task, {"width": 4, **task.model_options_for(tiny_data.train)})
    images, _ = task.collate([tiny_data.train[i] for i in range(3)])
    for mode in (model.train, model.eval):
        mode()
        prediction = model(images)
        out = prediction.outputs
        anchors = out["anchors"].shape[0]
        assert out["cls_logits"].shape == (3, anchors, 7) and out["bbox_regression"].shape == (3, anchors, 4)
        assert prediction.loss.shape == (3,)
    assert model.in_channels == (16, 24, 16, 16, 16)        # the five source maps of width 4
    # 64 px input: maps 8, 4, 2, 1, 1 with 4, 6, 6, 4, 4 boxes per cell
    assert anchors == 8 * 8 * 4 + 4 * 4 * 6 + 2 * 2 * 6 + 1 * 4 + 1 * 4


def test_default_boxes_on_a_hand_made_grid():
    model = ssd_quick(num_classes=3, width=2)
    images = torch.zeros(1, 3, 128, 128)
    features = [torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4),
                torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    anchors = model.anchors(images, features)
    assert anchors.shape == (16 * 16 * 4 + 8 * 8 * 6 + 4 * 4 * 6 + 2 * 2 * 4 + 1 * 4, 4)
    side = QUICK_SCALES[0] * 128
    # first cell of the 16x16 map: centre (4, 4), first box square of side scale_0 * 128
    assert torch.allclose(anchors[0], torch.tensor([4 - side / 2, 4 - side / 2, 4 + side / 2, 4 + side / 2]))
    # the last box: the single 1x1 cell, centred on the image
    centre = (anchors[-1, :2] + anchors[-1, 2:]) / 2
    assert torch.allclose(centre, torch.tensor([64.0, 64.0]))


def test_matching_on_a_hand_made_case():
    loss = MultiboxLoss()
    targets = [target([[0, 0, 10, 10], [22, 22, 40, 40]], [2, 0]),    # exact match and IoU 0.81
               target([[40, 40, 47, 47]], [1]),                       # IoU 0.12 with anchor 3 only
               target()]                                               # no objects
    labels, matched = loss.match(ANCHORS, targets)
    # image 0: anchors 0 and 1 match; anchor 2 has IoU 1/3 with box 0: background
    assert labels[0].tolist() == [3, 1, 0, 0]
    assert torch.equal(matched[0, 1], torch.tensor([22.0, 22, 40, 40]))
    # image 1: below the threshold, yet every box gets its best anchor (SSD matching)
    assert labels[1].tolist() == [0, 0, 0, 2]
    assert labels[2].tolist() == [0, 0, 0, 0]
    assert loss.positives(ANCHORS, targets).tolist() == [2, 1, 0]


def test_difficult_objects_are_left_out_of_training():
    loss = MultiboxLoss()
    labels, _ = loss.match(ANCHORS, [target([[0, 0, 10, 10]], [0], difficult=[True])])
    assert labels.tolist() == [[0, 0, 0, 0]]


# ----------------------------------------------------------------------------- per-image loss


def test_per_image_loss_of_an_image_without_objects_and_of_one_easy_box(task):
    classes = 3
    # uniform logits: every CE is log(C + 1); the box equals anchor 0, so its regression target is 0
    outputs = hand_outputs(ANCHORS, torch.zeros(2, 4, classes + 1))
    targets = [target(), target([[0, 0, 10, 10]], [1])]
    per_image = task.per_sample_loss(outputs, targets)
    assert per_image.shape == (2,)
    assert per_image[0].item() == 0.0                                   # no positives, no negatives
    # 1 positive + 3 mined negatives (all there are), divided by 1 positive
    assert per_image[1].item() == pytest.approx(4 * math.log(classes + 1), rel=1e-6)

    # a confident, exact prediction of the easy box: loss near 0
    logits = torch.full((1, 4, classes + 1), -10.0)
    logits[0, :, 0] = 10.0
    logits[0, 0, 0], logits[0, 0, 2] = -10.0, 10.0
    easy = task.per_sample_loss(hand_outputs(ANCHORS, logits), [targets[1]])
    assert 0 <= easy.item() < 1e-6
    # a wrong box offset adds smooth-L1 of the encoded error
    regression = torch.zeros(1, 4, 4)
    regression[0, 0] = torch.tensor([0.5, 0.0, 0.0, 2.0])
    shifted = task.per_sample_loss(hand_outputs(ANCHORS, logits, regression), [targets[1]])
    assert shifted.item() == pytest.approx(0.5 * 0.5**2 + (2.0 - 0.5), abs=1e-5)


def test_min_negatives_mines_the_hardest_negatives_of_an_empty_image():
    task = lt.TASKS.build("detection", min_negatives=2)
    logits = torch.zeros(1, 4, 3)
    logits[0, :, 1] = torch.tensor([0.0, 3.0, 1.0, 2.0])       # anchors 1 and 3 look most like objects
    loss = task.per_sample_loss(hand_outputs(ANCHORS, logits), [target()])
    ce = torch.nn.functional.cross_entropy(logits[0], torch.zeros(4, dtype=torch.long), reduction="none")
    assert loss.item() == pytest.approx((ce[1] + ce[3]).item(), rel=1e-6)


def test_regression_targets_use_torchvisions_box_coder():
    coder = BoxCoder(BOX_CODER_WEIGHTS)
    gt = torch.tensor([[22.0, 22, 40, 40]])
    encoded = coder.encode_single(gt, ANCHORS[1:2])
    decoded = coder.decode_single(encoded, ANCHORS[1:2])
    assert torch.allclose(decoded, gt, atol=1e-4)


def test_per_image_losses_sum_to_the_batch_loss_times_the_normaliser(task, tiny_data):
    torch.manual_seed(0)
    model = task.build_model(width=4, num_classes=6)
    images, targets = task.collate([tiny_data.train[i] for i in range(8)])
    outputs = model(images)
    per_image = task.per_sample_loss(outputs, targets)
    batch = task.batch_loss(per_image, outputs, targets)
    positives = task.multibox.positives(outputs["anchors"], targets).float()
    assert per_image.shape == (8,) and positives.sum() > 0
    assert (per_image * positives.clamp(min=1)).sum().item() == pytest.approx(
        batch.item() * positives.sum().item(), rel=1e-5)
    fresh = lt.TASKS.build("detection").batch_loss(per_image, outputs, targets)    # matches again
    assert fresh.item() == pytest.approx(batch.item(), rel=1e-6)
    import pickle
    assert pickle.loads(pickle.dumps(task)).batch_loss(per_image, outputs, targets).item() == pytest.approx(batch.item())
    batch.backward()                                       # differentiable end to end


def test_per_image_loss_is_not_batch_reduced(task, tiny_data):
    """Changing one image's boxes changes that image's loss only (a batch-reduced loss would not)."""
    torch.manual_seed(0)
    model = task.build_model(width=4, num_classes=6).eval()
    images, targets = task.collate([tiny_data.train[i] for i in range(4)])
    with torch.inference_mode():
        outputs = model(images)
        before = task.per_sample_loss(outputs, targets)
        changed = [dict(t) for t in targets]
        changed[2] = target([[5, 5, 30, 30]], [1])
        after = task.per_sample_loss(outputs, changed)
    assert torch.equal(before[[0, 1, 3]], after[[0, 1, 3]]) and before[2] != after[2]


# ----------------------------------------------------------------------------- decoding and metrics


def test_predict_decodes_boxes_and_suppresses_duplicates(task):
    anchors = torch.tensor([[0.0, 0, 20, 20], [1.0, 1, 21, 21], [40.0, 40, 60, 60]])
    logits = torch.full((1, 3, 3), -8.0)
    logits[0, :, 0] = 0.0
    logits[0, 0, 1], logits[0, 1, 1], logits[0, 2, 2] = 8.0, 6.0, 8.0    # two near-duplicates of class 0
    found = task.predict(hand_outputs(anchors, logits))[0]
    assert found["labels"].tolist() == [0, 1]
    assert torch.allclose(found["boxes"], torch.tensor([[0.0, 0, 20, 20], [40.0, 40, 60, 60]]))
    assert (found["scores"][:-1] >= found["scores"][1:]).all()


def make_truth():
    return [target([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), target([[5, 5, 30, 30]], [0]), target()]


def as_predictions(targets, scores=None):
    return [{"boxes": t["boxes"], "labels": t["labels"],
             "scores": torch.ones(len(t["labels"])) if scores is None else scores[i]}
            for i, t in enumerate(targets)]


def test_metrics_perfect_predictions_give_one_and_none_give_zero():
    truth = make_truth()
    perfect = DetectionMetric(num_classes=2)
    perfect.update(as_predictions(truth), truth)
    assert perfect.compute() == pytest.approx({"map": 1.0, "ap50": 1.0, "ap75": 1.0, "voc07_ap50": 1.0})
    none = DetectionMetric(num_classes=2)
    none.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
                 for _ in truth], truth)
    assert none.compute() == {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "voc07_ap50": 0.0}


def test_voc07_eleven_point_ap_on_a_hand_made_case():
    truth = [{"boxes": np.array([[0, 0, 10, 10.0], [20, 20, 30, 30.0]]), "labels": np.array([0, 0]),
              "difficult": np.array([False, False])}]
    found = [{"boxes": np.array([[0, 0, 10, 10.0], [50, 50, 60, 60.0], [20, 20, 30, 30.0], [0, 0, 10, 10.0]]),
              "scores": np.array([0.9, 0.8, 0.7, 0.6]), "labels": np.array([0, 0, 0, 0])}]
    mean, per_class = voc07_ap(truth, found, num_classes=1)
    # precision 1, 1/2, 2/3, 2/4 at recall 1/2, 1/2, 1, 1
    assert mean == pytest.approx((6 * 1.0 + 5 * (2 / 3)) / 11)


def test_metrics_ignore_difficult_objects():
    truth = [target([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 0], difficult=[False, True])]
    only_easy = as_predictions([target([[0, 0, 10, 10]], [0])])
    both = as_predictions([target([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 0])])
    for predictions in (only_easy, both):     # missing it costs nothing, finding it is no false positive
        metric = DetectionMetric(num_classes=1)
        metric.update(predictions, truth)
        results = metric.compute()
        assert results["voc07_ap50"] == pytest.approx(1.0) and results["ap50"] == pytest.approx(1.0)


def test_metrics_without_any_object_are_nan_not_a_crash():
    metric = DetectionMetric(num_classes=2)
    metric.update(as_predictions([target([[0, 0, 5, 5]], [1])]), [target()])
    assert all(math.isnan(v) for v in metric.compute().values())


# ----------------------------------------------------------------------------- augmentation


def test_horizontal_flip_keeps_boxes_on_their_objects():
    image = np.zeros((40, 60, 3), np.uint8)
    image[5:15, 10:30] = 255                            # the object: x 10..30, y 5..15
    sample = (image, {"boxes": np.array([[10, 5, 30, 15]], np.float32), "labels": np.array([2]),
                      "difficult": np.array([False])})
    flip = DetectionAugmentation(seed=0, flip_p=1.0, crop_p=0.0, zoom_out_p=0.0, color_p=0.0)
    flipped, flipped_target = flip(sample)
    assert np.allclose(flipped_target["boxes"], [[30, 5, 50, 15]])
    x1, y1, x2, y2 = flipped_target["boxes"][0].astype(int)
    assert (flipped[y1:y2, x1:x2] == 255).all() and flipped.sum() == image.sum()
    assert flipped_target["labels"].tolist() == [2] and flip.dropped_boxes == 0


def test_augmentation_is_seeded_and_counts_the_boxes_it_drops(tiny_data):
    samples = [tiny_data.train[i] for i in range(20)]
    first, again = DetectionAugmentation(seed=3, crop_p=1.0, crop_scale=(0.1, 0.2)), DetectionAugmentation(seed=3, crop_p=1.0, crop_scale=(0.1, 0.2))
    before = sum(len(t["boxes"]) for _, t in samples)
    outputs = [first(s) for s in samples]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(outputs, (again(s) for s in samples)))
    after = sum(len(t["boxes"]) for _, t in outputs)
    assert first.dropped_boxes == before - after > 0
    for image, t in outputs:
        assert image.shape == (64, 64, 3)
        assert len(t["boxes"]) == len(t["labels"]) == len(t["difficult"])
        assert ((t["boxes"] >= 0) & (t["boxes"] <= 64)).all()


def test_box_repair_clips_and_drops_with_counts(caplog):
    repairs = BoxRepairs()
    repaired = repair_boxes({"boxes": np.array([[-5, 2, 20, 10], [5, 5, 5, 9], [1, 1, 4, 4]], np.float32),
                             "labels": np.array([0, 1, 2]), "difficult": np.zeros(3, bool)},
                            width=16, height=16, where="a.xml (sample 7)", repairs=repairs)
    assert repaired["boxes"].tolist() == [[0, 2, 16, 10], [1, 1, 4, 4]] and repaired["labels"].tolist() == [0, 2]
    assert (repairs.clipped, repairs.dropped) == (1, 1)
    assert "a.xml (sample 7): object 1" in caplog.text and "degenerate" in caplog.text


# ----------------------------------------------------------------------------- engine


def test_no_detection_branch_in_the_core():
    core = ["registry", "hooks", "model", "objectives", "training", "evaluation", "acquisition", "strategies",
            "pool", "loop", "experiment", "runs", "data", "checkpoints"]
    pattern = re.compile(r"detect|ssd|bbox|boxes|anchor|multibox|voc|coco", re.IGNORECASE)
    for name in core:
        text = (ROOT / "lossal_tasks" / f"{name}.py").read_text(encoding="utf-8")
        assert not pattern.search(text), f"lossal_tasks/{name}.py mentions detection"


def test_train_evaluate_and_acquire_through_the_engine(task, tiny_data):
    model = lt.build_loss_model(task, {"width": 4, **task.model_options_for(tiny_data.train)})
    config = lt.TrainConfig(epochs=1, batch_size=16, optimizer="adam", lr=1e-3, milestones=(), detach_epoch=None,
                            eval_batch_size=16)
    labeled = lt.IndexedSubset(tiny_data.train, range(32), task.augmentation(0))
    history = lt.train(task, model, labeled, config, eval_dataset=tiny_data.test)
    last = history[-1]
    assert {"map", "ap50", "ap75", "voc07_ap50", "ranking_accuracy"} <= set(last)
    selection = lt.acquire(model, task, tiny_data.train, range(32, 64), budget=5, batch_size=16)
    assert len(set(selection.indices)) == 5 and set(selection.indices) <= set(range(32, 64))
    assert selection.scores == sorted(selection.scores, reverse=True)
    entropy = lt.acquire(model, task, tiny_data.train, range(32, 64), budget=3, strategy="entropy", batch_size=16)
    assert len(entropy.indices) == 3


def test_paper_ssd300_builds_without_downloading():
    task = lt.TASKS.build("detection")
    model = lt.build_loss_model(task, {"config": "paper", "num_classes": 20})
    model.eval()
    with torch.inference_mode():
        prediction = model(torch.zeros(1, 3, 300, 300))
    assert prediction.outputs["anchors"].shape == (8732, 4)
    assert prediction.outputs["cls_logits"].shape == (1, 8732, 21)
    assert model.in_channels == (512, 1024, 512, 256, 256, 256)


def test_unknown_model_options_are_named(task):
    with pytest.raises(lt.ConfigError, match="unknown ssd config 'huge'"):
        task.build_model(config="huge")
    with pytest.raises(lt.ConfigError, match=r"unknown detection model options \['depth'\]"):
        task.build_model(depth=3)

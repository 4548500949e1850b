"""The pose task on the engine: synthetic data, the hourglass contract, training, the loop, and
no pose branch in the core."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import lossal_tasks as lt
from lossal_tasks.datasets.pose_transforms import MPII_JOINTS
from lossal_tasks.datasets.synthetic_pose import SyntheticPose
from lossal_tasks.heads.hourglass import StackedHourglass

TINY_MODEL = {"stacks": 2, "width": 8, "depth": 2}
J = {name: i for i, name in enumerate(MPII_JOINTS)}


def test_synthetic_pose_is_a_pure_function_of_seed_and_index():
    first, again, other = SyntheticPose(10**6, seed=5), SyntheticPose(10**6, seed=5), SyntheticPose(10, seed=6)
    sample = first[999_999]
    assert sample["image"].shape == (64, 64, 3) and sample["image"].dtype == np.uint8
    assert sample["keypoints"].shape == (16, 2) and sample["visibility"].shape == (16,)
    assert np.array_equal(sample["image"], again[999_999]["image"])
    assert np.array_equal(sample["keypoints"], again[999_999]["keypoints"])
    assert not np.array_equal(first[3]["image"], other[3]["image"])
    assert first.sample_key(7) == "synthetic-pose-train-0000007"
    with pytest.raises(IndexError):
        first[10**6]


def test_synthetic_pose_has_mpii_joints_in_mpii_order_and_varied_visibility():
    data = SyntheticPose(200, seed=0, image_size=64)
    samples = [data[i] for i in range(200)]
    for sample in samples[:20]:
        k = sample["keypoints"]
        length = lambda a, b: np.linalg.norm(k[J[a]] - k[J[b]])  # noqa: E731
        assert length("r_ankle", "r_knee") == pytest.approx(length("l_ankle", "l_knee"), rel=1e-3)
        assert length("r_knee", "r_hip") == pytest.approx(length("l_knee", "l_hip"), rel=1e-3)
        assert length("r_wrist", "r_elbow") == pytest.approx(length("l_wrist", "l_elbow"), rel=1e-3)
        assert k[J["pelvis"]] == pytest.approx((k[J["r_hip"]] + k[J["l_hip"]]) / 2, abs=1e-3)
        assert k[J["thorax"]] == pytest.approx((k[J["r_shoulder"]] + k[J["l_shoulder"]]) / 2, abs=1e-3)
        assert np.isfinite(sample["head_size"]) and sample["head_size"] > 0
    visibility = np.stack([s["visibility"] for s in samples])
    fractions = [(visibility == v).mean() for v in (0, 1, 2)]
    assert fractions[0] > 0.01 and fractions[1] > 0.05 and fractions[2] > 0.5
    difficulty = np.array([data.difficulty(i) for i in range(60)])
    assert difficulty.min() < 0.2 and difficulty.max() > 0.7


def test_hourglass_returns_every_stack_in_train_and_eval():
    model = StackedHourglass(num_joints=5, stacks=3, width=8, depth=2)
    images = torch.randn(2, 3, 32, 32)
    train_out = model.train()(images)
    eval_out = model.eval()(images)
    assert train_out.shape == eval_out.shape == (2, 3, 5, 8, 8)
    with pytest.raises(ValueError):
        StackedHourglass(stacks=0)


def test_pose_task_contract_on_the_engine():
    task = lt.TASKS.build("pose")
    data = lt.build_datasets("pose", "synthetic", train_size=6, test_size=2, image_size=32)
    assert task.model_options_for(data.train) == {"num_joints": 16} and task.loss_weight == 1e-4
    images, targets = task.collate([data.train[i] for i in range(4)])
    model = lt.build_loss_model(task, TINY_MODEL)
    prediction = model(images)
    assert prediction.outputs.shape == (4, 2, 16, 8, 8)
    assert prediction.loss.shape == (4,) and prediction.embedding.shape == (4, 2 * 8)  # one tap per stack
    assert task.per_sample_loss(prediction.outputs, targets).shape == (4,)
    model.eval()
    with torch.inference_mode():
        again = model(images)
        assert task.per_sample_loss(again.outputs, targets).shape == (4,)
    decoded = task.predict(again.outputs)
    assert len(decoded) == 4 and decoded[0]["keypoints"].shape == (16, 2) and decoded[0]["scores"].shape == (16,)
    uncertainty = task.uncertainty(again.outputs)
    assert uncertainty.shape == (4,) and ((uncertainty >= 0) & (uncertainty <= 1)).all()
    with pytest.raises(lt.ConfigError, match="unknown pose model options"):
        task.build_model(wdth=8)


def test_training_and_the_loop_on_tiny_pose(tmp_path):
    task = lt.TASKS.build("pose")
    data = lt.build_datasets("pose", "synthetic", train_size=40, test_size=12, image_size=32)
    config = lt.TrainConfig(epochs=1, batch_size=8, optimizer="adam", lr=1e-3, weight_decay=0.0, milestones=(),
                            detach_epoch=None, eval_batch_size=16)
    records = lt.run_active_learning(task, data.train, data.test, tmp_path / "run", cycles=2, initial_size=8,
                                     budget=8, subset_size=20, train_config=config, model_options=TINY_MODEL)
    assert [r["labeled"] for r in records] == [8, 16]
    for record in records:
        assert 0.0 <= record["pck"] <= 1.0 and 0.0 <= record["ranking_accuracy"] <= 1.0
        assert {"pckh", "pck_bbox", "oks_ap", "oks_ap50", "mean_loss"} <= set(record)
    model, _ = lt.load_checkpoint(lt.cycle_dir(tmp_path / "run", 1) / "checkpoint.pt", task)
    selection = lt.acquire(model, task, data.train, range(16, 40), budget=4, strategy="entropy")
    assert len(selection) == 4 and len(set(selection.indices)) == 4


def test_presets_fit_the_acceptance_settings():
    task = lt.TASKS.build("pose")
    quick, paper = task.preset("quick"), task.preset("paper")
    assert quick["loop"]["cycles"] >= 4 and quick["data"]["image_size"] == 64
    assert paper["model"] == {"stacks": 8, "width": 256, "depth": 4} and paper["data"]["image_size"] == 256
    assert paper["train"]["lr"] == 2.5e-4 and paper["train"]["milestones"] == [100]
    lt.TrainConfig.from_dict(quick["train"])
    lt.TrainConfig.from_dict(paper["train"])


CORE_MODULES = ("registry", "hooks", "model", "objectives", "training", "evaluation", "acquisition",
                "strategies", "pool", "loop", "experiment", "runs", "data", "checkpoints", "task", "runio",
                "errors", "plotting")


def test_no_pose_branch_in_the_core():
    package = Path(lt.__file__).parent
    pattern = re.compile(r"\bpose|hourglass|heatmap|keypoint|\bjoints\b|pckh|\boks\b|mpii", re.IGNORECASE)
    for name in CORE_MODULES:
        source = (package / f"{name}.py").read_text()
        hits = [line for line in source.splitlines() if pattern.search(line)]
        assert not hits, f"{name}.py mentions pose: {hits}"

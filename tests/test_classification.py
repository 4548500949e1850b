import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import lossal_tasks as lt
from lossal_tasks.datasets.synthetic import SHAPE_CLASSES, SyntheticShapes
from conftest import TINY_TRAIN


def test_synthetic_is_a_pure_function_of_seed_and_index():
    first, again, other = SyntheticShapes(10**6, seed=5), SyntheticShapes(10**6, seed=5), SyntheticShapes(10, seed=6)
    image, label = first[999_999]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again[999_999][0]) and label == again[999_999][1]
    assert not np.array_equal(first[3][0], other[3][0])
    with pytest.raises(IndexError):
        first[10**6]


def test_synthetic_has_many_classes_some_rarer_and_varied_difficulty():
    data = SyntheticShapes(3000, seed=0)
    labels = np.array([data[i][1] for i in range(len(data))])
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert len(SHAPE_CLASSES) >= 10 and (counts > 0).all()
    assert counts.max() > 2 * counts.min()
    difficulty = np.array([data.difficulty(i) for i in range(300)])
    assert difficulty.min() < 0.2 and difficulty.max() > 0.7


def test_classification_task_contract(tiny_classification):
    task, splits = tiny_classification
    images, labels = task.collate([splits.train[i] for i in range(5)])
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.float32 and labels.shape == (5,)
    model = lt.build_loss_model(task, {"width": 4, **task.model_options_for(splits.train)})
    prediction = model(images)
    assert prediction.outputs.shape == (5, len(SHAPE_CLASSES))
    assert prediction.loss.shape == (5,) and prediction.embedding.shape == (5, 4 + 8 + 16 + 32)
    per_sample = task.per_sample_loss(prediction.outputs, labels)
    assert per_sample.shape == (5,)
    assert torch.allclose(per_sample.mean(), torch.nn.functional.cross_entropy(prediction.outputs, labels))
    entropy = task.uncertainty(prediction.outputs)
    assert entropy.shape == (5,) and (entropy >= 0).all()
    assert len(task.predict(prediction.outputs)) == 5
    metric = task.metric()
    metric.update([0, 1, 2], torch.tensor([0, 1, 0]))
    assert metric.compute() == {"accuracy": pytest.approx(2 / 3)}


def test_augmentation_is_seeded_and_keeps_shape(tiny_classification):
    task, splits = tiny_classification
    sample = splits.train[0]
    first, again, other = task.augmentation(7), task.augmentation(7), task.augmentation(8)
    images = [[augment(sample)[0] for _ in range(4)] for augment in (first, again, other)]
    assert all(np.array_equal(a, b) for a, b in zip(images[0], images[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(images[0], images[2]))
    assert all(image.shape == sample[0].shape == (16, 16, 3) for image in images[0])


def test_training_a_tiny_classifier_end_to_end(tiny_classification):
    task, splits = tiny_classification
    torch.manual_seed(0)
    model = lt.build_loss_model(task, {"width": 4, "num_classes": len(SHAPE_CLASSES)})
    history = lt.train(task, model, splits.train, TINY_TRAIN, eval_dataset=splits.test)
    assert len(history) == 2 and 0.0 <= history[-1]["accuracy"] <= 1.0
    assert 0.0 <= history[-1]["ranking_accuracy"] <= 1.0


def write_cifar(root, train_per_batch=4, test=6, corrupt=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        count = test if name == "test_batch" else train_per_batch
        batch = {"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, size=count).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch) if name != corrupt else b"\x80\x04garbage")
    return folder


def test_cifar10_reads_standard_batches(tmp_path):
    write_cifar(tmp_path)
    splits = lt.build_datasets("classification", "cifar10", root=str(tmp_path))
    assert len(splits.train) == 20 and len(splits.test) == 6
    image, label = splits.train[3]
    assert image.shape == (32, 32, 3) and 0 <= label < 10
    assert splits.train.sample_key(3) == "cifar10-train-00003"


def test_cifar10_missing_or_corrupt_is_named(tmp_path):
    with pytest.raises(lt.ConfigError, match="CIFAR-10 folder not found: .*cifar-10-batches-py.*--download"):
        lt.build_datasets("classification", "cifar10", root=str(tmp_path / "nowhere"))
    write_cifar(tmp_path, corrupt="data_batch_3")
    with pytest.raises(lt.BadDataError, match="data_batch_3: not a readable CIFAR-10 batch"):
        lt.build_datasets("classification", "cifar10", root=str(tmp_path))


def write_image_folder(root, per_class=3, size=20):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")


def test_image_folder_with_and_without_train_test(tmp_path):
    write_image_folder(tmp_path / "flat", per_class=5)
    splits = lt.build_datasets("classification", "folder", root=str(tmp_path / "flat"), image_size=16)
    assert len(splits.train) + len(splits.test) == 10 and len(splits.test) == 2
    image, label = splits.train[0]
    assert image.shape == (16, 16, 3) and label in (0, 1)
    assert splits.train.sample_key(0).endswith(".png") and splits.train.classes == ["cat", "dog"]
    write_image_folder(tmp_path / "split" / "train")
    write_image_folder(tmp_path / "split" / "test", per_class=1)
    splits = lt.build_datasets("classification", "folder", root=str(tmp_path / "split"))
    assert (len(splits.train), len(splits.test)) == (6, 2)
    assert splits.train.sample_key(0) == "cat/cat0.png"


def test_image_folder_corrupt_image_is_named(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = lt.build_datasets("classification", "folder", root=str(tmp_path), test_fraction=0.0).train
    position = [data.sample_key(i) for i in range(len(data))].index("dog/broken.png")
    with pytest.raises(lt.BadDataError, match="broken.png: corrupt or unreadable image"):
        data[position]
    with pytest.raises(lt.ConfigError, match="image folder not found"):
        lt.build_datasets("classification", "folder", root=str(tmp_path / "missing"))

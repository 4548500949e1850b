"""Shared fixtures: a tiny regression task registered through the public API, and helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import lossal_tasks as lt

torch.set_num_threads(1)
# The tests use layer widths of 4; on AVX2-only CPUs (seen on an AMD EPYC) torch 2.14's oneDNN
# convolution backward corrupts the heap at such widths (glibc aborts in dnnl::impl::malloc, or the
# process hangs). The native convolution is exact and fast enough at test sizes.
torch.backends.mkldnn.enabled = False


class VectorDataset(Dataset):
    """Sample i: (x_i [dim] float32, y_i float); ``x[:, 0]`` can be set to a known difficulty."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        self.inputs = inputs.astype(np.float32)
        self.targets = targets.astype(np.float32)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return self.inputs[index], float(self.targets[index])

    def sample_key(self, index: int) -> str:
        return f"vector-{index}"


class MeanSquaredError(lt.Metric):
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, predictions, targets) -> None:
        self.total += float(((torch.tensor(predictions) - targets.cpu()) ** 2).sum())
        self.count += len(predictions)

    def compute(self) -> dict:
        return {"mse": self.total / max(1, self.count)}


@lt.TASKS.register("toy_regression")
class ToyRegression(lt.Task):
    name = "toy_regression"
    feature_layers = ("body",)
    primary_metric = "mse"
    presets = {"quick": {"train": {"epochs": 2, "batch_size": 16, "lr": 0.01, "milestones": [],
                                   "detach_epoch": 1, "channels_last": False},
                         "loop": {"cycles": 3, "initial_size": 20, "budget": 10, "subset_size": 60}}}

    def build_model(self, dim: int = 4, hidden: int = 8):
        return _ToyNet(dim, hidden)

    def collate(self, samples):
        inputs = torch.from_numpy(np.stack([x for x, _ in samples]))
        return inputs, torch.tensor([y for _, y in samples], dtype=torch.float32)

    def per_sample_loss(self, outputs, targets):
        return (outputs - targets) ** 2

    def predict(self, outputs):
        return outputs.tolist()

    def metric(self):
        return MeanSquaredError()

    def uncertainty(self, outputs):
        return outputs.abs()


class _ToyNet(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.out(self.body(x)).squeeze(1)


def make_vectors(num: int, dim: int = 4, seed: int = 0) -> VectorDataset:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(num, dim))
    return VectorDataset(inputs, inputs @ np.arange(1, dim + 1) * 0.5)


@lt.DATASETS.register("toy_regression/vectors")
def _toy_vectors(root=None, seed=0, download=False, train_size=200, test_size=40):
    return lt.DataSplits(make_vectors(train_size, seed=seed), make_vectors(test_size, seed=seed + 1))


@pytest.fixture
def toy_task() -> ToyRegression:
    return ToyRegression()


@pytest.fixture
def tiny_classification():
    """A classification task, a width-4 model and a small generated data split (16 px images)."""
    task = lt.TASKS.build("classification")
    splits = lt.build_datasets("classification", "synthetic", seed=3, train_size=120, test_size=40,
                               image_size=16)
    return task, splits


TINY_TRAIN = lt.TrainConfig(epochs=2, batch_size=16, lr=0.05, milestones=(1,), detach_epoch=1,
                            eval_batch_size=32)


def shrink_presets(monkeypatch, task_name: str, **sections: dict) -> None:
    """Override parts of every preset of ``task_name`` (e.g. ``data={"train_size": 40}``) for one test,
    so a CLI run on the task's presets takes seconds."""
    task_class = lt.TASKS.get(task_name)
    presets = {name: {**preset, **{section: {**preset.get(section, {}), **values}
                                   for section, values in sections.items()}}
               for name, preset in task_class.presets.items()}
    monkeypatch.setattr(task_class, "presets", presets)


def oracle_model(task: lt.Task) -> lt.LossPredictionModel:
    """A toy-task model whose embedding is its input and whose predicted loss is exactly relu(x[:, 0])."""
    model = lt.build_loss_model(task, {"dim": 4, "hidden": 4}, hidden_dim=1, in_channels=[4])
    with torch.no_grad():
        model.target.body[0].weight.copy_(torch.eye(4))
        model.target.body[0].bias.zero_()
        model.head.branches[0][0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        model.head.branches[0][0].bias.zero_()
        model.head.regressor.weight.fill_(1.0)
        model.head.regressor.bias.zero_()
    return model


# Preset sections that make a whole run of each built-in task take a second or two.
TINY_PRESETS = {
    "classification": {"data": {"train_size": 64, "test_size": 16, "image_size": 16}, "model": {"width": 4},
                       "train": {"batch_size": 4, "eval_batch_size": 8}},
    "detection": {"data": {"train_size": 32, "test_size": 8, "image_size": 64}, "model": {"width": 4},
                  "train": {"batch_size": 4, "eval_batch_size": 8}},
    "pose": {"data": {"train_size": 32, "test_size": 8, "image_size": 32},
             "model": {"stacks": 1, "width": 8, "depth": 1}, "train": {"batch_size": 4, "eval_batch_size": 8}},
}

"""evaluate(): the task's metrics plus the ranking accuracy of the predicted loss."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from lossal_tasks.model import LossPredictionModel
from lossal_tasks.objectives import ranking_accuracy
from lossal_tasks.runio import move_to
from lossal_tasks.task import Task
from lossal_tasks.training import make_loader, prepare_inputs, resolve_device


def evaluate(task: Task, model: LossPredictionModel, dataset: Dataset, batch_size: int = 256,
             device: str = "cpu", num_workers: int = 0, channels_last: bool = True) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` in order, in inference mode.

    Returns the task metric's values, ``ranking_accuracy`` (predicted vs true per-sample loss over
    all pairs of the split) and ``mean_loss`` (mean true per-sample loss).
    """
    torch_device = resolve_device(device)
    model.to(torch_device)
    model.eval()
    metric = task.metric()
    predicted_losses: list[torch.Tensor] = []
    true_losses: list[torch.Tensor] = []
    with torch.inference_mode():
        for inputs, targets in make_loader(task, dataset, batch_size, num_workers):
            inputs = prepare_inputs(inputs, torch_device, channels_last)
            targets = move_to(targets, torch_device)
            prediction = model(inputs)
            true_losses.append(task.per_sample_loss(prediction.outputs, targets).float().cpu())
            predicted_losses.append(prediction.loss.float().cpu())
            metric.update(task.predict(prediction.outputs), targets)
    results: dict[str, Any] = dict(metric.compute())
    predicted = torch.cat(predicted_losses)
    true = torch.cat(true_losses)
    results["ranking_accuracy"] = ranking_accuracy(predicted, true)
    results["mean_loss"] = float(true.mean())
    return results

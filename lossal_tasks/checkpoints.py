"""Saving and loading LossPredictionModel checkpoints (atomic, task-checked)."""
from __future__ import annotations

import os
from typing import Any

import torch

from lossal_tasks.errors import RunStateError
from lossal_tasks.model import LossPredictionModel
from lossal_tasks.runio import atomic_torch_save
from lossal_tasks.task import Task


def build_loss_model(task: Task, model_options: dict[str, Any] | None = None,
                     hidden_dim: int = 128, in_channels: Any = None) -> LossPredictionModel:
    """The task's target model wrapped with a FeatureTap and a LossPredictionHead."""
    target = task.build_model(**(model_options or {}))
    return LossPredictionModel(target, task.feature_layers, hidden_dim=hidden_dim,
                               in_channels=in_channels)


def save_checkpoint(path: str | os.PathLike, task: Task, model: LossPredictionModel,
                    model_options: dict[str, Any], **meta: Any) -> None:
    """Write the model's weights plus what is needed to rebuild it, atomically."""
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    atomic_torch_save(path, {"format": "lossal-checkpoint-1", "task": task.name,
                             "model_options": model_options, "hidden_dim": model.hidden_dim,
                             "in_channels": list(model.in_channels or ()), "state_dict": state,
                             "meta": meta})


def load_checkpoint(path: str | os.PathLike, task: Task,
                    map_location: str | torch.device = "cpu") -> tuple[LossPredictionModel, dict[str, Any]]:
    """Rebuild the model saved at ``path``; returns ``(model, meta)``.

    A missing or unreadable file, or a checkpoint of another task, raises RunStateError.
    """
    if not os.path.exists(path):
        raise RunStateError(f"{path}: checkpoint not found")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise RunStateError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(saved, dict) or saved.get("format") != "lossal-checkpoint-1":
        raise RunStateError(f"{path}: not a lossal checkpoint")
    if saved["task"] != task.name:
        raise RunStateError(f"{path}: checkpoint is for task {saved['task']!r}, not {task.name!r}")
    model = build_loss_model(task, saved["model_options"], saved["hidden_dim"],
                             saved["in_channels"] or None)
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise RunStateError(f"{path}: weights do not fit the model ({error})") from None
    return model, dict(saved.get("meta", {}))

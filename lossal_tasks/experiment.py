"""Experiment: a task, a dataset and a preset plus overrides, resolved into a runnable run.

This is what tools/train.py and the benchmarks drive; it is plain data, saved in config.json so a
run can be resumed or rescored with exactly its own settings.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from lossal_tasks.data import DataSplits, build_datasets
from lossal_tasks.errors import ConfigError, RunStateError
from lossal_tasks.labeling import is_labeling_project, run_labeling_cycle
from lossal_tasks.loop import run_active_learning
from lossal_tasks.registry import STRATEGIES, TASKS
from lossal_tasks.runs import read_config
from lossal_tasks.task import Task
from lossal_tasks.training import TrainConfig, resolve_device


@dataclass
class Experiment:
    """What to run. ``None`` means "take the preset's value"; ``subset_size=0`` means no subset."""

    task: str
    data: str = "synthetic"
    preset: str = "quick"
    root: str | None = None
    download: bool = False
    strategy: str = "learning_loss"
    cycles: int | None = None
    initial_size: int | None = None
    budget: int | None = None
    subset_size: int | None = None
    epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    amp: bool = False
    skip_nonfinite: bool = False
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Experiment":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class ResolvedExperiment:
    """An Experiment with its preset applied and its task and data built."""

    experiment: Experiment
    task: Task
    data: DataSplits
    model_options: dict[str, Any]
    train_config: TrainConfig
    cycles: int
    initial_size: int
    budget: int
    subset_size: int | None


def _pick(override: Any, preset: dict[str, Any], key: str) -> Any:
    return preset.get(key) if override is None else override


def resolve(experiment: Experiment) -> ResolvedExperiment:
    """Apply the preset and overrides; build the task and its datasets. Bad names raise ConfigError."""
    task = TASKS.get(experiment.task)()
    STRATEGIES.get(experiment.strategy)
    resolve_device(experiment.device)
    preset = task.preset(experiment.preset)
    data_options = {**preset["data"], **experiment.data_options}
    data = build_datasets(task.name, experiment.data, root=experiment.root, seed=experiment.seed,
                          download=experiment.download, **data_options)
    model_options = {**preset["model"], **task.model_options_for(data.train), **experiment.model_options}
    train_values = {**preset["train"], **experiment.train_options, "device": experiment.device,
                    "num_workers": experiment.num_workers, "amp": experiment.amp,
                    "skip_nonfinite": experiment.skip_nonfinite}
    if experiment.epochs is not None:
        train_values.update(_scaled_schedule(preset["train"], experiment.epochs, experiment.train_options))
    loop = preset["loop"]
    subset = _pick(experiment.subset_size, loop, "subset_size")
    return ResolvedExperiment(
        experiment=experiment, task=task, data=data, model_options=model_options,
        train_config=TrainConfig.from_dict(train_values),
        cycles=_pick(experiment.cycles, loop, "cycles"),
        initial_size=_pick(experiment.initial_size, loop, "initial_size"),
        budget=_pick(experiment.budget, loop, "budget"),
        subset_size=subset or None,
    )


def _scaled_schedule(preset_train: dict[str, Any], epochs: int, explicit: dict[str, Any]) -> dict[str, Any]:
    """Epochs, with milestones and detach epoch kept at the preset's fraction of training
    (unless given explicitly)."""
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    ratio = epochs / preset_train.get("epochs", epochs)
    scaled: dict[str, Any] = {"epochs": epochs}
    if "milestones" not in explicit:
        scaled["milestones"] = [max(1, round(m * ratio)) for m in preset_train.get("milestones", [])]
    if "detach_epoch" not in explicit and preset_train.get("detach_epoch") is not None:
        scaled["detach_epoch"] = max(1, round(preset_train["detach_epoch"] * ratio))
    return scaled


def run_experiment(experiment: Experiment, out_dir: str | os.PathLike, resume: bool = False,
                   on_cycle: Callable[[dict[str, Any]], None] | None = None,
                   on_start: Callable[[ResolvedExperiment], None] | None = None) -> list[dict[str, Any]]:
    """Resolve ``experiment`` and run the active-learning loop into ``out_dir``.

    With ``resume=True`` the settings saved in ``out_dir`` are used (only device and workers may
    change, and mixed precision and skip_nonfinite), so a resumed run continues exactly where it stopped.
    """
    if resume and os.path.exists(os.path.join(out_dir, "config.json")):
        saved_values = read_config(out_dir).get("experiment")
        if not saved_values:
            raise ConfigError(f"{out_dir}: run was not started by an Experiment; resume it through the API")
        saved = Experiment.from_dict(saved_values)
        if saved.task != experiment.task:
            raise RunStateError(f"{out_dir}: run is for task {saved.task!r}, not {experiment.task!r}")
        experiment = dataclasses.replace(saved, device=experiment.device, num_workers=experiment.num_workers,
                                         amp=experiment.amp, skip_nonfinite=experiment.skip_nonfinite)
    resolved = resolve(experiment)
    if on_start is not None:
        on_start(resolved)
    run_info = {"data": experiment.data, "preset": experiment.preset,
                "data_options": {"root": experiment.root, "seed": experiment.seed,
                                 **{**resolved.task.preset(experiment.preset)["data"], **experiment.data_options}},
                "experiment": experiment.to_dict()}
    if is_labeling_project(resolved.data.train):
        # Real annotations: one cycle per call, on whatever people have labeled so far.
        return run_labeling_cycle(resolved.task, resolved.data.train, resolved.data.test, out_dir,
                                  resolved.train_config, experiment.seed, resolved.model_options,
                                  experiment.strategy, resume=resume, run_info=run_info, on_cycle=on_cycle)
    return run_active_learning(
        resolved.task, resolved.data.train, resolved.data.test, out_dir, resolved.cycles,
        resolved.initial_size, resolved.budget, experiment.strategy, resolved.subset_size,
        resolved.train_config, experiment.seed, resolved.model_options, resume=resume,
        run_info=run_info, on_cycle=on_cycle)

"""Reading a run directory back: config, task, data, pool and latest checkpoint; writing selections."""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from lossal_tasks.acquisition import Selection
from lossal_tasks.checkpoints import load_checkpoint
from lossal_tasks.data import DataSplits, build_datasets, sample_key
from lossal_tasks.errors import RunStateError
from lossal_tasks.loop import CONFIG_FILE, POOL_FILE, cycle_dir, read_metrics
from lossal_tasks.model import LossPredictionModel
from lossal_tasks.pool import Pool
from lossal_tasks.registry import TASKS
from lossal_tasks.runio import atomic_write_json, atomic_write_text
from lossal_tasks.task import Task


@dataclass
class Run:
    """A run directory opened for reading: what the tools need to score or evaluate it."""

    path: Path
    config: dict[str, Any]
    task: Task
    data: DataSplits
    pool: Pool
    model: LossPredictionModel
    checkpoint: Path
    metrics: list[dict[str, Any]]


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a run; RunStateError when ``run_dir`` is not a lossal run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunStateError(f"{run_dir}: run directory not found")
    if not path.exists():
        raise RunStateError(f"{run_dir}: not a lossal run directory (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunStateError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(config, dict) or "task" not in config:
        raise RunStateError(f"{path}: not a lossal run config (no 'task')")
    return config


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint of the latest cycle that has one."""
    cycles = sorted((Path(run_dir) / "cycles").glob("cycle_*/checkpoint.pt"))
    if not cycles:
        raise RunStateError(f"{run_dir}: no checkpoint yet (no cycle has finished training)")
    return cycles[-1]


def open_run(run_dir: str | os.PathLike, data: DataSplits | None = None) -> Run:
    """Open ``run_dir``: rebuild its task and datasets (from config.json unless ``data`` is given),
    load its pool and the latest checkpoint."""
    config = read_config(run_dir)
    task = TASKS.get(config["task"])()
    if data is None:
        if "data" not in config:
            raise RunStateError(f"{run_dir}: config.json does not say which dataset it used; pass data=")
        data = build_datasets(task.name, config["data"], **config.get("data_options", {}))
    pool = Pool.load(Path(run_dir) / POOL_FILE)
    if pool.size != len(data.train):
        raise RunStateError(f"{run_dir}: the pool has {pool.size} samples but the dataset has {len(data.train)}")
    checkpoint = latest_checkpoint(run_dir)
    model, _ = load_checkpoint(checkpoint, task)
    return Run(Path(run_dir), config, task, data, pool, model, checkpoint, read_metrics(run_dir))


def selection_rows(selection: Selection, dataset: Dataset) -> list[dict[str, Any]]:
    """One dict per chosen sample: rank (1 = first to label), dataset index, sample key, score."""
    return [{"rank": rank, "dataset_index": index, "sample_key": sample_key(dataset, index),
             "score": score}
            for rank, (index, score) in enumerate(zip(selection.indices, selection.scores), start=1)]


def write_selection(selection: Selection, dataset: Dataset, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the selection as ``<path>.csv`` and ``<path>.json`` (atomically); returns both paths."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".csv", ".json") else base
    rows = selection_rows(selection, dataset)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["rank", "dataset_index", "sample_key", "score"])
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = base.with_name(base.name + ".csv"), base.with_name(base.name + ".json")
    atomic_write_text(csv_path, text.getvalue())
    atomic_write_json(json_path, {"strategy": selection.strategy, "num_candidates": selection.num_candidates,
                                  "num_scored": selection.num_scored, **(extra or {}), "selection": rows})
    return csv_path, json_path

"""run_active_learning(): cycles of train -> evaluate -> acquire, resumable from its run directory."""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from lossal_tasks import distributed
from lossal_tasks.acquisition import Selection, acquire
from lossal_tasks.checkpoints import build_loss_model, load_checkpoint, save_checkpoint
from lossal_tasks.data import IndexedSubset
from lossal_tasks.errors import ConfigError, RunStateError
from lossal_tasks.evaluation import evaluate
from lossal_tasks.model import LossPredictionModel
from lossal_tasks.pool import Pool
from lossal_tasks.registry import STRATEGIES
from lossal_tasks.runio import atomic_write_json, atomic_write_text, derive_seed
from lossal_tasks.runlock import LOCK_FILE, RunLock, remove_partial_files
from lossal_tasks.task import Task
from lossal_tasks.training import TrainConfig, train

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
POOL_FILE = "pool.json"
METRICS_FILE = "metrics.jsonl"

# Purposes mixed into the run seed so each random choice gets its own stream.
_INITIAL, _MODEL, _TRAIN, _AUGMENT, _ACQUIRE = range(5)


def cycle_dir(out_dir: str | os.PathLike, cycle: int) -> Path:
    """Where cycle ``cycle`` keeps its checkpoint and selection."""
    return Path(out_dir) / "cycles" / f"cycle_{cycle:03d}"


def read_metrics(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-cycle records of a run's metrics.jsonl (empty if none yet)."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise RunStateError(f"{path}:{number}: malformed metrics line ({error})") from None
    return records


def write_metrics(out_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl (atomically) with one JSON object per record."""
    atomic_write_text(out_dir / METRICS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _check_settings(cycles: int, initial_size: int, budget: int, subset_size: int | None,
                    pool_size: int) -> None:
    for name, value in (("cycles", cycles), ("initial_size", initial_size), ("budget", budget)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    if subset_size is not None and subset_size < 1:
        raise ConfigError(f"subset_size must be positive or None, got {subset_size!r}")
    if pool_size == 0:
        raise ConfigError("the training pool is empty")
    if initial_size > pool_size:
        raise ConfigError(f"initial_size {initial_size} is larger than the pool of {pool_size} samples")
    if cycles > 1 and budget > pool_size - initial_size:
        raise ConfigError(f"budget {budget} is larger than the {pool_size - initial_size} samples left unlabeled "
                          f"after initial_size {initial_size} (pool of {pool_size})")


# Choices of this machine or this attempt, not of the run: a resume may change them (amp like the
# device; skip_nonfinite to get past a NaN that stopped the run), so config.json leaves them out.
_PER_ATTEMPT_TRAIN_SETTINGS = ("device", "num_workers", "amp", "skip_nonfinite")


def saved_train_settings(train_config: TrainConfig) -> dict[str, Any]:
    """``train_config`` as config.json records it: without the per-attempt settings."""
    settings = train_config.to_dict()
    for name in _PER_ATTEMPT_TRAIN_SETTINGS:
        settings.pop(name, None)
    return settings


@contextmanager
def locked_run_directory(out_dir: Path, resume: bool, command: str) -> Iterator[None]:
    """Hold ``out_dir``'s run lock (creating the directory for a new run), with the temp files a
    killed writer left removed first; resuming a directory that does not exist is a RunStateError.

    Under torchrun only rank 0 creates, locks and cleans: another rank would delete the temp file
    rank 0 is writing.
    """
    if not resume:
        if distributed.is_main():
            out_dir.mkdir(parents=True, exist_ok=True)
    elif not out_dir.is_dir():
        raise RunStateError(f"{out_dir}: not a lossal run directory (it does not exist); cannot resume")
    with RunLock(out_dir, command=command):
        if distributed.is_main():
            remove_partial_files(out_dir)
        yield


def _only_lock_in(out_dir: Path) -> bool:
    return out_dir.is_dir() and all(path.name == LOCK_FILE for path in out_dir.iterdir())


def open_run_directory(out_dir: Path, config: dict[str, Any], resume: bool, pool_size: int,
                       check_saved: Callable[[dict[str, Any]], None]) -> Pool | None:
    """Open ``out_dir`` for a run described by ``config``; the saved pool on resume, else None.

    On resume ``check_saved`` gets the saved config and raises RunStateError if the run may not be
    continued with ``config``. A new run (or a resume of a run killed before its config.json was in
    place) writes ``config`` and returns None: the caller builds the first pool.
    """
    config_path = out_dir / CONFIG_FILE
    if resume and not config_path.exists() and _only_lock_in(out_dir):
        # Killed before config.json was in place: nothing was run yet, so start afresh.
        log.info("%s: no run was recorded before the interruption; starting it", out_dir)
        resume = False
    if resume:
        if not config_path.exists():
            raise RunStateError(f"{out_dir}: not a lossal run directory (no {CONFIG_FILE}); cannot resume")
        check_saved(json.loads(config_path.read_text(encoding="utf-8")))
        if (out_dir / POOL_FILE).exists():
            pool = Pool.load(out_dir / POOL_FILE)
            if pool.size != pool_size:
                raise RunStateError(f"{out_dir / POOL_FILE}: pool of {pool.size} samples, dataset has {pool_size}")
            return pool
    elif config_path.exists():
        raise RunStateError(f"{out_dir} already holds a run; pass --resume (resume=True) or choose another directory")
    # Under torchrun every rank has looked at the directory before rank 0 writes into it.
    distributed.barrier()
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, config)
    return None


def _open_run(out_dir: Path, config: dict[str, Any], resume: bool, pool_size: int,
              initial_size: int, seed: int) -> Pool:
    def check_saved(saved: dict[str, Any]) -> None:
        if saved.get("task") != config["task"]:
            raise RunStateError(f"{out_dir}: run is for task {saved.get('task')!r}, not {config['task']!r}")
        changed = sorted(k for k in ("loop", "train", "model_options", "seed")
                         if json.dumps(saved.get(k), sort_keys=True) != json.dumps(config.get(k), sort_keys=True))
        if changed:
            raise RunStateError(f"{out_dir}: settings {changed} differ from the run being resumed; "
                                "resume with the original settings or start a new --out")

    pool = open_run_directory(out_dir, config, resume, pool_size, check_saved)
    if pool is not None:
        return pool
    pool = Pool(pool_size)
    generator = torch.Generator().manual_seed(derive_seed(seed, _INITIAL))
    pool.add(torch.randperm(pool_size, generator=generator)[:initial_size].tolist(), cycle=0)
    pool.meta["completed_cycles"] = 0
    pool.save(out_dir / POOL_FILE)
    distributed.barrier()
    return pool


def run_active_learning(task: Task, train_set: Dataset, test_set: Dataset, out_dir: str | os.PathLike,
                        cycles: int, initial_size: int, budget: int, strategy: str = "learning_loss",
                        subset_size: int | None = None, train_config: TrainConfig | None = None,
                        seed: int = 0, model_options: dict[str, Any] | None = None,
                        resume: bool = False, run_info: dict[str, Any] | None = None,
                        on_cycle: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """The paper's protocol: label ``initial_size`` random samples, then ``cycles`` times train a
    fresh model, evaluate it on ``test_set`` and (except after the last cycle) acquire ``budget``.

    Everything goes to ``out_dir`` (config.json, pool.json, metrics.jsonl, cycles/cycle_NNN/
    {checkpoint.pt, selection.json}), each file written atomically. With ``resume=True`` a run
    killed at any point continues and reaches the same final pool as an uninterrupted run.
    ``run_info`` (e.g. the dataset name and options) is stored in config.json for the tools.
    Returns the per-cycle metric records (also in metrics.jsonl); ``on_cycle`` gets each one.
    """
    STRATEGIES.get(strategy)
    _check_settings(cycles, initial_size, budget, subset_size, len(train_set))
    train_config = train_config or TrainConfig()
    model_options = dict(model_options or {})
    out_dir = Path(out_dir)
    config = {"task": task.name, "strategy": strategy, "seed": seed, "model_options": model_options,
              "train": saved_train_settings(train_config),
              "loop": {"cycles": cycles, "initial_size": initial_size, "budget": budget,
                       "subset_size": subset_size, "strategy": strategy},
              **(run_info or {})}
    with locked_run_directory(out_dir, resume, command="run_active_learning"):
        pool = _open_run(out_dir, config, resume, len(train_set), initial_size, seed)
        start = int(pool.meta.get("completed_cycles", 0))
        records = [r for r in read_metrics(out_dir) if r["cycle"] < start]
        if start:
            log.info("resuming %s at cycle %d with %d labeled", out_dir, start, pool.num_labeled)
        for cycle in range(start, cycles):
            record = _run_cycle(task, train_set, test_set, out_dir, pool, cycle, cycle == cycles - 1,
                                budget, strategy, subset_size, train_config, seed, model_options)
            records.append(record)
            write_metrics(out_dir, records)
            pool.meta["completed_cycles"] = cycle + 1
            pool.save(out_dir / POOL_FILE)
            distributed.barrier()  # rank 0's files for this cycle are in place for every rank
            if on_cycle is not None:
                on_cycle(record)
    return records


def trained_model(task: Task, train_set: Dataset, out_dir: Path, pool: Pool, cycle: int,
                  train_config: TrainConfig, seed: int,
                  model_options: dict[str, Any]) -> tuple[LossPredictionModel, float]:
    """Cycle ``cycle``'s model trained on ``pool.labeled`` and its training seconds: loaded from the
    cycle's checkpoint when one is in place (a resumed cycle), else trained fresh and saved."""
    checkpoint = cycle_dir(out_dir, cycle) / "checkpoint.pt"
    if checkpoint.exists():
        model, meta = load_checkpoint(checkpoint, task)
        return model, float(meta.get("train_seconds", 0.0))
    torch.manual_seed(derive_seed(seed, cycle, _MODEL))
    model = build_loss_model(task, model_options)
    labeled_set = IndexedSubset(train_set, pool.labeled, task.augmentation(derive_seed(seed, cycle, _AUGMENT)))
    started = time.perf_counter()
    train(task, model, labeled_set, train_config.replace(seed=derive_seed(seed, cycle, _TRAIN)),
          context=f"cycle {cycle}")
    train_seconds = time.perf_counter() - started
    save_checkpoint(checkpoint, task, model, model_options, cycle=cycle, labeled=pool.num_labeled,
                    train_seconds=train_seconds)
    return model, train_seconds


def _run_cycle(task: Task, train_set: Dataset, test_set: Dataset, out_dir: Path, pool: Pool, cycle: int,
               last: bool, budget: int, strategy: str, subset_size: int | None,
               train_config: TrainConfig, seed: int, model_options: dict[str, Any]) -> dict[str, Any]:
    model, train_seconds = trained_model(task, train_set, out_dir, pool, cycle, train_config, seed,
                                          model_options)
    results = evaluate(task, model, test_set, train_config.eval_batch_size, train_config.device,
                       train_config.num_workers, train_config.channels_last)
    record: dict[str, Any] = {"cycle": cycle, "labeled": pool.num_labeled, **results,
                              "train_seconds": round(train_seconds, 3), "acquire_seconds": None,
                              "selected": 0, "strategy": strategy}
    if not last and pool.num_unlabeled > 0:
        selection = _selection(task, train_set, out_dir, pool, cycle, model, budget, strategy,
                               subset_size, train_config, seed)
        pool.add(selection.indices, cycle + 1)
        record["acquire_seconds"] = round(selection.seconds, 3)
        record["selected"] = len(selection)
    return record


def _selection(task: Task, train_set: Dataset, out_dir: Path, pool: Pool, cycle: int, model: Any,
               budget: int, strategy: str, subset_size: int | None, train_config: TrainConfig,
               seed: int) -> Selection:
    path = cycle_dir(out_dir, cycle) / "selection.json"
    if path.exists():
        return Selection.from_dict(json.loads(path.read_text(encoding="utf-8")))
    selection = acquire(model, task, train_set, pool.unlabeled, budget, strategy, subset_size,
                        labeled=None, seed=derive_seed(seed, cycle, _ACQUIRE),
                        batch_size=train_config.eval_batch_size, device=train_config.device,
                        num_workers=train_config.num_workers, channels_last=train_config.channels_last)
    atomic_write_json(path, {"cycle": cycle, **selection.to_dict()})
    return selection

"""The real labeling loop: import the annotations people wrote, check them, train the next cycle.

A *labeling project* dataset (see datasets/labels_*.py) lists every image of a folder (the pool,
ordered by path) and reads a growing annotation source; it exposes ``import_annotations()``,
which re-reads the source, checks it and returns ``{dataset index: where}`` of every annotated
image, plus ``annotation_source`` (the file or folder) and ``classes``. Nothing here knows the
task: the dataset parses and checks its own format.

One call of :func:`run_labeling_cycle` (what ``tools/train.py`` does for such a dataset) is one
cycle: import (samples that newly have labels join the pool with the current cycle number),
train a fresh model on every labeled sample, evaluate it on the test annotations if there are
any, save the checkpoint. ``tools/acquire.py`` then picks the images to label next.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from lossal_tasks.data import DataSplits, IndexedSubset, sample_key
from lossal_tasks.errors import BadDataError, RunStateError
from lossal_tasks.evaluation import evaluate
from lossal_tasks.loop import (CONFIG_FILE, POOL_FILE, cycle_dir, locked_run_directory, open_run_directory,
                                read_metrics, saved_train_settings, trained_model, write_metrics)
from lossal_tasks.pool import Pool
from lossal_tasks.runio import atomic_write_json
from lossal_tasks.task import Task
from lossal_tasks.training import TrainConfig

log = logging.getLogger(__name__)

IMAGES_FILE = "images.json"
SELECTION_FILE = "selection.json"


def is_labeling_project(dataset: Dataset) -> bool:
    """Whether ``dataset`` reads its labels from a growing annotation source."""
    return callable(getattr(dataset, "import_annotations", None))


def project_splits(pool: Dataset, test: Dataset | None) -> DataSplits:
    """A project's splits: the whole pool, and the annotated images of ``test`` (an empty split
    when there are none, so evaluation is skipped)."""
    if test is None:
        return DataSplits(pool, IndexedSubset(pool, []))
    return DataSplits(pool, IndexedSubset(test, sorted(test.import_annotations())))


@dataclass
class ImportReport:
    """What one import did. ``joined``: dataset indices that newly have labels (they joined the
    pool in ``cycle``); ``unselected``: those of them that no acquisition had asked for;
    ``changed``: whether the annotation source differs from the previous import; ``fingerprint``:
    its SHA-256 (see :func:`source_fingerprint`)."""

    cycle: int
    source: str
    joined: list[int] = field(default_factory=list)
    unselected: list[int] = field(default_factory=list)
    labeled: int = 0
    changed: bool = True
    fingerprint: str = ""


def source_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of an annotation file, or of a folder's file names and contents ("" if missing)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
    elif path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(item.relative_to(path).as_posix().encode() + b"\0" + item.read_bytes())
    else:
        return ""
    return digest.hexdigest()


def selected_so_far(run_dir: str | os.PathLike) -> set[int]:
    """Every dataset index an acquisition of this run has asked to label."""
    chosen: set[int] = set()
    for path in sorted((Path(run_dir) / "cycles").glob(f"cycle_*/{SELECTION_FILE}")):
        try:
            chosen.update(int(i) for i in json.loads(path.read_text(encoding="utf-8"))["indices"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise RunStateError(f"{path}: malformed selection file ({error!r})") from None
    return chosen


def record_selection(run_dir: str | os.PathLike, cycle: int, selection: dict[str, Any]) -> Path:
    """Remember in the run what was sent to annotators after ``cycle`` (its latest acquisition)."""
    path = cycle_dir(run_dir, cycle) / SELECTION_FILE
    atomic_write_json(path, {"cycle": cycle, **selection})
    return path


def unannotated(dataset: Dataset, pool: Pool) -> np.ndarray:
    """Unlabeled pool indices whose images have no annotation yet either (labels written since
    the last cycle are not asked for again), ascending (int64 [N])."""
    annotated = np.fromiter(dataset.import_annotations(), dtype=np.int64)
    candidates = pool.unlabeled
    return candidates[~np.isin(candidates, annotated)]


def _check_images(dataset: Dataset, run_dir: Path | None) -> None:
    """The images folder must be the one the run started with: indices are positions in it."""
    keys = [sample_key(dataset, i) for i in range(len(dataset))]
    if run_dir is None:
        return
    path = run_dir / IMAGES_FILE
    if not path.exists():
        atomic_write_json(path, {"images": keys})
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunStateError(f"{path}: malformed image list ({error!r})") from None
    if recorded != keys:
        added = sorted(set(keys) - set(recorded))
        removed = sorted(set(recorded) - set(keys))
        raise RunStateError(
            f"{run_dir}: the images folder changed since the run started ({len(added)} added, e.g. "
            f"{added[:3]}; {len(removed)} removed, e.g. {removed[:3]}); a run's pool is fixed, "
            "so restore the folder or start a new run for the new images")


def import_labels(dataset: Dataset, pool: Pool, cycle: int,
                  run_dir: str | os.PathLike | None = None) -> ImportReport:
    """Read the dataset's annotations and let the samples that newly have labels join ``pool``
    in ``cycle`` (``pool.add``); the pool is changed in memory only.

    The dataset's own checks raise BadDataError naming the file and entry (unknown image,
    duplicate, wrong category). Here: the categories must be those of the first import, a
    sample already in the pool must still be annotated, and (with ``run_dir``) the image list
    must be the run's. Re-importing unchanged annotations changes nothing. Annotations of images
    no acquisition asked for are accepted and logged.
    """
    run_path = Path(run_dir) if run_dir is not None else None
    source = str(getattr(dataset, "annotation_source", "annotations"))
    _check_images(dataset, run_path)
    annotated = dataset.import_annotations()
    categories = [str(name) for name in (getattr(dataset, "classes", None) or ())]
    recorded = pool.meta.get("categories")
    if recorded is not None and categories != recorded:
        raise BadDataError(
            f"{source}: wrong categories: the project's categories were fixed at the first import as "
            f"{recorded}, now {categories}; a new category needs a new run")
    lost = [i for i in pool.labeled if i not in annotated]
    if lost:
        raise BadDataError(
            f"{source}: image {sample_key(dataset, lost[0])!r} (sample {lost[0]}) joined the pool in cycle "
            f"{pool.cycle_of(lost[0])} but has no annotation any more"
            + (f" ({len(lost) - 1} more)" if len(lost) > 1 else "") + "; labels cannot be withdrawn from a run")
    joined = sorted(i for i in annotated if not pool.is_labeled(i))
    fingerprint = source_fingerprint(source)
    previous = pool.meta.get("imports", [])
    changed = bool(joined) or not previous or previous[-1].get("fingerprint") != fingerprint
    chosen = selected_so_far(run_path) if run_path is not None else set()
    unselected = [i for i in joined if i not in chosen] if chosen else []
    report = ImportReport(cycle, source, joined, unselected, pool.num_labeled + len(joined), changed, fingerprint)
    if joined:
        pool.add(joined, cycle)
    if categories and recorded is None:
        pool.meta["categories"] = categories
    if changed:
        pool.meta["imports"] = previous + [{"cycle": cycle, "source": source, "joined": len(joined),
                                            "unselected": len(unselected), "labeled": pool.num_labeled,
                                            "fingerprint": fingerprint}]
    log.info("%s: %d newly labeled sample(s) joined the pool in cycle %d; %d labeled in all",
             source, len(joined), cycle, pool.num_labeled)
    if unselected:
        log.warning("%s: %d of the %d new labels are for images no acquisition asked for (e.g. %s); "
                    "they join the pool all the same", source, len(unselected), len(joined),
                    [sample_key(dataset, i) for i in unselected[:3]])
    return report


def _open_project_run(out_dir: Path, config: dict[str, Any], resume: bool, size: int) -> Pool:
    def check_saved(saved: dict[str, Any]) -> None:
        if saved.get("task") != config["task"] or not saved.get("labeling"):
            raise RunStateError(f"{out_dir}: not a labeling run of task {config['task']!r}")

    pool = open_run_directory(out_dir, config, resume, size, check_saved)
    if pool is None:
        pool = Pool(size)
        pool.meta["completed_cycles"] = 0
    return pool


def run_labeling_cycle(task: Task, train_set: Dataset, test_set: Dataset | None, out_dir: str | os.PathLike,
                       train_config: TrainConfig | None = None, seed: int = 0,
                       model_options: dict[str, Any] | None = None, strategy: str = "learning_loss",
                       resume: bool = False, run_info: dict[str, Any] | None = None,
                       on_cycle: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One cycle of the real labeling loop into ``out_dir`` (same files as run_active_learning).

    Imports ``train_set``'s annotations (:func:`import_labels`), then, unless the annotation source
    is byte for byte the one the last cycle trained on, trains a fresh model on every labeled sample, evaluates it on
    ``test_set`` (skipped, with a warning, when it is None or empty) and saves the checkpoint and
    the cycle's record. The first call needs ``resume=False``, later ones ``resume=True``.
    Returns every cycle's record so far; ``on_cycle`` gets the new one. Records of cycles without
    evaluation carry None for ``task.primary_metric`` and ``ranking_accuracy``.
    """
    train_config = train_config or TrainConfig()
    model_options = dict(model_options or {})
    out_dir = Path(out_dir)
    config = {"task": task.name, "strategy": strategy, "seed": seed, "model_options": model_options,
              "train": saved_train_settings(train_config), "labeling": True, **(run_info or {})}
    with locked_run_directory(out_dir, resume, command="run_labeling_cycle"):
        return _labeling_cycle(task, train_set, test_set, out_dir, config, train_config, seed, model_options,
                               strategy, resume, on_cycle)


def _labeling_cycle(task: Task, train_set: Dataset, test_set: Dataset | None, out_dir: Path,
                    config: dict[str, Any], train_config: TrainConfig, seed: int, model_options: dict[str, Any],
                    strategy: str, resume: bool,
                    on_cycle: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    source = getattr(train_set, "annotation_source", "annotations")
    if not resume and not (out_dir / CONFIG_FILE).exists() and not train_set.import_annotations():
        # checked before the run exists, so that the first command can simply be repeated
        raise BadDataError(f"{source}: no annotated images yet; label a first batch of images "
                           "(any you like) and run again")
    pool = _open_project_run(out_dir, config, resume, len(train_set))
    cycle = int(pool.meta.get("completed_cycles", 0))
    records = [r for r in read_metrics(out_dir) if r["cycle"] < cycle]
    report = import_labels(train_set, pool, cycle, out_dir)
    pool.save(out_dir / POOL_FILE)
    untouched = report.fingerprint == pool.meta.get("trained_fingerprint")
    if cycle > 0 and untouched and not (cycle_dir(out_dir, cycle) / "checkpoint.pt").exists():
        log.warning("%s: no new or changed annotations since cycle %d; nothing to train (label the images "
                    "tools/acquire.py chose, then run again)", report.source, cycle - 1)
        return records
    model, train_seconds = trained_model(task, train_set, out_dir, pool, cycle, train_config, seed, model_options)
    record: dict[str, Any] = {"cycle": cycle, "labeled": pool.num_labeled, "joined": len(report.joined)}
    if test_set is not None and len(test_set) > 0:
        record.update(evaluate(task, model, test_set, train_config.eval_batch_size, train_config.device,
                               train_config.num_workers, train_config.channels_last))
    else:
        log.warning("no test annotations: cycle %d is not evaluated (add held-out labeled images to evaluate)",
                    cycle)
        record.update({task.primary_metric: None, "ranking_accuracy": None, "mean_loss": None})
    record.update({"train_seconds": round(train_seconds, 3), "acquire_seconds": None, "selected": 0,
                   "strategy": strategy})
    records.append(record)
    write_metrics(out_dir, records)
    pool.meta["completed_cycles"] = cycle + 1
    pool.meta["trained_fingerprint"] = report.fingerprint
    pool.save(out_dir / POOL_FILE)
    if on_cycle is not None:
        on_cycle(record)
    return records

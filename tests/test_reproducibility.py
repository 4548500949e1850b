"""On the CPU the same seed gives the identical selection, weights and metrics on a rerun."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lossal_tasks as lt
from conftest import TINY_PRESETS, shrink_presets
from lossal_tasks.experiment import Experiment, run_experiment

TIMING_KEYS = {"train_seconds", "acquire_seconds", "seconds"}
TINY = TINY_PRESETS


def outcome(out: Path) -> dict:
    """Everything a run decides, without wall-clock times."""
    selections = [{k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING_KEYS}
                  for path in sorted(out.glob("cycles/*/selection.json"))]
    weights = [lt.load_checkpoint(path, lt.TASKS.build(json.loads((out / "config.json").read_text())["task"]))[0]
               .state_dict() for path in sorted(out.glob("cycles/*/checkpoint.pt"))]
    return {"pool": lt.Pool.load(out / "pool.json").to_dict(), "selections": selections, "weights": weights,
            "metrics": [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in lt.read_metrics(out)]}


def same_weights(first: list[dict], second: list[dict]) -> bool:
    return len(first) == len(second) and all(
        a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(first, second))


@pytest.mark.parametrize("task", ["classification", "detection", "pose"])
def test_same_seed_same_run(task, tmp_path, monkeypatch):
    shrink_presets(monkeypatch, task, **TINY[task])
    runs = {}
    for name, seed in (("first", 3), ("again", 3), ("other", 4)):
        run_experiment(Experiment(task=task, cycles=3, initial_size=8, budget=6, subset_size=16, epochs=1,
                                  seed=seed), tmp_path / name)
        runs[name] = outcome(tmp_path / name)
    first, again, other = runs["first"], runs["again"], runs["other"]
    assert first["pool"] == again["pool"]
    assert first["selections"] == again["selections"]  # indices and their scores, bit for bit
    assert first["metrics"] == again["metrics"]
    assert same_weights(first["weights"], again["weights"])
    # ... and the seed matters, so the equalities above are not vacuous.
    assert first["pool"]["labeled"] != other["pool"]["labeled"]
    assert not same_weights(first["weights"], other["weights"])

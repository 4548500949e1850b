"""Non-finite losses: a named error that leaves the run as it was, or skipped and counted batches."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

import lossal_tasks as lt
from conftest import ToyRegression, make_vectors
from lossal_tasks.experiment import Experiment, resolve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train as train_tool  # noqa: E402


class Poisoner:
    """Makes training batch number ``at`` (counting from 1, over the process) produce a NaN loss."""

    def __init__(self, at: set[int]) -> None:
        self.at, self.calls = at, 0

    def __call__(self, outputs, targets):  # set on the class, it is not bound: no task argument
        loss = (outputs - targets) ** 2
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            self.calls += 1
            if self.calls in self.at:
                loss = loss * float("nan")
        return loss


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


CONFIG = lt.TrainConfig(epochs=2, batch_size=16, lr=0.01, milestones=(), detach_epoch=1, channels_last=False)


def test_a_nan_stops_the_run_naming_where_and_keeps_every_file(tmp_path, monkeypatch):
    # Cycle 0: 20 labels in 2 batches x 2 epochs = calls 1-4; cycle 1 (30 labels): call 6 is epoch 0, batch 1.
    monkeypatch.setattr(ToyRegression, "per_sample_loss", Poisoner({6}))
    task, out = ToyRegression(), tmp_path / "run"
    saved = {}
    with pytest.raises(lt.NonFiniteLossError, match=r"non-finite loss nan at cycle 1, epoch 0, batch 1 ") as error:
        lt.run_active_learning(task, make_vectors(200), make_vectors(40, seed=1), out, cycles=3,
                               initial_size=20, budget=10, train_config=CONFIG,
                               on_cycle=lambda record: saved.update(snapshot(out)))
    assert "skip_nonfinite" in str(error.value)
    assert snapshot(out) == saved  # cycle 0's checkpoint, selection, pool.json and metrics untouched
    assert not (lt.cycle_dir(out, 1) / "checkpoint.pt").exists()
    assert lt.Pool.load(out / "pool.json").meta["completed_cycles"] == 1
    lt.load_checkpoint(lt.cycle_dir(out, 0) / "checkpoint.pt", task)


def test_skipping_counts_the_batch_and_trains_on(monkeypatch, caplog):
    monkeypatch.setattr(ToyRegression, "per_sample_loss", Poisoner({2}))
    task = ToyRegression()
    model = lt.build_loss_model(task)
    with caplog.at_level(logging.WARNING):
        history = lt.train(task, model, make_vectors(32), CONFIG.replace(skip_nonfinite=True), context="cycle 4")
    assert [record["nonfinite_batches"] for record in history] == [1, 0]
    assert "skipping the batch: non-finite loss nan at cycle 4, epoch 0, batch 1" in caplog.text
    assert "cycle 4: skipped 1 batches" in caplog.text
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(record["target_loss"] == record["target_loss"] for record in history)  # no NaN averaged in


def test_an_epoch_of_only_nonfinite_batches_is_an_error(monkeypatch):
    monkeypatch.setattr(ToyRegression, "per_sample_loss", Poisoner({1, 2}))
    task = ToyRegression()
    with pytest.raises(lt.NonFiniteLossError, match=r"every batch of cycle 2, epoch 0 .*2 skipped"):
        lt.train(task, lt.build_loss_model(task), make_vectors(32), CONFIG.replace(skip_nonfinite=True),
                 context="cycle 2")


def test_the_cli_names_the_nan_and_resumes_past_it_with_skip_nonfinite(tmp_path, monkeypatch, capsys, caplog):
    poison = Poisoner({1})
    monkeypatch.setattr(ToyRegression, "per_sample_loss", poison)
    out = tmp_path / "run"
    args = ["--task", "toy_regression", "--data", "vectors", "--cycles", "2", "--out", str(out)]
    assert train_tool.main(args) == 2
    assert "error: non-finite loss nan at cycle 0, epoch 0, batch 0" in capsys.readouterr().err
    poison.calls = 0  # the same batch goes bad again on resume
    with caplog.at_level(logging.WARNING):
        assert train_tool.main(args + ["--resume", "--skip-nonfinite"]) == 0
    assert "skipping the batch: non-finite loss nan at cycle 0, epoch 0, batch 0" in caplog.text
    assert json.loads((out / "config.json").read_text())["task"] == "toy_regression"
    assert [record["cycle"] for record in lt.read_metrics(out)] == [0, 1]


def test_skip_nonfinite_reaches_the_train_config():
    resolved = resolve(Experiment(task="toy_regression", data="vectors", skip_nonfinite=True))
    assert resolved.train_config.skip_nonfinite is True
    assert resolve(Experiment(task="toy_regression", data="vectors")).train_config.skip_nonfinite is False

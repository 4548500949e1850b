import json

import pytest

import lossal_tasks as lt
from conftest import TINY_TRAIN, make_vectors

CONFIG = TINY_TRAIN.replace(channels_last=False, epochs=2, batch_size=8)


class Stop(Exception):
    pass


def run(toy_task, out, resume=False, on_cycle=None, cycles=4, seed=0, strategy="learning_loss"):
    return lt.run_active_learning(toy_task, make_vectors(120), make_vectors(30, seed=9), out, cycles=cycles,
                                  initial_size=10, budget=7, strategy=strategy, subset_size=40,
                                  train_config=CONFIG, seed=seed, model_options={"dim": 4},
                                  resume=resume, on_cycle=on_cycle)


def test_run_directory_layout_and_records(toy_task, tmp_path):
    records = run(toy_task, tmp_path / "run")
    assert [r["cycle"] for r in records] == [0, 1, 2, 3]
    assert [r["labeled"] for r in records] == [10, 17, 24, 31]
    assert all("ranking_accuracy" in r and "mse" in r for r in records)
    assert lt.read_metrics(tmp_path / "run") == records
    pool = lt.Pool.load(tmp_path / "run" / "pool.json")
    assert pool.num_labeled == 31 and pool.meta["completed_cycles"] == 4
    assert sorted(set(pool.cycles().values())) == [0, 1, 2, 3]
    for cycle in range(4):
        assert (lt.cycle_dir(tmp_path / "run", cycle) / "checkpoint.pt").exists()
    selections = [json.loads((lt.cycle_dir(tmp_path / "run", c) / "selection.json").read_text()) for c in range(3)]
    assert [s["indices"] for s in selections] == [[i for i, c in pool.cycles().items() if c == k + 1]
                                                  for k in range(3)]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"] == "toy_regression" and config["loop"]["budget"] == 7
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_same_seed_same_selection_other_seed_differs(toy_task, tmp_path):
    first = run(toy_task, tmp_path / "a", cycles=2)
    second = run(toy_task, tmp_path / "b", cycles=2)
    other = run(toy_task, tmp_path / "c", cycles=2, seed=1)
    pools = [lt.Pool.load(tmp_path / name / "pool.json").labeled for name in "abc"]
    assert pools[0] == pools[1] != pools[2]
    assert [r["mse"] for r in first] == [r["mse"] for r in second]


@pytest.mark.parametrize("stop_after", [0, 2])
def test_run_killed_between_cycles_resumes_to_the_same_pool(toy_task, tmp_path, stop_after):
    run(toy_task, tmp_path / "whole")

    def stop(record):
        if record["cycle"] == stop_after:
            raise Stop

    with pytest.raises(Stop):
        run(toy_task, tmp_path / "killed", on_cycle=stop)
    records = run(toy_task, tmp_path / "killed", resume=True)
    whole = lt.Pool.load(tmp_path / "whole" / "pool.json")
    resumed = lt.Pool.load(tmp_path / "killed" / "pool.json")
    assert resumed == whole
    assert [r["cycle"] for r in records] == [0, 1, 2, 3]
    assert [r["mse"] for r in records] == [r["mse"] for r in lt.read_metrics(tmp_path / "whole")]


def test_run_killed_inside_a_cycle_resumes_to_the_same_pool(toy_task, tmp_path, monkeypatch):
    """A crash after the checkpoint and selection of cycle 1 but before pool.json is updated."""
    run(toy_task, tmp_path / "whole")
    original = lt.Pool.save
    calls = {"n": 0}

    def crash_on_third_save(self, path):
        calls["n"] += 1
        if calls["n"] == 3:  # initial pool, after cycle 0, after cycle 1 (crash)
            raise Stop
        original(self, path)

    monkeypatch.setattr(lt.Pool, "save", crash_on_third_save)
    with pytest.raises(Stop):
        run(toy_task, tmp_path / "killed")
    monkeypatch.setattr(lt.Pool, "save", original)
    assert lt.Pool.load(tmp_path / "killed" / "pool.json").meta["completed_cycles"] == 1
    run(toy_task, tmp_path / "killed", resume=True)
    assert lt.Pool.load(tmp_path / "killed" / "pool.json") == lt.Pool.load(tmp_path / "whole" / "pool.json")
    assert [r["cycle"] for r in lt.read_metrics(tmp_path / "killed")] == [0, 1, 2, 3]


def test_existing_run_needs_resume_and_resume_needs_a_run(toy_task, tmp_path):
    run(toy_task, tmp_path / "run", cycles=1)
    with pytest.raises(lt.RunStateError, match="already holds a run; pass --resume"):
        run(toy_task, tmp_path / "run", cycles=1)
    with pytest.raises(lt.RunStateError, match="not a lossal run directory"):
        run(toy_task, tmp_path / "empty", resume=True)
    with pytest.raises(lt.RunStateError, match=r"settings \['loop'\] differ"):
        run(toy_task, tmp_path / "run", cycles=3, resume=True)


def test_loop_rejects_bad_settings(toy_task, tmp_path):
    for kwargs, message in (({"cycles": 0}, "cycles"), ({"budget": -1}, "budget"),
                            ({"initial_size": 500}, "initial_size 500 is larger than the pool")):
        settings = dict(cycles=2, initial_size=10, budget=5) | kwargs
        with pytest.raises(lt.ConfigError, match=message):
            lt.run_active_learning(toy_task, make_vectors(100), make_vectors(10), tmp_path / "x",
                                   train_config=CONFIG, **settings)
    with pytest.raises(lt.ConfigError, match="unknown strategy"):
        run(toy_task, tmp_path / "y", strategy="nope")


def test_budget_larger_than_remaining_pool_labels_everything(toy_task, tmp_path):
    records = lt.run_active_learning(toy_task, make_vectors(25), make_vectors(10), tmp_path / "r", cycles=4,
                                     initial_size=10, budget=10, train_config=CONFIG)
    assert [r["labeled"] for r in records] == [10, 20, 25, 25]
    assert sorted(lt.Pool.load(tmp_path / "r" / "pool.json").labeled) == list(range(25))

"""torchrun: 2 CPU processes (gloo) pick exactly what one process picks; only rank 0 writes.

One torchrun launch (about 20 s on 2 cores, most of it importing torch twice) does all the
distributed work: it trains a fresh 2-cycle run with DistributedDataParallel, and scores the pool of
a run trained here in a single process with every strategy. The single-process selections are made
here, in-process, from the same checkpoint and seed.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lossal_tasks as lt
from conftest import shrink_presets
from lossal_tasks import distributed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402

SMALL = {"data": {"train_size": 300, "test_size": 32, "image_size": 16}, "model": {"width": 8}}
BATCH = 32  # 260 unlabeled candidates: 9 scoring batches, 5 for rank 0 and 4 for rank 1
# (strategy, --subset): learning_loss over the whole pool streams a running top-k per rank; with a
# subset, and for the strategies that need embeddings, every rank gathers all the scores.
ACQUISITIONS = [("learning_loss", 0), ("learning_loss", 150), ("entropy", 0), ("coreset", 0),
                ("learning_loss_diverse", 0), ("random", 0)]
TRAIN = ["--task", "classification", "--epochs", "2", "--initial", "40", "--budget", "10"]


def _name(strategy: str, subset: int) -> str:
    return f"{strategy}-s{subset}"


def _acquire_args(run: Path, out: Path, strategy: str, subset: int) -> list[str]:
    return ["--run", str(run), "--budget", "12", "--strategy", strategy, "--subset", str(subset),
            "--seed", "5", "--batch-size", str(BATCH), "--out", str(out)]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Single-process run and selections, then one torchrun launch; returns paths and its output."""
    base = tmp_path_factory.mktemp("dist")
    single_run = base / "single_run"
    with pytest.MonkeyPatch.context() as patch:
        shrink_presets(patch, "classification", **SMALL)
        assert train_tool.main(TRAIN + ["--cycles", "1", "--out", str(single_run)]) == 0
    for strategy, subset in ACQUISITIONS:
        out = base / "single" / _name(strategy, subset)
        assert acquire_tool.main(_acquire_args(single_run, out, strategy, subset)) == 0

    ddp_run = base / "ddp_run"
    calls = [" ".join(["train", *TRAIN, "--cycles", "2", "--subset", "100", "--out", str(ddp_run)])]
    calls += [" ".join(["acquire", *_acquire_args(single_run, base / "multi" / _name(*pair), *pair)])
              for pair in ACQUISITIONS]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               str(ROOT / "tests" / "dist_runner.py"), "--shrink", json.dumps({"classification": SMALL}),
               "--guard-writes", str(base), *calls]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=base, timeout=600)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return {"base": base, "single_run": single_run, "ddp_run": ddp_run, "stdout": done.stdout,
            "stderr": done.stderr}


@pytest.mark.parametrize("strategy, subset", ACQUISITIONS, ids=[_name(*pair) for pair in ACQUISITIONS])
def test_two_ranks_select_what_one_process_selects(launched, strategy, subset):
    single = json.loads((launched["base"] / "single" / f"{_name(strategy, subset)}.json").read_text())
    multi = json.loads((launched["base"] / "multi" / f"{_name(strategy, subset)}.json").read_text())
    assert multi["num_scored"] == single["num_scored"] == (subset or 260)
    assert [r["dataset_index"] for r in multi["selection"]] == [r["dataset_index"] for r in single["selection"]]
    assert len(single["selection"]) == 12
    single_scores = [r["score"] for r in single["selection"]]
    multi_scores = [r["score"] for r in multi["selection"]]
    if strategy in ("random", "coreset"):  # they score by no loss or uncertainty, so report none
        assert multi_scores == single_scores == [None] * 12
    else:
        assert multi_scores == pytest.approx(single_scores, rel=1e-5, abs=1e-7)


def test_each_rank_scored_its_own_share(launched):
    shares = re.findall(r"rank (\d) of 2 takes items \[(\d+), (\d+)\) of 260", launched["stderr"])
    # Whole batches of 32, contiguous, in rank order: rank 0 the first 5, rank 1 the other 4; once
    # per acquisition of the whole pool that scores anything (all but random).
    scoring = sum(1 for strategy, subset in ACQUISITIONS if strategy != "random" and not subset)
    assert sorted(shares) == [("0", "0", "160")] * scoring + [("1", "160", "260")] * scoring


def test_torchrun_training_writes_one_run_from_rank_0(launched):
    run = launched["ddp_run"]
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == ["config.json", "cycles/cycle_000/checkpoint.pt", "cycles/cycle_000/selection.json",
                     "cycles/cycle_001/checkpoint.pt", "learning_curve.png", "metrics.jsonl", "pool.json"]
    assert not list(launched["base"].rglob("*.tmp"))
    config = json.loads((run / "config.json").read_text())
    # Two epochs with the head's features detached from the second: DDP trains across the detach.
    assert (config["train"]["epochs"], config["train"]["detach_epoch"]) == (2, 1)
    pool = lt.Pool.load(run / "pool.json")
    assert pool.num_labeled == 50 and pool.meta["completed_cycles"] == 2
    selection = json.loads((run / "cycles" / "cycle_000" / "selection.json").read_text())
    assert sorted(selection["indices"]) == sorted(i for i in pool.labeled if pool.cycle_of(i) == 1)
    records = lt.read_metrics(run)
    assert [(r["cycle"], r["labeled"]) for r in records] == [(0, 40), (1, 50)]
    assert all(torch.isfinite(torch.tensor(r["mean_loss"])) for r in records)
    model, _ = lt.load_checkpoint(run / "cycles" / "cycle_001" / "checkpoint.pt", lt.TASKS.build("classification"))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Only rank 0 printed: one table, one line per cycle.
    out = launched["stdout"]
    assert out.count("cycle  labeled") == 1 and out.count("learning curve:") == 1
    assert len(re.findall(r"^\s+[01]\s+(40|50)\s", out, flags=re.M)) == 2
    assert out.count("chose 12 by") == len(ACQUISITIONS)


@pytest.mark.parametrize("count, block, world", [(260, 32, 2), (5, 32, 2), (0, 4, 3), (10, 1, 3), (97, 8, 4)])
def test_shards_cover_everything_once_in_order(count, block, world):
    bounds = [distributed.shard_bounds(count, block, rank, world) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(stop == start for (_, stop), (start, _) in zip(bounds, bounds[1:]))
    assert all(start % block == 0 or start == count for start, _ in bounds)
    sizes = [-(-(stop - start) // block) for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_helpers_are_no_ops():
    rows = torch.arange(12.0).reshape(6, 2)
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard(list(range(7)), block=3) == list(range(7))
    assert distributed.all_gather_rows(rows) is rows
    assert distributed.all_ranks_true(False) is False
    assert distributed.mean_over_ranks([1.5, 2]) == [1.5, 2.0]
    distributed.barrier()
    assert distributed.init_from_env() is False


def test_rank_variable_alone_makes_a_process_a_reader(tmp_path, monkeypatch):
    """A script started by torchrun that never joins the group still has a single writer."""
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main()
    lt.Pool(4).save(tmp_path / "pool.json")
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("RANK", "0")
    lt.Pool(4).save(tmp_path / "pool.json")
    assert [p.name for p in tmp_path.iterdir()] == ["pool.json"]


def test_amp_is_ignored_on_the_cpu(toy_task, caplog):
    """Mixed precision is a CUDA option: on the CPU training runs in float32 and says so."""
    from conftest import make_vectors

    torch.manual_seed(0)
    model = lt.build_loss_model(toy_task, hidden_dim=8)
    config = lt.TrainConfig(epochs=2, batch_size=16, lr=0.01, milestones=(), detach_epoch=1,
                            channels_last=False, amp=True)
    with caplog.at_level("WARNING", logger="lossal_tasks.training"):
        history = lt.train(toy_task, model, make_vectors(48), config)
    assert "mixed precision is used on CUDA only" in caplog.text
    assert all(torch.isfinite(torch.tensor(r["target_loss"])) for r in history)
    assert all(p.dtype == torch.float32 for p in model.parameters())

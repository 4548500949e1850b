"""tools/train.py and tools/acquire.py serve the pose task unchanged."""
import csv
import sys
from pathlib import Path

import pytest

import lossal_tasks as lt
from conftest import shrink_presets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402


@pytest.fixture(autouse=True)
def tiny_pose(monkeypatch):
    """Shrink the pose presets so a CLI run takes seconds."""
    shrink_presets(monkeypatch, "pose", data={"train_size": 40, "test_size": 8, "image_size": 32},
                   model={"stacks": 2, "width": 8, "depth": 2}, train={"batch_size": 8, "eval_batch_size": 16})


def test_train_and_acquire_with_the_pose_task(tmp_path, capsys):
    out = tmp_path / "run"
    arguments = ["--task", "pose", "--epochs", "1", "--cycles", "2", "--initial", "8", "--budget", "4",
                 "--subset", "16", "--out", str(out)]
    assert train_tool.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "pck" in printed and "rank_acc" in printed
    table = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in table] == [["0", "8"], ["1", "12"]]
    assert all(0.0 <= float(row[2]) <= 1.0 and 0.0 <= float(row[3]) <= 1.0 for row in table)

    assert acquire_tool.main(["--run", str(out), "--budget", "3", "--out", str(tmp_path / "pick")]) == 0
    rows = list(csv.DictReader((tmp_path / "pick.csv").open()))
    assert len(rows) == 3 and rows[0]["sample_key"].startswith("synthetic-pose-train-")
    assert not {int(r["dataset_index"]) for r in rows} & set(lt.Pool.load(out / "pool.json").labeled)

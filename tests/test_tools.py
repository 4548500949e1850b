"""The CLIs, called in-process through their main() (one subprocess checks the script entry)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lossal_tasks as lt
from conftest import shrink_presets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402

TINY = ["--task", "classification", "--epochs", "1", "--cycles", "2", "--initial", "12", "--budget", "6",
        "--subset", "30"]


@pytest.fixture(autouse=True)
def small_synthetic(monkeypatch):
    """Shrink the quick preset's generated data so a CLI run takes seconds."""
    shrink_presets(monkeypatch, "classification", data={"train_size": 300, "test_size": 24, "image_size": 16},
                   model={"width": 4})


def test_train_then_acquire(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_tool.main(TINY + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "labeled" in printed and "rank_acc" in printed
    table = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in table] == [["0", "12"], ["1", "18"]]
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert (out / "metrics.jsonl").exists() and (out / "pool.json").exists()

    assert acquire_tool.main(["--run", str(out), "--budget", "5", "--out", str(tmp_path / "pick")]) == 0
    rows = list(csv.DictReader((tmp_path / "pick.csv").open()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    labeled = set(lt.Pool.load(out / "pool.json").labeled)
    assert not {int(r["dataset_index"]) for r in rows} & labeled
    assert rows[0]["sample_key"].startswith("synthetic-train-")
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    saved = json.loads((tmp_path / "pick.json").read_text())
    assert [r["dataset_index"] for r in saved["selection"]] == [int(r["dataset_index"]) for r in rows]


def test_resume_finished_run_and_refuse_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_tool.main(TINY + ["--out", str(out), "--cycles", "1"]) == 0
    assert train_tool.main(TINY + ["--out", str(out), "--cycles", "1"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert train_tool.main(TINY + ["--out", str(out), "--resume"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--task", "segmentation"], "unknown task 'segmentation'; known: classification"),
    (["--task", "classification", "--data", "mnist"], "unknown dataset 'mnist' for task 'classification'; known: cifar10, folder, labels, synthetic"),
    (["--task", "classification", "--strategy", "best"], "unknown strategy 'best'; known: coreset, entropy, learning_loss, learning_loss_diverse, random"),
    (["--task", "classification", "--preset", "huge"], "unknown preset 'huge' for task 'classification'; known: paper, quick"),
    (["--task", "classification", "--data", "cifar10", "--root", "/nonexistent/cifar"], "CIFAR-10 folder not found: /nonexistent/cifar"),
    (["--task", "classification", "--data", "folder"], "--root is required for the folder dataset"),
    (["--task", "classification", "--budget", "0"], "budget must be a positive whole number"),
    (["--task", "classification", "--device", "cuda:0"], "CUDA is not available"),
])
def test_train_bad_input_is_named(tmp_path, capsys, args, message):
    if "cuda" in " ".join(args):
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    assert train_tool.main(args + ["--out", str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert message in capsys.readouterr().err


def test_acquire_on_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert acquire_tool.main(["--run", str(tmp_path), "--budget", "3"]) == 2
    assert f"{tmp_path}: not a lossal run directory" in capsys.readouterr().err
    assert acquire_tool.main(["--run", str(tmp_path / "nope"), "--budget", "3"]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_scripts_run_as_commands():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--task", "nope"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr


def test_evaluate_and_plot_tools(tmp_path, capsys):
    import evaluate as evaluate_tool
    import plot as plot_tool

    out = tmp_path / "run"
    assert train_tool.main(TINY + ["--out", str(out), "--cycles", "1"]) == 0
    capsys.readouterr()
    assert evaluate_tool.main(["--run", str(out)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["accuracy"] == lt.read_metrics(out)[0]["accuracy"]
    assert plot_tool.main([str(out), "--out", str(tmp_path / "curve.png")]) == 0
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert plot_tool.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a lossal run directory" in capsys.readouterr().err


def test_acquire_random_writes_empty_scores(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_tool.main(TINY + ["--out", str(out), "--cycles", "1", "--strategy", "random"]) == 0
    assert acquire_tool.main(["--run", str(out), "--budget", "4", "--out", str(tmp_path / "pick")]) == 0
    rows = list(csv.DictReader((tmp_path / "pick.csv").open()))
    assert len(rows) == 4 and all(r["score"] == "" for r in rows)
    saved = json.loads((tmp_path / "pick.json").read_text())
    assert saved["strategy"] == "random" and saved["selection"][0]["score"] is None

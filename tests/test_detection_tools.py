"""tools/train.py and tools/acquire.py on the detection task, unchanged but for --coco-json."""
import csv
import json
import sys
from pathlib import Path

import pytest

import lossal_tasks as lt
from conftest import shrink_presets
from test_detection_data import make_pair

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402

TINY = ["--task", "detection", "--epochs", "1", "--cycles", "2", "--initial", "8", "--budget", "4", "--subset", "20"]


@pytest.fixture(autouse=True)
def small_detection(monkeypatch):
    """Shrink the quick preset so a CLI run takes a few seconds."""
    shrink_presets(monkeypatch, "detection", data={"train_size": 40, "test_size": 8, "image_size": 64},
                   model={"width": 4}, train={"batch_size": 8, "eval_batch_size": 8})


def test_train_then_acquire_with_a_coco_image_list(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_tool.main(TINY + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ap50" in printed and "rank_acc" in printed
    table = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in table] == [["0", "8"], ["1", "12"]]
    record = lt.read_metrics(out)[-1]
    assert {"map", "ap50", "ap75", "voc07_ap50", "ranking_accuracy"} <= set(record)

    pick = tmp_path / "pick"
    assert acquire_tool.main(["--run", str(out), "--budget", "3", "--out", str(pick), "--coco-json"]) == 0
    rows = list(csv.DictReader(pick.with_suffix(".csv").open()))
    assert [r["sample_key"].startswith("synthetic-train-") and r["sample_key"].endswith(".png") for r in rows] == [True] * 3
    listing = json.loads((tmp_path / "pick.coco.json").read_text())
    assert [image["file_name"] for image in listing["images"]] == [r["sample_key"] for r in rows]
    assert [image["lossal_dataset_index"] for image in listing["images"]] == [int(r["dataset_index"]) for r in rows]
    assert listing["images"][0]["width"] == 64 and listing["annotations"] == []
    assert [c["name"] for c in listing["categories"]][:2] == ["disk", "ring"]
    assert "COCO image list" in capsys.readouterr().out


def test_train_on_a_voc_folder_pair_and_select_file_names(tmp_path, capsys):
    make_pair(tmp_path / "data", count=14)
    out = tmp_path / "run"
    args = ["--task", "detection", "--data", "voc", "--root", str(tmp_path / "data"), "--epochs", "1",
            "--cycles", "1", "--initial", "6", "--budget", "2", "--out", str(out)]
    assert train_tool.main(args) == 0
    assert acquire_tool.main(["--run", str(out), "--budget", "2", "--out", str(tmp_path / "pick")]) == 0
    rows = list(csv.DictReader((tmp_path / "pick.csv").open()))
    assert all(r["sample_key"].startswith("images/img_") for r in rows)


def test_detection_bad_input_is_named(tmp_path, capsys):
    assert train_tool.main(["--task", "detection", "--data", "voc", "--out", str(tmp_path / "x")]) == 2
    assert "--root is required for the voc dataset" in capsys.readouterr().err
    assert train_tool.main(["--task", "detection", "--data", "kitti", "--out", str(tmp_path / "y")]) == 2
    assert "unknown dataset 'kitti' for task 'detection'; known: coco, labels, synthetic, voc" in capsys.readouterr().err

"""A catalogue of bad inputs across the CLIs and loaders. Each case asserts the error type, that the
message names the file, sample or option at fault, and (where a run directory is involved) that the
run's files are byte-for-byte unchanged afterwards."""
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch

import lossal_tasks as lt
from lossal_tasks.datasets.coco import COCODetection
from lossal_tasks.experiment import Experiment, run_experiment
from test_classification import write_cifar, write_image_folder
from test_detection_data import make_coco, make_devkit, voc_xml
from test_pose_loaders import _mpii_record, _write_mpii

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402

TOY = ["--task", "toy_regression", "--data", "vectors"]  # 200 samples; K=20, B=10, 3 cycles


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A finished 2-cycle toy run, copied fresh for each test that damages it."""
    out = tmp_path_factory.mktemp("toy") / "run"
    run_experiment(Experiment(task="toy_regression", data="vectors", cycles=2), out)
    return out


@pytest.fixture
def run_copy(toy_run, tmp_path) -> Path:
    return Path(shutil.copytree(toy_run, tmp_path / "run"))


def cli_error(tool, argv, capsys) -> str:
    """Run a tool's main; it must exit 2 with one ``error: ...`` line (no traceback)."""
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- options (tools/train.py)

OPTION_CASES = [
    # (case, CLI arguments, Experiment fields, error type, message naming the option)
    ("unknown task", ["--task", "segmentation"], {"task": "segmentation"}, lt.ConfigError,
     "unknown task 'segmentation'; known: "),
    ("unknown preset", [*TOY, "--preset", "huge"], {"preset": "huge"}, lt.ConfigError,
     "unknown preset 'huge' for task 'toy_regression'; known: quick"),
    ("unknown strategy", [*TOY, "--strategy", "best"], {"strategy": "best"}, lt.ConfigError,
     "unknown strategy 'best'; known: "),
    ("unknown dataset", ["--task", "toy_regression", "--data", "mnist"], {"data": "mnist"}, lt.ConfigError,
     "unknown dataset 'mnist' for task 'toy_regression'"),
    ("budget 0", [*TOY, "--budget", "0"], {"budget": 0}, lt.ConfigError,
     "budget must be a positive whole number, got 0"),
    ("negative budget", [*TOY, "--budget", "-5"], {"budget": -5}, lt.ConfigError,
     "budget must be a positive whole number, got -5"),
    ("budget larger than the pool", [*TOY, "--budget", "500"], {"budget": 500}, lt.ConfigError,
     "budget 500 is larger than the 180 samples left unlabeled after initial_size 20 (pool of 200)"),
    ("initial set larger than the pool", [*TOY, "--initial", "1000"], {"initial_size": 1000}, lt.ConfigError,
     "initial_size 1000 is larger than the pool of 200 samples"),
    ("zero epochs", [*TOY, "--epochs", "0"], {"epochs": 0}, lt.ConfigError, "--epochs must be at least 1, got 0"),
    ("negative subset", [*TOY, "--subset", "-1"], {"subset_size": -1}, lt.ConfigError,
     "subset_size must be positive or None, got -1"),
    ("zero cycles", [*TOY, "--cycles", "0"], {"cycles": 0}, lt.ConfigError,
     "cycles must be a positive whole number, got 0"),
]


@pytest.mark.parametrize("case, argv, fields, error, message", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option_is_named_and_writes_nothing(case, argv, fields, error, message, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(error) as raised:
        run_experiment(Experiment(**{"task": "toy_regression", "data": "vectors", **fields}), out)
    assert message in str(raised.value)
    assert message in cli_error(train_tool, argv + ["--out", str(out)], capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_a_gpu_is_named(tmp_path, capsys):
    assert "--device cuda: CUDA is not available" in cli_error(
        train_tool, [*TOY, "--device", "cuda", "--out", str(tmp_path / "run")], capsys)


def test_empty_pool_is_an_error():
    with pytest.raises(lt.ConfigError, match="the training pool is empty"):
        lt.run_active_learning(lt.TASKS.build("toy_regression"), torch.utils.data.TensorDataset(torch.zeros(0, 4)),
                               None, "/nonexistent/never-written", cycles=2, initial_size=1, budget=1)


def test_empty_image_folder_is_named(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(lt.BadDataError, match=r"photos: no class folders .* the pool would be empty"):
        lt.build_datasets("classification", "folder", root=str(tmp_path / "photos"))


# ---------------------------------------------------------------- run directories

def test_existing_run_without_resume_is_refused(run_copy, capsys):
    before = snapshot(run_copy)
    assert "already holds a run; pass --resume" in cli_error(train_tool, [*TOY, "--out", str(run_copy)], capsys)
    assert snapshot(run_copy) == before


def test_run_directory_of_another_task(run_copy, capsys):
    before = snapshot(run_copy)
    with pytest.raises(lt.RunStateError, match=f"{run_copy}: run is for task 'toy_regression', not 'classification'"):
        run_experiment(Experiment(task="classification"), run_copy, resume=True)
    assert "run is for task 'toy_regression', not 'classification'" in cli_error(
        train_tool, ["--task", "classification", "--out", str(run_copy), "--resume"], capsys)
    assert snapshot(run_copy) == before


def test_checkpoint_of_another_task(run_copy):
    checkpoint = lt.cycle_dir(run_copy, 1) / "checkpoint.pt"
    with pytest.raises(lt.RunStateError, match=f"{checkpoint}: checkpoint is for task 'toy_regression', "
                                               "not 'classification'"):
        lt.load_checkpoint(checkpoint, lt.TASKS.build("classification"))


def test_checkpoint_of_another_task_inside_a_run(run_copy, capsys):
    """A classification checkpoint dropped into the toy run: acquire names it and writes nothing."""
    task = lt.TASKS.build("classification")
    checkpoint = lt.cycle_dir(run_copy, 1) / "checkpoint.pt"
    lt.save_checkpoint(checkpoint, task, lt.build_loss_model(task, {"width": 4}), {"width": 4})
    before = snapshot(run_copy)
    message = cli_error(acquire_tool, ["--run", str(run_copy), "--budget", "3"], capsys)
    assert f"{checkpoint}: checkpoint is for task 'classification', not 'toy_regression'" in message
    assert snapshot(run_copy) == before


def test_truncated_checkpoint(run_copy, capsys):
    checkpoint = lt.cycle_dir(run_copy, 1) / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    before = snapshot(run_copy)
    with pytest.raises(lt.RunStateError, match=f"{checkpoint}: cannot read checkpoint"):
        lt.open_run(run_copy)
    assert f"{checkpoint}: cannot read checkpoint" in cli_error(
        acquire_tool, ["--run", str(run_copy), "--budget", "3"], capsys)
    assert snapshot(run_copy) == before


def test_malformed_pool_json(run_copy, capsys):
    pool = run_copy / "pool.json"
    pool.write_text(pool.read_text()[:-30])
    before = snapshot(run_copy)
    with pytest.raises(lt.RunStateError, match=f"{pool}: malformed pool JSON"):
        lt.Pool.load(pool)
    assert f"{pool}: malformed pool JSON" in cli_error(acquire_tool, ["--run", str(run_copy), "--budget", "3"], capsys)
    assert f"{pool}: malformed pool JSON" in cli_error(train_tool, [*TOY, "--out", str(run_copy), "--resume"], capsys)
    assert snapshot(run_copy) == before


def test_duplicate_sample_in_pool_json(run_copy, capsys):
    pool = run_copy / "pool.json"
    data = json.loads(pool.read_text())
    data["labeled"].append(data["labeled"][0])
    data["cycles"].append(1)
    pool.write_text(json.dumps(data))
    before = snapshot(run_copy)
    message = cli_error(train_tool, [*TOY, "--out", str(run_copy), "--resume"], capsys)
    assert f"{pool}: Pool.add: indices [{data['labeled'][0]}] are labeled already" in message
    assert snapshot(run_copy) == before


def test_pool_of_another_size(run_copy, capsys):
    pool = run_copy / "pool.json"
    data = json.loads(pool.read_text())
    data["size"] = 150
    kept = [k for k, index in enumerate(data["labeled"]) if index < 150]
    data["labeled"], data["cycles"] = [data["labeled"][k] for k in kept], [data["cycles"][k] for k in kept]
    pool.write_text(json.dumps(data))
    before = snapshot(run_copy)
    assert "pool of 150 samples, dataset has 200" in cli_error(
        train_tool, [*TOY, "--out", str(run_copy), "--resume"], capsys)
    assert snapshot(run_copy) == before


def test_malformed_config_json(run_copy, capsys):
    config = run_copy / "config.json"
    config.write_text("{\"task\": ")
    before = snapshot(run_copy)
    assert f"{config}: malformed JSON" in cli_error(acquire_tool, ["--run", str(run_copy), "--budget", "3"], capsys)
    assert f"{config}: malformed JSON" in cli_error(train_tool, [*TOY, "--out", str(run_copy), "--resume"], capsys)
    assert snapshot(run_copy) == before


def test_malformed_metrics_line(run_copy, capsys):
    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text(lines[0] + "\n" + lines[1][:20] + "\n")
    before = snapshot(run_copy)
    with pytest.raises(lt.RunStateError, match=f"{metrics}:2: malformed metrics line"):
        lt.read_metrics(run_copy)
    assert f"{metrics}:2: malformed metrics line" in cli_error(
        acquire_tool, ["--run", str(run_copy), "--budget", "3"], capsys)
    assert snapshot(run_copy) == before


def test_resume_with_other_settings(run_copy):
    before = snapshot(run_copy)
    with pytest.raises(lt.RunStateError, match=r"settings \['loop', .*\] differ from the run being resumed"):
        lt.run_active_learning(lt.TASKS.build("toy_regression"), lt.build_datasets("toy_regression", "vectors").train,
                               None, run_copy, cycles=5, initial_size=20, budget=10, resume=True)
    assert snapshot(run_copy) == before


def test_missing_run_directory(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert f"{missing}: run directory not found" in cli_error(acquire_tool, ["--run", str(missing), "--budget", "3"],
                                                               capsys)
    assert f"{missing}: not a lossal run directory" in cli_error(
        train_tool, [*TOY, "--out", str(missing), "--resume"], capsys)
    assert not missing.exists()


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_acquire_budget_zero_or_negative(run_copy, capsys, budget):
    before = snapshot(run_copy)
    assert f"budget must be a positive whole number, got {budget}" in cli_error(
        acquire_tool, ["--run", str(run_copy), "--budget", budget], capsys)
    with pytest.raises(lt.ConfigError, match=f"got {budget}"):
        run = lt.open_run(run_copy)
        lt.acquire(run.model, run.task, run.data.train, run.pool.unlabeled, int(budget))
    assert snapshot(run_copy) == before


def test_acquire_unknown_strategy(run_copy, capsys):
    before = snapshot(run_copy)
    assert "unknown strategy 'oracle'" in cli_error(
        acquire_tool, ["--run", str(run_copy), "--budget", "3", "--strategy", "oracle"], capsys)
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------- data files (loaders)

def test_corrupt_image(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = lt.build_datasets("classification", "folder", root=str(tmp_path), test_fraction=0.0).train
    position = [data.sample_key(i) for i in range(len(data))].index("dog/broken.png")
    with pytest.raises(lt.BadDataError, match=r"dog/broken\.png: corrupt or unreadable image"):
        data[position]


def test_truncated_image(tmp_path):
    write_image_folder(tmp_path, size=64)
    image = tmp_path / "cat" / "cat1.png"
    image.write_bytes(image.read_bytes()[:300])
    data = lt.build_datasets("classification", "folder", root=str(tmp_path), test_fraction=0.0).train
    position = [data.sample_key(i) for i in range(len(data))].index("cat/cat1.png")
    with pytest.raises(lt.BadDataError, match=r"cat/cat1\.png: corrupt or unreadable image"):
        data[position]


def test_corrupt_cifar_batch(tmp_path):
    write_cifar(tmp_path, corrupt="data_batch_3")
    with pytest.raises(lt.BadDataError, match="data_batch_3: not a readable CIFAR-10 batch"):
        lt.build_datasets("classification", "cifar10", root=str(tmp_path))


def test_missing_image_file(tmp_path):
    folder = make_devkit(tmp_path)
    (folder / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(lt.BadDataError, match=r"000002\.jpg \(sample 1, annotated in .*000002\.xml\): "
                                              "image file not found"):
        lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=24)


def test_malformed_xml(tmp_path):
    folder = make_devkit(tmp_path)
    xml = folder / "Annotations" / "000002.xml"
    xml.write_text(xml.read_text()[:120])
    with pytest.raises(lt.BadDataError, match=r"000002\.xml \(sample 1\): malformed or truncated XML"):
        lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=24)


def test_unknown_class(tmp_path):
    folder = make_devkit(tmp_path)
    (folder / "Annotations" / "000001.xml").write_text(voc_xml("000001.jpg", [("unicorn", (1, 1, 9, 9), False)]))
    with pytest.raises(lt.BadDataError, match=r"000001\.xml \(sample 0\), object 0: unknown class 'unicorn'"):
        lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=24)


def test_box_outside_the_image_and_degenerate_box_are_repaired_counted_and_named(tmp_path, caplog):
    """By design (DESIGN.md: nothing silently dropped) these are repairs, not errors: a box past the
    border is clipped, a zero-area box dropped, and each is counted and logged with file and sample."""
    folder = make_devkit(tmp_path)
    objects = [("dog", (5, 6, 70, 30), False), ("cat", (12, 10, 10, 20), False)]
    (folder / "Annotations" / "000001.xml").write_text(voc_xml("000001.jpg", objects))
    with caplog.at_level(logging.WARNING):
        splits = lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=None)
    assert (splits.train.repairs.clipped, splits.train.repairs.dropped) == (1, 1)
    assert "000001.xml (sample 0): object 1" in caplog.text and "degenerate" in caplog.text
    assert "000001.xml (sample 0): object 0" in caplog.text


def test_malformed_json(tmp_path):
    path = make_coco(tmp_path)
    path.write_text(path.read_text()[:-40])
    with pytest.raises(lt.BadDataError, match=r"instances_train2017\.json: malformed JSON"):
        COCODetection(path, tmp_path / "train2017")


def test_duplicate_image_ids(tmp_path):
    path = make_coco(tmp_path)
    data = json.loads(path.read_text())
    data["images"][2]["id"] = 101
    path.write_text(json.dumps(data))
    with pytest.raises(lt.BadDataError, match=r"instances_train2017\.json: duplicate image id 101 \(samples 1 and 2: "
                                              r"'000000000101\.jpg', '000000000102\.jpg'\)"):
        COCODetection(path, tmp_path / "train2017")


def test_unknown_category_id(tmp_path):
    path = make_coco(tmp_path, [{"id": 9, "image_id": 100, "category_id": 5, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(lt.BadDataError, match=r"annotation 9 \(sample 0\): unknown category_id 5"):
        COCODetection(path, tmp_path / "train2017")


def test_wrong_joint_count(tmp_path):
    _write_mpii(tmp_path, [_mpii_record(joints=14)])
    with pytest.raises(lt.BadDataError, match=r"train\.json, record 0 \(image a\.png\): 14 joints, MPII has 16"):
        lt.build_datasets("pose", "mpii", root=str(tmp_path))


def test_pose_image_missing(tmp_path):
    _write_mpii(tmp_path, [_mpii_record(), _mpii_record(image="gone.png")])
    with pytest.raises(lt.BadDataError, match=r"gone\.png: image file not found.*record 1"):
        lt.build_datasets("pose", "mpii", root=str(tmp_path))

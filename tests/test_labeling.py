"""The real labeling loop: importing annotations people wrote, their checks, and the tools around it."""
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import lossal_tasks as lt
from conftest import shrink_presets
from lossal_tasks.labeling import import_labels, run_labeling_cycle

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402

CLASSES = ("red", "green", "blue")


def write_image(path: Path, colour: int, seed: int, size: int = 16) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    pixels[4:12, 4:12, colour] = 220
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_project(root: Path, count: int = 18, test: int = 0) -> list[str]:
    """A classification project: ``count`` images in images/ (in two sub-folders), classes.txt,
    and ``test`` labeled images under test/ with test.csv. Returns the pool's relative paths."""
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("# the project's categories\n" + "\n".join(CLASSES) + "\n")
    keys = []
    for i in range(count):
        key = f"{'a' if i % 2 else 'b'}/img_{i:03d}.png"
        write_image(root / "images" / key, i % 3, i)
        keys.append(key)
    if test:
        rows = ["path,class"]
        for i in range(test):
            write_image(root / "test" / f"t{i}.png", i % 3, 1000 + i)
            rows.append(f"t{i}.png,{CLASSES[i % 3]}")
        (root / "test.csv").write_text("\n".join(rows) + "\n")
    return sorted(keys)


def label_of(key: str) -> str:
    return CLASSES[int(key.split("_")[1].split(".")[0]) % 3]


def write_labels(root: Path, keys, mode: str = "w") -> None:
    with open(root / "labels.csv", mode, newline="") as stream:
        if mode == "w":
            stream.write("path,class,annotator\n")
        for key in keys:
            stream.write(f"{key},{label_of(key)},test\n")


def project(root: Path):
    return lt.build_datasets("classification", "labels", root=str(root), image_size=16)


# ----------------------------------------------------------------------------- import checks


@pytest.mark.parametrize("bad_row, words", [
    ("b/missing.png,red", ["unknown image 'b/missing.png'"]),
    ("a/img_001.png,green", ["duplicate annotation of image 'a/img_001.png'", "labels.csv:2"]),
    ("b/img_010.png,purple", ["wrong category 'purple'", "b/img_010.png"]),
])
def test_csv_import_checks_name_file_and_entry(tmp_path, bad_row, words):
    keys = make_project(tmp_path)
    write_labels(tmp_path, keys[:4])
    data = project(tmp_path)
    pool = lt.Pool(len(data.train))
    import_labels(data.train, pool, 0)
    with open(tmp_path / "labels.csv", "a") as stream:
        stream.write(bad_row + "\n")
    with pytest.raises(lt.BadDataError) as raised:
        import_labels(data.train, pool, 1)
    message = str(raised.value)
    assert f"{tmp_path / 'labels.csv'}:6" in message          # the file and the offending line
    for word in words:
        assert word in message
    assert pool.num_labeled == 4                                # nothing joined
    with pytest.raises(lt.BadDataError, match="labels.csv:6"):  # and building the dataset says the same
        project(tmp_path)


def test_csv_without_header_is_refused(tmp_path):
    make_project(tmp_path, count=3)
    (tmp_path / "labels.csv").write_text("a/img_001.png,red\n")
    with pytest.raises(lt.BadDataError, match="needs a header row with the columns path and class"):
        project(tmp_path)


def test_reimport_is_a_no_op_and_cycles_are_recorded(tmp_path, caplog):
    keys = make_project(tmp_path)
    write_labels(tmp_path, keys[:5])
    train_set = project(tmp_path).train
    pool = lt.Pool(len(train_set))
    first = import_labels(train_set, pool, 0, tmp_path / "run")
    assert sorted(first.joined) == [0, 1, 2, 3, 4] and pool.cycles() == {i: 0 for i in range(5)}
    before = json.dumps(pool.to_dict(), sort_keys=True)
    again = import_labels(train_set, pool, 0, tmp_path / "run")
    assert again.joined == [] and not again.changed
    assert json.dumps(pool.to_dict(), sort_keys=True) == before

    lt.labeling.record_selection(tmp_path / "run", 0, {"indices": [9, 10]})
    write_labels(tmp_path, [keys[9], keys[12]], mode="a")        # 12 was never asked for
    with caplog.at_level(logging.INFO, logger="lossal_tasks.labeling"):
        second = import_labels(train_set, pool, 1, tmp_path / "run")
    assert second.joined == [9, 12] and second.unselected == [12]
    assert pool.cycle_of(9) == 1 and pool.cycle_of(12) == 1 and pool.cycle_of(4) == 0
    assert "no acquisition asked for" in caplog.text and keys[12] in caplog.text
    assert [entry["joined"] for entry in pool.meta["imports"]] == [5, 2]
    assert pool.meta["categories"] == list(CLASSES)


def test_withdrawn_label_and_changed_folder_are_refused(tmp_path):
    keys = make_project(tmp_path, count=6)
    write_labels(tmp_path, keys[:3])
    train_set = project(tmp_path).train
    pool = lt.Pool(len(train_set))
    import_labels(train_set, pool, 0, tmp_path / "run")
    write_labels(tmp_path, keys[1:3])
    with pytest.raises(lt.BadDataError, match=f"image '{keys[0]}' .*joined the pool in cycle 0 but has no annotation"):
        import_labels(train_set, pool, 1, tmp_path / "run")
    write_image(tmp_path / "images" / "a" / "new.png", 0, 99)
    with pytest.raises(lt.RunStateError, match=r"images folder changed since the run started \(1 added"):
        import_labels(project(tmp_path).train, pool, 1, tmp_path / "run")


# ----------------------------------------------------------------------------- detection sources


def make_detection_project(root: Path, count: int = 6) -> list[str]:
    keys = [f"img_{i}.png" for i in range(count)]
    for i, key in enumerate(keys):
        write_image(root / "images" / key, i % 3, i, size=32)
    return keys


def coco_file(keys, **changes) -> dict:
    data = {"images": [{"id": i + 1, "file_name": key, "width": 32, "height": 32} for i, key in enumerate(keys)],
            "annotations": [{"id": 10 + i, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [4, 4, 8, 8],
                             "iscrowd": 0, "area": 64} for i in range(len(keys))],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    data.update(changes)
    return data


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["images"].append({"id": 99, "file_name": "elsewhere.png"}),
     ["image id 99", "unknown image 'elsewhere.png'"]),
    (lambda d: d["images"].append({"id": 99, "file_name": "img_0.png"}),
     ["image id 99", "duplicate annotation of image 'img_0.png'"]),
    (lambda d: d["images"].append({"id": 2, "file_name": "img_5.png"}),
     ["images[3]", "duplicate image id 2", "first at"]),
    (lambda d: d["annotations"].append({**d["annotations"][0], "image_id": 2}),
     ["annotations[3]", "duplicate annotation id 10"]),
    (lambda d: d["annotations"].append({**d["annotations"][0], "id": 50, "category_id": 7}),
     ["annotation 50", "unknown category_id 7"]),
])
def test_coco_import_checks_name_file_and_entry(tmp_path, edit, words):
    keys = make_detection_project(tmp_path)
    data = coco_file(keys[:3])
    edit(data)
    (tmp_path / "labels.json").write_text(json.dumps(data))
    with pytest.raises(lt.BadDataError) as raised:
        lt.build_datasets("detection", "labels", root=str(tmp_path), image_size=32)
    message = str(raised.value)
    assert str(tmp_path / "labels.json") in message
    for word in words:
        assert word in message


def test_coco_categories_are_fixed_at_the_first_import(tmp_path):
    keys = make_detection_project(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps(coco_file(keys[:2])))
    train_set = lt.build_datasets("detection", "labels", root=str(tmp_path), image_size=32).train
    pool = lt.Pool(len(train_set))
    import_labels(train_set, pool, 0)
    assert pool.labeled == [0, 1] and train_set[0][1]["labels"].tolist() == [0] and len(train_set[5][1]["labels"]) == 0
    grown = coco_file(keys[:3], categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cow"}])
    (tmp_path / "labels.json").write_text(json.dumps(grown))
    with pytest.raises(lt.BadDataError, match=r"labels.json: wrong categories: .*\['cat', 'dog'\], now \['cat', 'dog', 'cow'\]"):
        import_labels(train_set, pool, 1)


def voc_xml(filename: str, names) -> str:
    objects = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>3</xmin><ymin>3</ymin>"
                      f"<xmax>12</xmax><ymax>12</ymax></bndbox></object>" for n in names)
    return (f"<annotation><filename>{filename}</filename><size><width>32</width><height>32</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


@pytest.mark.parametrize("name, text, words", [
    ("z.xml", voc_xml("nowhere.png", ["cat"]), ["z.xml", "unknown image 'nowhere.png'"]),
    ("z.xml", voc_xml("img_0.png", ["dog"]), ["z.xml", "duplicate annotation of image 'img_0.png'", "a.xml"]),
    ("z.xml", voc_xml("img_2.png", ["cow"]), ["z.xml", "object 0: unknown class 'cow'"]),
])
def test_voc_import_checks_name_file_and_entry(tmp_path, name, text, words):
    make_detection_project(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.xml").write_text(voc_xml("img_0.png", ["cat"]))
    assert lt.build_datasets("detection", "labels", root=str(tmp_path), image_size=32).train.annotated.keys() == {0}
    (tmp_path / "labels" / name).write_text(text)
    with pytest.raises(lt.BadDataError) as raised:
        lt.build_datasets("detection", "labels", root=str(tmp_path), image_size=32)
    for word in words:
        assert word in str(raised.value)


def test_coco_image_list_of_a_detection_project_loads_in_pycocotools(tmp_path):
    keys = make_detection_project(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps(coco_file(keys[:2], categories=[
        {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}], annotations=[])))
    train_set = lt.build_datasets("detection", "labels", root=str(tmp_path), image_size=32).train
    path = lt.export.write_coco_image_list(tmp_path / "pick.coco.json", train_set, [4, 2], [0.5, 0.25])
    coco = COCO(str(path))
    assert [coco.imgs[i]["file_name"] for i in coco.getImgIds()] == ["img_4.png", "img_2.png"]
    assert coco.imgs[5]["width"] == 32 and coco.loadCats(coco.getCatIds())[1] == {"id": 7, "name": "dog"}


# ----------------------------------------------------------------------------- the loop


def test_cycle_without_test_annotations_is_trained_but_not_evaluated(tmp_path, caplog):
    keys = make_project(tmp_path, count=10)
    write_labels(tmp_path, keys[:6])
    task = lt.TASKS.build("classification")
    data = project(tmp_path)
    assert len(data.test) == 0
    config = lt.TrainConfig(epochs=1, batch_size=8, lr=0.01, optimizer="adam", milestones=(), detach_epoch=None,
                            eval_batch_size=8)
    with caplog.at_level(logging.WARNING):
        records = run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config,
                                     model_options={"width": 8, "num_classes": 3})
    assert records[0]["accuracy"] is None and records[0]["labeled"] == 6 and records[0]["joined"] == 6
    assert "cycle 0 is not evaluated" in caplog.text
    assert (tmp_path / "run" / "cycles" / "cycle_000" / "checkpoint.pt").exists()
    with pytest.raises(lt.RunStateError, match="already holds a run"):
        run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config)
    options = {"width": 8, "num_classes": 3}
    assert len(run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config, model_options=options,
                                  resume=True)) == 1            # unchanged annotations: no new cycle
    text = (tmp_path / "labels.csv").read_text()
    (tmp_path / "labels.csv").write_text(text.replace(f"{keys[0]},{label_of(keys[0])}", f"{keys[0]},blue", 1))
    records = run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config, model_options=options,
                                 resume=True)                   # a corrected label: a new cycle, nobody joins
    assert [(r["cycle"], r["labeled"], r["joined"]) for r in records] == [(0, 6, 6), (1, 6, 0)]
    assert data.train[0][1] == 2


def test_only_the_writer_rank_clears_half_written_files_of_a_labeling_run(tmp_path, monkeypatch):
    """Under torchrun a reader rank must not delete the temp file rank 0 is writing."""
    keys = make_project(tmp_path, count=10)
    write_labels(tmp_path, keys[:6])
    task = lt.TASKS.build("classification")
    data = project(tmp_path)
    config = lt.TrainConfig(epochs=1, batch_size=8, lr=0.01, optimizer="adam", milestones=(), detach_epoch=None,
                            eval_batch_size=8)
    options = {"width": 8, "num_classes": 3}
    run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config, model_options=options)
    being_written = tmp_path / "run" / ".pool.json.abc123.tmp"
    being_written.write_text("{")
    monkeypatch.setenv("RANK", "1")
    run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config, model_options=options, resume=True)
    assert being_written.exists()
    monkeypatch.setenv("RANK", "0")
    run_labeling_cycle(task, data.train, data.test, tmp_path / "run", config, model_options=options, resume=True)
    assert not being_written.exists()


def test_tools_end_to_end_on_a_classification_project(tmp_path, monkeypatch, capsys, caplog):
    shrink_presets(monkeypatch, "classification", data={"image_size": 16}, model={"width": 8},
                   train={"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "milestones": [], "detach_epoch": None})
    keys = make_project(tmp_path / "project", count=18, test=6)
    root, run = tmp_path / "project", tmp_path / "run"
    write_labels(root, keys[:6])
    base = ["--task", "classification"]
    assert train_tool.main(base + ["--data", "labels", "--root", str(root), "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "labeling project" in printed and "18 images" in printed and "6 annotated test images" in printed
    assert [line.split()[:2] for line in printed.splitlines() if line.strip()[:1].isdigit()] == [["0", "6"]]
    assert lt.read_metrics(run)[0]["accuracy"] is not None

    pick = tmp_path / "to_label"
    assert acquire_tool.main(["--run", str(run), "--budget", "4", "--out", str(pick), "--coco-json"]) == 0
    assert "COCO image list" in capsys.readouterr().out
    rows = list(csv.DictReader(pick.with_suffix(".csv").open()))
    chosen = [row["sample_key"] for row in rows]
    assert len(chosen) == 4 and not set(chosen) & set(keys[:6]) and set(chosen) <= set(keys)
    assert all((root / "images" / key).is_file() for key in chosen)        # paths relative to images/
    assert json.loads(pick.with_suffix(".json").read_text())["image_folder"] == str(root / "images")
    coco = COCO(str(tmp_path / "to_label.coco.json"))
    assert [coco.imgs[i]["file_name"] for i in coco.getImgIds()] == chosen
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert all(coco.imgs[i]["width"] == 16 for i in coco.getImgIds())

    extra = next(key for key in keys[6:] if key not in chosen)
    write_labels(root, chosen + [extra], mode="a")                        # annotators append labels
    with caplog.at_level(logging.WARNING):
        assert train_tool.main(base + ["--out", str(run), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert [line.split()[:2] for line in printed.splitlines() if line.strip()[:1].isdigit()] == [["1", "11"]]
    assert "1 of the 5 new labels are for images no acquisition asked for" in caplog.text
    pool = lt.Pool.load(run / "pool.json")
    position = {key: i for i, key in enumerate(keys)}
    assert {pool.cycle_of(position[key]) for key in keys[:6]} == {0}
    assert {pool.cycle_of(position[key]) for key in chosen + [extra]} == {1}
    assert [r["cycle"] for r in lt.read_metrics(run)] == [0, 1]

    caplog.clear()
    assert train_tool.main(base + ["--out", str(run), "--resume"]) == 0     # nothing new: no new cycle
    assert "no new or changed annotations since cycle 1" in caplog.text
    assert [r["cycle"] for r in lt.read_metrics(run)] == [0, 1]
    with open(root / "labels.csv", "a") as stream:
        stream.write("a/nope.png,red\n")
    assert train_tool.main(base + ["--out", str(run), "--resume"]) == 2
    assert "labels.csv:13: unknown image 'a/nope.png'" in capsys.readouterr().err


def test_first_command_without_labels_leaves_no_run_behind(tmp_path, capsys):
    keys = make_project(tmp_path / "project", count=6)
    args = ["--task", "classification", "--data", "labels", "--root", str(tmp_path / "project"),
            "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert train_tool.main(args) == 2
    assert "labels.csv: no annotated images yet" in capsys.readouterr().err
    assert not (tmp_path / "run" / "config.json").exists()
    write_labels(tmp_path / "project", keys[:3])
    assert train_tool.main(args) == 0                      # the same command, now that labels exist
    assert lt.read_metrics(tmp_path / "run")[0]["labeled"] == 3


def test_tools_end_to_end_on_a_coco_detection_project(tmp_path, monkeypatch, capsys):
    shrink_presets(monkeypatch, "detection", data={"image_size": 64}, model={"width": 4},
                   train={"epochs": 1, "batch_size": 4, "eval_batch_size": 8})
    root, run = tmp_path / "project", tmp_path / "run"
    keys = make_detection_project(root, count=9)
    (root / "labels.json").write_text(json.dumps(coco_file(keys[:4])))
    base = ["--task", "detection"]
    assert train_tool.main(base + ["--data", "labels", "--root", str(root), "--out", str(run)]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:4] for row in table] == [["0", "4", "-", "-"]]          # no test annotations: not evaluated

    assert acquire_tool.main(["--run", str(run), "--budget", "3", "--out", str(tmp_path / "pick"), "--coco-json"]) == 0
    listing = COCO(str(tmp_path / "pick.coco.json"))
    chosen = [listing.imgs[i] for i in listing.getImgIds()]
    assert {image["file_name"] for image in chosen} <= set(keys[4:]) and len(chosen) == 3

    labels = json.loads((root / "labels.json").read_text())             # the labeling tool's export
    labels["images"] += chosen
    labels["annotations"] += [{"id": 100 + k, "image_id": image["id"], "category_id": 2, "bbox": [2, 2, 10, 10],
                               "iscrowd": 0, "area": 100} for k, image in enumerate(chosen)]
    (root / "labels.json").write_text(json.dumps(labels))
    assert train_tool.main(base + ["--out", str(run), "--resume"]) == 0
    pool = lt.Pool.load(run / "pool.json")
    assert pool.num_labeled == 7 and sorted(pool.cycles().values()) == [0] * 4 + [1] * 3
    assert {keys[i] for i, cycle in pool.cycles().items() if cycle == 1} == {image["file_name"] for image in chosen}

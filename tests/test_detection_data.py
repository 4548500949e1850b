"""VOC and COCO detection loaders on small files each test writes, including broken ones."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lossal_tasks as lt
from lossal_tasks.datasets.coco import COCODetection
from lossal_tasks.datasets.voc import VOC_CLASSES
from lossal_tasks.export import coco_image_list


def write_image(path: Path, width: int = 48, height: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def voc_xml(filename: str, objects, width: int = 48, height: int = 40) -> str:
    """objects: (name, (xmin, ymin, xmax, ymax) in VOC's 1-based pixels, difficult)."""
    parts = [f"<annotation><filename>{filename}</filename>"
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox>"
                     f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def make_devkit(root: Path, year: str = "2007", stems=("000001", "000002", "000003"), test=("000003",)) -> Path:
    folder = root / "VOCdevkit" / f"VOC{year}"
    (folder / "ImageSets" / "Main").mkdir(parents=True)
    (folder / "Annotations").mkdir(parents=True)
    for k, stem in enumerate(stems):
        write_image(folder / "JPEGImages" / f"{stem}.jpg")
        objects = [("dog", (5, 6, 20, 30), False), ("person", (10, 10, 40, 38), k == 0)]
        (folder / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objects))
    train = [s for s in stems if s not in test]
    (folder / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(train) + "\n")
    (folder / "ImageSets" / "Main" / "test.txt").write_text("\n".join(test) + "\n")
    return folder


def test_voc_devkit_tree_from_any_level(tmp_path):
    folder = make_devkit(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", folder):
        splits = lt.build_datasets("detection", "voc", root=str(root), image_size=24)
        assert (len(splits.train), len(splits.test)) == (2, 1)
        assert splits.train.classes == VOC_CLASSES
        image, target = splits.train[0]
        assert image.shape == (24, 24, 3)
        dog, person = VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")
        assert target["labels"].tolist() == [dog, person] and target["difficult"].tolist() == [False, True]
        # VOC (5, 6, 20, 30) 1-based -> (4, 5, 20, 30) continuous, scaled 24/48 and 24/40
        assert np.allclose(target["boxes"][0], [4 * 0.5, 5 * 0.6, 20 * 0.5, 30 * 0.6])
        assert splits.train.sample_key(0).endswith("JPEGImages/000001.jpg")
        assert splits.test.image_info(0)["width"] == 48


def test_voc_two_years_make_one_train_split(tmp_path):
    make_devkit(tmp_path, "2007")
    make_devkit(tmp_path, "2012", stems=("2012_000001", "2012_000002"), test=())
    splits = lt.build_datasets("detection", "voc", root=str(tmp_path / "VOCdevkit"), image_size=24)
    assert (len(splits.train), len(splits.test)) == (4, 1)


def make_pair(root: Path, count: int = 10, classes=("cat_toy", "mug")) -> None:
    for k in range(count):
        write_image(root / "images" / f"img_{k:02d}.png")
        objects = [(classes[k % len(classes)], (3, 3, 20, 20), False)] if k % 3 else []
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"img_{k:02d}.xml").write_text(voc_xml(f"img_{k:02d}.png", objects))


def test_voc_plain_folder_pair_split_by_seed_with_own_classes(tmp_path):
    make_pair(tmp_path)
    write_image(tmp_path / "images" / "unlabeled.png")       # no XML: logged, not used
    splits = lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=32, test_fraction=0.3)
    assert (len(splits.train), len(splits.test)) == (7, 3)
    assert splits.train.classes == ("cat_toy", "mug")
    keys = {splits.train.sample_key(i) for i in range(7)} | {splits.test.sample_key(i) for i in range(3)}
    assert keys == {f"images/img_{k:02d}.png" for k in range(10)}
    empty = [splits.train[i][1] for i in range(7) if len(splits.train[i][1]["boxes"]) == 0]
    assert empty                                              # images without objects are legal
    again = lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=32, test_fraction=0.3)
    assert [again.test.sample_key(i) for i in range(3)] == [splits.test.sample_key(i) for i in range(3)]


def test_voc_plain_pairs_under_train_and_test(tmp_path):
    make_pair(tmp_path / "train", 4)
    make_pair(tmp_path / "test", 2)
    splits = lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=32)
    assert (len(splits.train), len(splits.test)) == (4, 2)


# A truncated XML file and a missing image file: tests/test_bad_inputs.py (the bad-input catalogue).


def test_voc_box_outside_the_image_and_degenerate_box_are_counted_repairs(tmp_path, caplog):
    folder = make_devkit(tmp_path)
    objects = [("dog", (5, 6, 70, 30), False), ("cat", (12, 10, 10, 20), False), ("bird", (1, 1, 9, 9), False)]
    (folder / "Annotations" / "000001.xml").write_text(voc_xml("000001.jpg", objects))
    splits = lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=None)
    assert (splits.train.repairs.clipped, splits.train.repairs.dropped) == (1, 1)
    target = splits.train[0][1]
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("bird")]
    assert target["boxes"][0].tolist() == [4, 5, 48, 30]
    assert "000001.xml (sample 0): object 1" in caplog.text and "degenerate" in caplog.text


def test_voc_unknown_class_and_missing_field_are_named(tmp_path):
    folder = make_devkit(tmp_path)
    (folder / "Annotations" / "000001.xml").write_text(voc_xml("000001.jpg", [("unicorn", (1, 1, 9, 9), False)]))
    with pytest.raises(lt.BadDataError, match=r"000001\.xml \(sample 0\), object 0: unknown class 'unicorn'"):
        lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=24)
    (folder / "Annotations" / "000001.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin></bndbox></object></annotation>")
    with pytest.raises(lt.BadDataError, match=r"object 0 \(dog\): missing <ymin>"):
        lt.build_datasets("detection", "voc", root=str(tmp_path), image_size=24)


def test_voc_bad_root_is_a_config_error(tmp_path):
    with pytest.raises(lt.ConfigError, match="--root is required"):
        lt.build_datasets("detection", "voc")
    with pytest.raises(lt.ConfigError, match="neither a VOCdevkit"):
        lt.build_datasets("detection", "voc", root=str(tmp_path))


def make_coco(root: Path, annotations=None, images=3) -> Path:
    entries = []
    for k in range(images):
        write_image(root / "train2017" / f"{k + 100:012d}.jpg", 60, 50)
        entries.append({"id": k + 100, "file_name": f"{k + 100:012d}.jpg", "width": 60, "height": 50})
    if annotations is None:
        annotations = [{"id": 1, "image_id": 100, "category_id": 7, "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0},
                       {"id": 2, "image_id": 100, "category_id": 3, "bbox": [30, 20, 10, 10], "area": 100, "iscrowd": 1},
                       {"id": 3, "image_id": 101, "category_id": 3, "bbox": [50, 40, 20, 20], "area": 400, "iscrowd": 0},
                       {"id": 4, "image_id": 101, "category_id": 7, "bbox": [10, 10, 0, 8], "area": 0, "iscrowd": 0}]
    data = {"images": entries, "annotations": annotations,
            "categories": [{"id": 7, "name": "kite"}, {"id": 3, "name": "car"}]}
    path = root / "annotations" / "instances_train2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_json_loader_with_crowd_repairs_and_empty_images(tmp_path):
    path = make_coco(tmp_path)
    data = COCODetection(path, tmp_path / "train2017", image_size=30)
    assert data.classes == ("car", "kite") and data.category_ids == [3, 7]
    image, target = data[0]
    assert image.shape == (30, 30, 3)
    assert target["labels"].tolist() == [1, 0] and target["difficult"].tolist() == [False, True]
    assert np.allclose(target["boxes"][0], [5 * 0.5, 5 * 0.6, 25 * 0.5, 15 * 0.6])
    assert (data.repairs.clipped, data.repairs.dropped) == (1, 1)        # box outside; zero-width box
    assert data[1][1]["boxes"].tolist() == [[25.0, 24.0, 30.0, 30.0]]
    assert len(data[2][1]["boxes"]) == 0                                  # no annotations: legal
    assert data.sample_key(2) == "000000000102.jpg"


def test_coco_splits_from_the_standard_layout(tmp_path):
    make_coco(tmp_path)
    (tmp_path / "val2017").symlink_to(tmp_path / "train2017")
    (tmp_path / "annotations" / "instances_val2017.json").write_text(
        (tmp_path / "annotations" / "instances_train2017.json").read_text())
    splits = lt.build_datasets("detection", "coco", root=str(tmp_path), image_size=32, train_size=5)
    assert (len(splits.train), len(splits.test)) == (3, 3) and splits.test.classes == ("car", "kite")
    listing = coco_image_list(splits.train, [2, 0], scores=[0.5, 0.25])
    assert [(i["id"], i["file_name"], i["width"]) for i in listing["images"]] == [
        (102, "000000000102.jpg", 60), (100, "000000000100.jpg", 60)]
    assert listing["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "kite"}]


def test_coco_broken_files_are_clear_errors(tmp_path):
    path = make_coco(tmp_path)
    (tmp_path / "train2017" / "000000000101.jpg").unlink()
    with pytest.raises(lt.BadDataError, match=r"000000000101\.jpg \(sample 1, image id 101 in .*\): image file not found"):
        COCODetection(path, tmp_path / "train2017")
    path.write_text(path.read_text()[:-40])
    with pytest.raises(lt.BadDataError, match="instances_train2017.json: malformed JSON"):
        COCODetection(path, tmp_path / "train2017")
    make_coco(tmp_path, [{"id": 9, "image_id": 100, "category_id": 5, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(lt.BadDataError, match=r"annotation 9 \(sample 0\): unknown category_id 5"):
        COCODetection(path, tmp_path / "train2017")
    make_coco(tmp_path, [{"id": 9, "image_id": 100, "category_id": 7, "bbox": [1, 1]}])
    with pytest.raises(lt.BadDataError, match=r"annotation 9 \(sample 0\): bbox must be"):
        COCODetection(path, tmp_path / "train2017")

"""MPII (JSON form) and COCO keypoint loaders on small files the tests write."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

import lossal_tasks as lt
from lossal_tasks.datasets.coco_keypoints import COCOKeypoints
from lossal_tasks.datasets.mpii import MPIIPose


def _image(path, width=80, height=60):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(path)


# ---------------------------------------------------------------- MPII


def _mpii_record(image="a.png", joints=16, **changes):
    points = [[20.0 + 2 * j, 15.0 + 2 * j] for j in range(joints)]
    record = {"image": image, "joints": points, "joints_vis": [1] * joints, "center": [40.0, 30.0],
              "scale": 0.2, "head_box": [30.0, 10.0, 40.0, 20.0]}
    record.update(changes)
    return record


def _write_mpii(root, train, valid=None, images=("a.png",)):
    (root / "annot").mkdir(parents=True)
    for name in images:
        _image(root / "images" / name)
    (root / "annot" / "train.json").write_text(json.dumps(train))
    (root / "annot" / "valid.json").write_text(json.dumps(valid if valid is not None else train))
    return root


def test_mpii_loads_crops_and_scales_the_head_box(tmp_path):
    root = _write_mpii(tmp_path, [_mpii_record(), _mpii_record(joints_vis=[0] + [1] * 15)])
    splits = lt.build_datasets("pose", "mpii", root=str(root), image_size=32)
    data = splits.train
    assert len(data) == 2 and data.num_joints == 16 and data.sample_key(1) == "a.png#1"
    sample = data[0]
    assert sample["image"].shape == (32, 32, 3) and sample["keypoints"].shape == (16, 2)
    # Crop side 200 * 0.2 * 1.25 = 50 px around (39.5, 29.5 + 3): joint 0 (19.5, 14.5 continuous).
    scale = 50 / 32
    assert sample["keypoints"][0] == pytest.approx([(19.5 - (39.5 - 25)) / scale, (14.5 - (32.5 - 25)) / scale])
    assert sample["head_size"] == pytest.approx(0.6 * np.hypot(10, 10) / scale)
    assert sample["crop"] == pytest.approx([39.5 - 25, 32.5 - 25, scale])
    assert data[1]["visibility"][0] == 0 and data[1]["visibility"][1] == 2
    images, targets = lt.TASKS.build("pose").collate([data[0], data[1]])
    assert images.shape == (2, 3, 32, 32) and targets["weights"][1, 0] == 0


def test_mpii_missing_image_names_file_and_record(tmp_path):
    root = _write_mpii(tmp_path, [_mpii_record(), _mpii_record(image="gone.png")])
    with pytest.raises(lt.BadDataError, match=r"gone\.png: image file not found.*record 1"):
        lt.build_datasets("pose", "mpii", root=str(root))


def test_mpii_wrong_joint_count_names_file_and_record(tmp_path):
    root = _write_mpii(tmp_path, [_mpii_record(joints=14)])
    with pytest.raises(lt.BadDataError, match=r"train\.json, record 0 \(image a\.png\): 14 joints, MPII has 16"):
        MPIIPose(root / "annot" / "train.json", root / "images")


def test_mpii_joint_outside_the_image_is_repaired_and_counted(tmp_path, caplog):
    record = _mpii_record()
    record["joints"][3] = [500.0, 20.0]  # the image is 80 x 60
    root = _write_mpii(tmp_path, [record, _mpii_record()])
    with caplog.at_level(logging.WARNING):
        data = MPIIPose(root / "annot" / "train.json", root / "images", image_size=32)
    assert data.repaired == 1 and data[0]["visibility"][3] == 0 and data[0]["visibility"][2] == 2
    assert "1 labeled joint(s) outside their image" in caplog.text and "record 0 joint 3" in caplog.text


def test_mpii_malformed_inputs_raise_clear_errors(tmp_path):
    root = _write_mpii(tmp_path, [{"image": "a.png", "joints": [[1, 2]] * 16}])
    with pytest.raises(lt.BadDataError, match=r"record 0: missing \['joints_vis', 'center', 'scale'\]"):
        MPIIPose(root / "annot" / "train.json", root / "images")
    with pytest.raises(lt.ConfigError, match="--root is required"):
        lt.build_datasets("pose", "mpii")
    with pytest.raises(lt.ConfigError, match="annot"):
        lt.build_datasets("pose", "mpii", root=str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- COCO


def _coco_annotation(ann_id, image_id=1, joints=17, **changes):
    keypoints = []
    for j in range(joints):
        keypoints += [10 + 3 * j, 8 + 2 * j, 2]
    annotation = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 900.0,
                  "bbox": [8.0, 6.0, 56.0, 40.0], "num_keypoints": joints, "keypoints": keypoints}
    annotation.update(changes)
    return annotation


def _write_coco(root, annotations, images=({"id": 1, "file_name": "p.png", "width": 80, "height": 60},),
                files=("p.png",)):
    (root / "annotations").mkdir(parents=True)
    for name in files:
        _image(root / "train2017" / name)
        _image(root / "val2017" / name)
    data = {"images": list(images), "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)]}]}
    for split in ("train", "val"):
        (root / "annotations" / f"person_keypoints_{split}2017.json").write_text(json.dumps(data))
    return root / "annotations" / "person_keypoints_train2017.json", root / "train2017"


def test_coco_loads_people_and_counts_what_it_skips(tmp_path):
    crowd = _coco_annotation(2, iscrowd=1)
    empty = _coco_annotation(3, keypoints=[0] * 51, num_keypoints=0)
    _write_coco(tmp_path, [_coco_annotation(1), crowd, empty])
    splits = lt.build_datasets("pose", "coco", root=str(tmp_path), image_size=32)
    data = splits.train
    assert len(data) == 1 and data.num_joints == 17 and data.sample_key(0) == "p.png#1"
    assert data.skipped == {"crowd": 1, "fewer than 1 labeled keypoints": 1}
    sample = data[0]
    # Box (8, 6)-(64, 46): centre (36, 26), crop side 56 * 1.25 = 70 px, scaled to 32.
    scale = 70 / 32
    assert sample["keypoints"][0] == pytest.approx([(10.5 - (36 - 35)) / scale, (8.5 - (26 - 35)) / scale])
    assert np.isnan(sample["head_size"]) and sample["area"] == pytest.approx(900 / scale**2)
    assert sample["box"] == pytest.approx([(8 - 1) / scale, (6 + 9) / scale, (64 - 1) / scale, (46 + 9) / scale])
    assert lt.TASKS.build("pose").model_options_for(data) == {"num_joints": 17}


def test_coco_missing_image_names_file_and_annotation(tmp_path):
    images = ({"id": 1, "file_name": "p.png", "width": 80, "height": 60},
              {"id": 2, "file_name": "gone.png", "width": 80, "height": 60})
    path, folder = _write_coco(tmp_path, [_coco_annotation(1), _coco_annotation(7, image_id=2)], images)
    with pytest.raises(lt.BadDataError, match=r"gone\.png: image file not found.*annotation 7"):
        COCOKeypoints(path, folder)


def test_coco_wrong_joint_count_names_file_and_annotation(tmp_path):
    path, folder = _write_coco(tmp_path, [_coco_annotation(5, joints=16)])
    with pytest.raises(lt.BadDataError, match=r"annotation 5 \(image p\.png\): 48 keypoint values, expected 3 x 17"):
        COCOKeypoints(path, folder)


def test_coco_keypoint_outside_the_image_is_repaired_and_counted(tmp_path, caplog):
    annotation = _coco_annotation(1)
    annotation["keypoints"][3 * 4:3 * 4 + 2] = [95, 20]  # joint 4 beyond the 80 px width
    path, folder = _write_coco(tmp_path, [annotation])
    with caplog.at_level(logging.WARNING):
        data = COCOKeypoints(path, folder, image_size=32)
    assert data.repaired == {"keypoint outside its image": 1}
    assert data[0]["visibility"][4] == 0 and data[0]["visibility"][3] == 2
    assert "keypoint outside its image" in caplog.text


def test_coco_unknown_image_id_and_bad_json_raise(tmp_path):
    path, folder = _write_coco(tmp_path, [_coco_annotation(9, image_id=42)])
    with pytest.raises(lt.BadDataError, match="annotation 9: image_id 42 is not in the file's images"):
        COCOKeypoints(path, folder)
    path.write_text("{not json")
    with pytest.raises(lt.BadDataError, match="not valid JSON"):
        COCOKeypoints(path, folder)

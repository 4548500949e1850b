import json

import numpy as np
import pytest

import lossal_tasks as lt


def test_pool_add_and_views():
    pool = lt.Pool(10)
    pool.add([3, 1], cycle=0)
    pool.add([7], cycle=1)
    assert pool.labeled == [3, 1, 7]
    assert pool.unlabeled.tolist() == [0, 2, 4, 5, 6, 8, 9]
    assert pool.cycle_of(7) == 1 and pool.cycle_of(3) == 0 and pool.cycle_of(0) is None
    assert pool.num_labeled == 3 and pool.num_unlabeled == 7


@pytest.mark.parametrize("indices, message", [([1, 1], "more than once"), ([3], "labeled already"),
                                              ([10], "outside the pool"), ([-1], "outside the pool")])
def test_pool_add_rejects_and_leaves_pool_unchanged(indices, message):
    pool = lt.Pool(10)
    pool.add([3], cycle=0)
    with pytest.raises(lt.ConfigError, match=message):
        pool.add(indices, cycle=1)
    assert pool.labeled == [3]


def test_pool_save_load_round_trip(tmp_path):
    pool = lt.Pool(1000)
    pool.add(np.arange(0, 1000, 7), cycle=0)
    pool.add([1, 2, 3], cycle=4)
    pool.meta["completed_cycles"] = 5
    pool.save(tmp_path / "pool.json")
    loaded = lt.Pool.load(tmp_path / "pool.json")
    assert loaded == pool
    assert loaded.cycles() == pool.cycles() and loaded.meta == {"completed_cycles": 5}
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_pool_load_errors_name_the_file(tmp_path):
    with pytest.raises(lt.RunStateError, match="pool file not found"):
        lt.Pool.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(lt.RunStateError, match="bad.json: malformed"):
        lt.Pool.load(bad)
    bad.write_text(json.dumps({"size": 3, "labeled": [1, 1], "cycles": [0, 0]}))
    with pytest.raises(lt.RunStateError, match="bad.json.*labeled already"):
        lt.Pool.load(bad)

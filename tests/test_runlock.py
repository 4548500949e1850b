"""The run-directory lock: one writer per run, a clear refusal, stale locks taken over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lossal_tasks as lt
from lossal_tasks.experiment import Experiment, run_experiment
from lossal_tasks.runlock import LOCK_FILE, RunLock, _process_start_ticks, process_alive, remove_partial_files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import acquire as acquire_tool  # noqa: E402
import train as train_tool  # noqa: E402


@pytest.fixture
def other_process():
    """A live process that is not this one (its pid can hold a lock)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def write_lock(run_dir: Path, pid: int, hostname: str | None = None, start_ticks: int | None = None) -> None:
    (run_dir / LOCK_FILE).write_text(json.dumps({
        "pid": pid, "hostname": hostname or socket.gethostname(), "started": "2026-01-01T00:00:00Z",
        "start_ticks": start_ticks if start_ticks is not None else _process_start_ticks(pid),
        "command": "train"}))


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_lock_records_its_holder_and_goes_on_release(tmp_path):
    with RunLock(tmp_path, command="test") as lock:
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["hostname"] == socket.gethostname()
        assert holder["started"].endswith("Z") and holder["command"] == "test"
        with pytest.raises(lt.RunStateError, match=f"in use by pid {os.getpid()}"):
            RunLock(tmp_path).acquire()  # not re-entrant, even in the same process
        assert lock.held
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_second_process_is_refused_with_the_holder_named(tmp_path, other_process):
    write_lock(tmp_path, other_process.pid)
    with pytest.raises(lt.RunStateError) as error:
        RunLock(tmp_path).acquire()
    message = str(error.value)
    assert str(tmp_path) in message and f"pid {other_process.pid}" in message and "train" in message
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == other_process.pid  # left alone


def test_a_lock_of_a_killed_process_is_taken_over(tmp_path, other_process, caplog):
    write_lock(tmp_path, other_process.pid)
    other_process.kill()
    other_process.wait()
    assert not process_alive(other_process.pid)
    with RunLock(tmp_path) as lock:
        assert lock.took_over["pid"] == other_process.pid
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"stale lock of pid {other_process.pid}" in caplog.text
    assert not list(tmp_path.iterdir())


def test_a_zombie_or_a_reused_pid_does_not_hold_the_lock(tmp_path, other_process):
    started = _process_start_ticks(other_process.pid)
    assert started is not None and process_alive(other_process.pid, started)
    write_lock(tmp_path, other_process.pid, start_ticks=started + 1)
    with RunLock(tmp_path) as lock:  # that pid now runs a process started at another time: reused
        assert lock.took_over["pid"] == other_process.pid
    write_lock(tmp_path, other_process.pid)
    other_process.kill()
    time.sleep(0.2)  # killed but not reaped: a zombie still answers kill(pid, 0)
    assert not process_alive(other_process.pid)
    with RunLock(tmp_path) as lock:
        assert lock.took_over["pid"] == other_process.pid


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, 1, hostname="elsewhere.example", start_ticks=0)
    with pytest.raises(lt.RunStateError, match=r"pid 1 on elsewhere.example .* delete .*run.lock"):
        RunLock(tmp_path).acquire()


def test_an_unreadable_lock_is_stale_only_once_old(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with pytest.raises(lt.RunStateError, match="being written by another process"):
        RunLock(tmp_path).acquire()
    old = time.time() - 60
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with RunLock(tmp_path) as lock:
        assert lock.took_over == {}


def test_partial_files_of_atomic_writes_are_removed(tmp_path):
    (tmp_path / "cycles" / "cycle_000").mkdir(parents=True)
    partial = [tmp_path / ".pool.json.abc123.tmp", tmp_path / "cycles" / "cycle_000" / ".checkpoint.pt.x.tmp"]
    for path in partial:
        path.write_bytes(b"half")
    (tmp_path / "pool.json").write_text("{}")
    assert sorted(remove_partial_files(tmp_path)) == sorted(partial)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["pool.json"]


def toy_experiment(**changes) -> Experiment:
    return Experiment(task="toy_regression", data="vectors", **{"cycles": 2, **changes})


def test_the_loop_refuses_a_locked_run_and_changes_nothing(tmp_path, other_process):
    out = tmp_path / "run"
    run_experiment(toy_experiment(cycles=1), out)
    before = snapshot(out)
    write_lock(out, other_process.pid)
    with pytest.raises(lt.RunStateError, match=f"in use by pid {other_process.pid}"):
        run_experiment(toy_experiment(cycles=1), out, resume=True)
    (out / LOCK_FILE).unlink()
    assert snapshot(out) == before


def test_the_tools_refuse_a_locked_run(tmp_path, other_process, capsys, monkeypatch):
    out = tmp_path / "run"
    run_experiment(toy_experiment(), out)
    before = snapshot(out)
    write_lock(out, other_process.pid)
    assert train_tool.main(["--task", "toy_regression", "--data", "vectors", "--out", str(out), "--resume"]) == 2
    assert f"error: {out} is in use by pid {other_process.pid}" in capsys.readouterr().err
    assert acquire_tool.main(["--run", str(out), "--budget", "3"]) == 2
    assert f"error: {out} is in use by pid {other_process.pid}" in capsys.readouterr().err
    (out / LOCK_FILE).unlink()
    assert snapshot(out) == before
    # Writing the selection elsewhere does not touch the run, so a live run does not block it.
    write_lock(out, other_process.pid)
    assert acquire_tool.main(["--run", str(out), "--budget", "3", "--out", str(tmp_path / "pick")]) == 0
    assert (tmp_path / "pick.csv").exists()

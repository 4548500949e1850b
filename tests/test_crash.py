"""Crash safety: a real tools/train.py run is SIGKILLed at chosen points, resumed with --resume,
and must end exactly where an uninterrupted run with the same seed ends.

The runs go through tests/crash_runner.py --serve: one process imports torch once and forks a
child per run, which arms its kill point and calls train.py's main. Each child is a separate
process that dies by SIGKILL (return code -9), leaving its lock, temp files and partial state.
"""
from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lossal_tasks as lt
from lossal_tasks.runlock import LOCK_FILE, process_alive

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "crash_runner.py"
TIMING_KEYS = {"train_seconds", "acquire_seconds"}

# 3 cycles: two acquisitions. Batch 4 (crash_runner.TINY): cycle 0 trains 2 steps on 8 labels,
# cycle 1 4 steps on 14, cycle 2 5 steps on 20; scoring draws 16 candidates in 2 batches of 8.
ARGS = ["--epochs", "1", "--cycles", "3", "--initial", "8", "--budget", "6", "--subset", "16", "--seed", "5"]

# (task, kill points of successive attempts; the run is then resumed without a kill point)
CASES = [
    ("classification", ["write:config.json:1"]),        # the very first write, before any run state
    ("classification", ["step:1"]),                     # mid-epoch, cycle 0, after batch 0 of 2
    ("classification", ["score:2"]),                    # scoring batch 2 of cycle 0
    ("classification", ["write:checkpoint.pt:2"]),      # cycle 1 checkpoint: temp written, not in place
    ("classification", ["partial:metrics.jsonl:2"]),    # half of metrics.jsonl written (cycle 1)
    ("detection", ["step:4"]),                          # mid-epoch in cycle 1, after a committed cycle
    ("detection", ["wrote:selection.json:1"]),          # selection in place, pool.json not yet updated
    ("detection", ["eval:2"]),                          # evaluation of cycle 1
    ("detection", ["write:pool.json:2"]),               # the commit of cycle 0, before os.replace
    ("pose", ["partial:checkpoint.pt:1"]),              # half a checkpoint in the temp file
    ("pose", ["wrote:metrics.jsonl:1"]),                # metrics written, pool.json (the commit) not yet
    ("pose", ["wrote:pool.json:2"]),                    # between cycles 0 and 1
    ("pose", ["write:selection.json:2", "score:1", "step:3"]),  # killed three times over
]


class Runner:
    """Client of ``crash_runner.py --serve``: one job (kill point, train.py arguments) at a time."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process = subprocess.Popen([sys.executable, str(RUNNER), "--serve"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.jobs = 0

    def __call__(self, kill: str | None, argv: list[str], timeout: float = 120.0) -> int:
        self.jobs += 1
        log = self.log_dir / f"job{self.jobs:03d}.log"
        self.process.stdin.write(json.dumps({"kill": kill, "argv": argv, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.process.kill()
            pytest.fail(f"crash runner job {argv} (kill {kill}) did not finish in {timeout} s")
        answer = self.process.stdout.readline()
        if not answer:
            pytest.fail(f"crash runner exited (code {self.process.wait()}); job log {log}")
        self.last_log = log
        return json.loads(answer)["returncode"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    serving = Runner(tmp_path_factory.mktemp("crash_logs"))
    yield serving
    serving.close()


@pytest.fixture(scope="module")
def reference(runner, tmp_path_factory):
    """The uninterrupted run of each task (computed on first use)."""
    runs: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("reference")

    def get(task: str) -> Path:
        if task not in runs:
            out = root / task
            code = runner(None, ["--task", task, *ARGS, "--out", str(out)])
            assert code == 0, runner.last_log.read_text()
            runs[task] = out
        return runs[task]

    return get


def run_files(out: Path) -> set[str]:
    return {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}


def assert_whole(out: Path, task: lt.Task) -> None:
    """No temp or lock file left; every JSON parses; every checkpoint loads."""
    leftovers = sorted(name for name in run_files(out) if name.endswith(".tmp") or name.endswith(LOCK_FILE))
    assert not leftovers, f"left in {out}: {leftovers}"
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    for path in out.rglob("*.pt"):
        lt.load_checkpoint(path, task)


def assert_same_run(out: Path, expected: Path, task: lt.Task) -> None:
    """The resumed run ends exactly as the uninterrupted one: pool, selections, weights, metrics."""
    pool, expected_pool = lt.Pool.load(out / "pool.json"), lt.Pool.load(expected / "pool.json")
    assert len(set(pool.labeled)) == len(pool.labeled), "a sample is labeled twice"
    assert pool.cycles() == expected_pool.cycles(), "labeled set or the cycle of a sample differs"
    assert pool == expected_pool
    assert run_files(out) == run_files(expected)
    for cycle in range(3):
        selection = lt.cycle_dir(out, cycle) / "selection.json"
        if cycle < 2:
            chosen = json.loads(selection.read_text())["indices"]
            assert chosen == json.loads((lt.cycle_dir(expected, cycle) / "selection.json").read_text())["indices"]
            assert all(pool.cycle_of(index) == cycle + 1 for index in chosen)
        weights, _ = lt.load_checkpoint(lt.cycle_dir(out, cycle) / "checkpoint.pt", task)
        expected_weights, _ = lt.load_checkpoint(lt.cycle_dir(expected, cycle) / "checkpoint.pt", task)
        for (name, value), (_, expected_value) in zip(weights.state_dict().items(),
                                                      expected_weights.state_dict().items()):
            assert torch.equal(value, expected_value), f"cycle {cycle} weights differ at {name}"
    drop = lambda records: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]  # noqa: E731
    assert drop(lt.read_metrics(out)) == drop(lt.read_metrics(expected))


def test_crash_runner_kills_itself_where_asked(runner, tmp_path):
    """The harness's own check: a kill point that never comes lets the run finish (code 0), one that
    comes kills it by SIGKILL and leaves the run's lock behind, as a crash would."""
    out = tmp_path / "never"
    assert runner("step:100000", ["--task", "classification", *ARGS, "--cycles", "1", "--out", str(out)]) == 0
    out = tmp_path / "killed"
    assert runner("step:1", ["--task", "classification", *ARGS, "--out", str(out)]) == -9
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] > 0 and not process_alive(holder["pid"], holder["start_ticks"])


@pytest.mark.parametrize("task_name, kills", CASES, ids=[f"{t}-{'+'.join(k)}" for t, k in CASES])
def test_killed_run_resumes_to_the_same_pool(runner, reference, tmp_path, task_name, kills):
    expected = reference(task_name)
    task = lt.TASKS.build(task_name)
    out = tmp_path / "run"
    argv = ["--task", task_name, *ARGS, "--out", str(out)]
    for attempt, point in enumerate(kills):
        code = runner(point, argv + (["--resume"] if attempt else []))
        assert code == -9, f"kill point {point} was not reached (code {code}): {runner.last_log.read_text()}"
        if point.startswith(("write:", "partial:")):
            name = point.split(":")[1]
            assert list(out.rglob(f".{name}.*.tmp")), f"no temp file of {name} at kill point {point}"
    code = runner(None, argv + ["--resume"])
    log = runner.last_log.read_text()
    assert code == 0, log
    if not kills[-1].startswith("write:config.json"):
        assert "taking over the stale lock" in log
    assert_whole(out, task)
    assert_same_run(out, expected, task)

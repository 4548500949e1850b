#!/usr/bin/env python
"""Run tools/train.py with a kill point: the process SIGKILLs itself at a chosen moment (test only).

    python tests/crash_runner.py [--kill POINT] -- <tools/train.py arguments>
    python tests/crash_runner.py --serve     # JSON jobs on stdin, one forked process per job

Kill points (N, K count from 1, over the whole process):
    step:N          after the N-th optimizer step (mid-epoch)
    score:N         as scoring (acquisition) batch N is about to run
    eval:N          as evaluation batch N is about to run
    write:NAME:K    the K-th atomic write of a file named NAME: temp file complete, before os.replace
    partial:NAME:K  the K-th atomic write of NAME: half of its bytes in the temp file
    wrote:NAME:K    right after the K-th atomic write of NAME was put in place

The hooks are installed by monkeypatching from here, so library code carries none. The presets of
all tasks are shrunk (TINY) so a run takes a second or two. ``--serve`` imports torch once and forks
a child per job: a real, separate process that dies by SIGKILL, without paying the imports each time.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

# oneDNN's convolution backward corrupts the heap at tiny widths on this CPU (see tests/conftest.py).
torch.backends.mkldnn.enabled = False

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import lossal_tasks as lt  # noqa: E402
from lossal_tasks import acquisition, evaluation, runio  # noqa: E402

from conftest import TINY_PRESETS as TINY  # noqa: E402


def shrink_presets() -> None:
    """Apply TINY to every preset of the built-in tasks (this process only)."""
    for name, sections in TINY.items():
        task_class = lt.TASKS.get(name)
        task_class.presets = {
            preset_name: {**preset, **{section: {**preset.get(section, {}), **values}
                                       for section, values in sections.items()}}
            for preset_name, preset in task_class.presets.items()}


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Counter:
    def __init__(self, target: int) -> None:
        self.count, self.target = 0, target

    def hit(self) -> bool:
        self.count += 1
        return self.count == self.target


def _kill_in_loader(module, counter: _Counter) -> None:
    """Wrap ``module.make_loader`` so iterating its loaders dies before batch ``counter.target``."""
    original = module.make_loader

    def make_loader(*args, **kwargs):
        loader = original(*args, **kwargs)

        class Dying:
            def __len__(self):
                return len(loader)

            def __iter__(self):
                for batch in loader:
                    if counter.hit():
                        _die()
                    yield batch

        return Dying()

    module.make_loader = make_loader


def _kill_in_writes(mode: str, name: str, counter: _Counter) -> None:
    original = runio._atomic_write

    def atomic_write(path, write):
        if Path(path).name != name or not counter.hit():
            return original(path, write)
        if mode == "wrote":
            original(path, write)
            _die()
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
        if mode == "partial":
            data = data[: len(data) // 2]

        def write_then_die(stream):
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
            _die()

        original(path, write_then_die)

    runio._atomic_write = atomic_write


def install_kill_point(point: str | None) -> None:
    """Arm the kill point described by ``point`` (see the module docstring); None arms nothing."""
    if not point:
        return
    kind, _, rest = point.partition(":")
    if kind == "step":
        counter = _Counter(int(rest))
        register_optimizer_step_post_hook(
            lambda optimizer, args, kwargs: _die() if counter.hit() else None)
    elif kind == "score":
        _kill_in_loader(acquisition, _Counter(int(rest)))
    elif kind == "eval":
        _kill_in_loader(evaluation, _Counter(int(rest)))
    elif kind in ("write", "partial", "wrote"):
        name, _, occurrence = rest.rpartition(":")
        _kill_in_writes(kind, name, _Counter(int(occurrence)))
    else:
        raise SystemExit(f"crash_runner: unknown kill point {point!r}")


def run(point: str | None, argv: list[str]) -> int:
    """Shrink the presets, arm ``point`` and run tools/train.py's main with ``argv``."""
    import train as train_tool

    torch.set_num_threads(1)
    shrink_presets()
    # The learning-curve PNG is drawn after the loop and is not run state; skipping it saves ~1 s a run.
    lt.plot_learning_curve = lambda *args, **kwargs: None
    install_kill_point(point)
    return train_tool.main(argv)


def serve() -> None:
    """Read ``{"kill": point or null, "argv": [...], "log": path}`` lines; run each in a forked child
    (stdout and stderr to ``log``) and answer ``{"returncode": rc}`` (-9 after SIGKILL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (the imports the children need, once, before forking)
    import train  # noqa: F401

    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                code = run(job.get("kill"), job["argv"])
            except SystemExit as error:
                code = error.code if isinstance(error.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"returncode": code}), flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve()
        return 0
    point = None
    if argv[:1] == ["--kill"]:
        point, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return run(point, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python
"""Run tools/train.py and tools/acquire.py the way the tests need, as a script torchrun can launch.

    [torchrun --nproc_per_node 2 --standalone] tests/dist_runner.py [--shrink JSON]
        [--guard-writes DIR] "train --task ..." ["acquire --run ..." ...]

Each quoted call runs the named tool's main() in this process, in order; the exit status is the
first non-zero one. Before any of them:

- oneDNN is switched off (its convolution backward corrupts the heap at tiny widths on this CPU,
  see tests/conftest.py) and torch uses one thread;
- ``--shrink '{"classification": {"data": {...}, "model": {...}}}'`` overrides sections of every
  preset of the named tasks, so a run takes seconds;
- ``--guard-writes DIR``: on every rank but 0, creating, opening for writing or making a folder
  anywhere under DIR raises PermissionError, so a rank that writes fails the run;
- under torchrun the process group is joined once here, so several calls share it;
- the ``lossal_tasks.distributed`` logger reports at INFO which items each rank scores.
"""
from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import torch

torch.backends.mkldnn.enabled = False
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import lossal_tasks as lt  # noqa: E402


def shrink(overrides: dict) -> None:
    """Merge ``{task: {section: values}}`` into every preset of each task."""
    for task_name, sections in overrides.items():
        task_class = lt.TASKS.get(task_name)
        task_class.presets = {name: {**preset, **{section: {**preset.get(section, {}), **values}
                                                  for section, values in sections.items()}}
                              for name, preset in task_class.presets.items()}


def guard_writes(folder: str) -> None:
    """Make any write under ``folder`` by this process raise PermissionError."""
    guarded = os.path.realpath(folder)

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        full = os.path.realpath(os.fspath(path))
        return full == guarded or full.startswith(guarded + os.sep)

    def refuse(what: str, path) -> None:
        raise PermissionError(f"rank {os.environ.get('RANK')} tried to {what} {path} (only rank 0 may write)")

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def open_(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+") and inside(file):
            refuse(f"open ({mode})", file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & write_flags and inside(path):
            refuse("create", path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            refuse("make the folder", path)
        return real_mkdir(path, *args, **kwargs)

    builtins.open, os.open, os.mkdir = open_, os_open, mkdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shrink", default=None, help="JSON {task: {preset section: values}}")
    parser.add_argument("--guard-writes", default=None, help="folder only rank 0 may write under")
    parser.add_argument("calls", nargs="+", help='e.g. "acquire --run DIR --budget 5"')
    args = parser.parse_args(argv)
    # The tools' own basicConfig then finds this handler; the test reads each rank's share from it.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lossal_tasks.distributed").setLevel(logging.INFO)
    if args.shrink:
        shrink(json.loads(args.shrink))
    if args.guard_writes and os.environ.get("RANK", "0") != "0":
        guard_writes(args.guard_writes)
    import acquire
    import train

    tools = {"train": train.main, "acquire": acquire.main}
    # Joined here rather than through init_from_env, so the tools leave the group to this script.
    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if joined:
        torch.distributed.init_process_group("gloo")
    try:
        for call in args.calls:
            name, *tool_args = shlex.split(call)
            status = tools[name](tool_args)
            if status:
                return status
    finally:
        if joined:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

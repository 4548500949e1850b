#!/usr/bin/env python
"""Acquisition time and peak memory against pool size; prints a table with ratios to the smallest pool.

    python benchmarks/scale.py                      # pools of 10k, 100k, 1M; subset M=10k; B=1000
    python benchmarks/scale.py --sizes 10000 100000 --strategies learning_loss coreset --repeats 3
    python benchmarks/scale.py --stream-sizes 10000 100000   # also: no subset, streaming top-k

Pools are the generated classification set (samples are drawn from (seed, index), so a pool of a
million costs nothing until scored). The model is the `quick` preset's width (ResNet-18, CIFAR stem,
width 16, 32 px) with a loss head, randomly initialised with a fixed seed: acquisition cost does not
depend on the weights. Each (mode, strategy, pool size) runs in a fresh subprocess, so its peak
resident memory (getrusage ru_maxrss of that process) is its own. One cycle's acquisition is timed
as the loop runs it: `acquire(..., pool.unlabeled, ...)` with --initial samples labeled already (the
pool size is the unlabeled count). The best wall time over --repeats runs (different seeds) times
--rounds processes is reported, since other load on the machine only ever adds to it, next to the
CPU seconds the acquisition used (less sensitive to that load) and the largest peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000, 1_000_000],
                        help="unlabeled pool sizes (the dataset has --initial more, already labeled)")
    parser.add_argument("--subset", type=int, default=10_000, help="the paper's M")
    parser.add_argument("--strategies", nargs="+", default=["learning_loss"])
    parser.add_argument("--stream-sizes", nargs="*", type=int, default=[],
                        help="pool sizes for the no-subset streaming measurement (learning_loss)")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--initial", type=int, default=1000, help="random labels before the cycle")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="acquisitions timed per process")
    parser.add_argument("--rounds", type=int, default=1,
                        help="fresh processes per measurement, interleaved over sizes (best time, worst memory)")
    parser.add_argument("--stream-repeats", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (loader workers)."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def measure(args: argparse.Namespace, strategy: str, size: int, subset: int | None) -> dict:
    """Runs in the child: build the pool and model, time ``repeats`` acquisitions."""
    import numpy as np
    import torch

    import lossal_tasks as lt

    task = lt.TASKS.build("classification")
    train_set = lt.build_datasets("classification", "synthetic", train_size=size + args.initial, test_size=1,
                                  image_size=args.image_size).train
    torch.manual_seed(0)
    model = lt.build_loss_model(task, {"width": args.width, "num_classes": len(train_set.classes)})
    model.initialize(task.collate([train_set[0], train_set[1]])[0])
    pool = lt.Pool(len(train_set))
    pool.add(np.random.default_rng(0).choice(len(train_set), args.initial, replace=False), cycle=0)
    # One full batch first, so one-time kernel and thread-pool set-up is not charged to any size.
    warm = task.collate([train_set[i] for i in range(min(size, args.batch_size))])[0]
    with torch.inference_mode():
        model.eval()(warm.contiguous(memory_format=torch.channels_last))
    del warm
    before = peak_rss_mb()
    times, cpu, scored = [], [], 0
    repeats = args.repeats if subset else args.stream_repeats
    for seed in range(repeats):
        started, started_cpu = time.perf_counter(), cpu_seconds()
        selection = lt.acquire(model, task, train_set, pool.unlabeled, args.budget, strategy=strategy,
                               subset_size=subset, seed=seed, batch_size=args.batch_size,
                               num_workers=args.workers)
        times.append(time.perf_counter() - started)
        cpu.append(cpu_seconds() - started_cpu)
        scored = selection.num_scored
    return {"strategy": strategy, "size": size, "subset": subset, "scored": scored, "seconds": min(times),
            "all_seconds": times, "cpu_seconds": min(cpu), "rss_before_mb": before, "peak_rss_mb": peak_rss_mb(),
            "threads": torch.get_num_threads()}


def run_child(argv: list[str], strategy: str, size: int, subset: int | None) -> dict:
    """Measure in a fresh interpreter, so peak memory is this measurement's alone."""
    spec = json.dumps({"strategy": strategy, "size": size, "subset": subset})
    command = [sys.executable, os.path.abspath(__file__), *argv, "--child", spec]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """Rounds of one measurement: the fastest time (least disturbed by other load), the largest peak."""
    best = dict(min(runs, key=lambda run: run["seconds"]))
    best["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    best["rss_before_mb"] = max(run["rss_before_mb"] for run in runs)
    best["all_seconds"] = [seconds for run in runs for seconds in run["all_seconds"]]
    best["cpu_seconds"] = min(run["cpu_seconds"] for run in runs)
    return best


def print_table(rows: list[dict]) -> None:
    header = (f"{'mode':<10} {'strategy':<22} {'pool':>9} {'scored':>9} {'acquire_s':>10} {'time_x':>7} "
              f"{'cpu_s':>7} {'cpu_x':>6} {'peak_rss_MB':>12} {'rss_x':>6} {'before_MB':>10}")
    print(header)
    print("-" * len(header))
    base: dict[tuple, dict] = {}
    for row in rows:
        mode = f"M={row['subset']}" if row["subset"] else "stream"
        first = base.setdefault((mode, row["strategy"]), row)
        print(f"{mode:<10} {row['strategy']:<22} {row['size']:>9,} {row['scored']:>9,} {row['seconds']:>10.2f} "
              f"{row['seconds'] / first['seconds']:>6.2f}x {row['cpu_seconds']:>7.1f} "
              f"{row['cpu_seconds'] / first['cpu_seconds']:>5.2f}x {row['peak_rss_mb']:>12.1f} "
              f"{row['peak_rss_mb'] / first['peak_rss_mb']:>5.2f}x {row['rss_before_mb']:>10.1f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(args, spec["strategy"], spec["size"], spec["subset"])))
        return 0
    plan = [(strategy, size, args.subset) for strategy in args.strategies for size in args.sizes]
    plan += [("learning_loss", size, None) for size in args.stream_sizes]
    runs: dict[tuple, list[dict]] = {key: [] for key in plan}
    for _ in range(args.rounds):
        for strategy, size, subset in plan:
            run = run_child(argv, strategy, size, subset)
            runs[(strategy, size, subset)].append(run)
            print(f"  {strategy} pool {size:,} subset {subset}: {run['all_seconds']} s "
                  f"(cpu {run['cpu_seconds']:.1f} s), "
                  f"peak {run['peak_rss_mb']:.1f} MB", file=sys.stderr, flush=True)
    rows = [best_of(runs[key]) for key in plan]
    import torch

    print(f"budget {args.budget}, K={args.initial} labeled, ResNet-18 width {args.width} (random init), "
          f"{args.image_size} px, batch {args.batch_size}, workers {args.workers}, "
          f"torch {torch.__version__}, {rows[0]['threads']} threads; best time of {args.repeats} x {args.rounds} "
          f"(stream: {args.stream_repeats} x {args.rounds}), peak memory the largest")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

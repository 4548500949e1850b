#!/usr/bin/env python
"""Compare acquisition strategies over seeds on one task; prints mean and spread per cycle.

    python benchmarks/strategies.py --task classification --strategies learning_loss entropy random \
        --seeds 0 1 2 --out runs/bench-classification

Each (strategy, seed) is an ordinary resumable run under --out, so an interrupted benchmark
continues where it stopped when started again with the same arguments.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lossal_tasks as lt
from lossal_tasks.experiment import Experiment, run_experiment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="classification")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--strategies", nargs="+", default=["learning_loss", "entropy", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cycles", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--initial", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--out", default=None, help="default: runs/bench-<task>-<data>")
    return parser.parse_args(argv)


def summarise(records_by_seed: list[list[dict]], key: str) -> list[tuple[int, float, float]]:
    """Per cycle: (labeled, mean, population std) of ``key`` across seeds."""
    rows = []
    for cycle_records in zip(*records_by_seed):
        values = [r[key] for r in cycle_records]
        rows.append((cycle_records[0]["labeled"], statistics.fmean(values), statistics.pstdev(values)))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out or f"runs/bench-{args.task}-{args.data}")
    metric = lt.TASKS.get(args.task).primary_metric
    results: dict[str, list[list[dict]]] = {}
    started = time.perf_counter()
    for strategy in args.strategies:
        for seed in args.seeds:
            run_dir = out / f"{strategy}-s{seed}"
            experiment = Experiment(task=args.task, data=args.data, preset=args.preset, strategy=strategy,
                                    seed=seed, cycles=args.cycles, epochs=args.epochs,
                                    initial_size=args.initial, budget=args.budget, subset_size=args.subset)
            records = run_experiment(experiment, run_dir, resume=(run_dir / "config.json").exists())
            results.setdefault(strategy, []).append(records)
            print(f"  {strategy} seed {seed}: final {metric} {records[-1][metric]:.4f} "
                  f"({time.perf_counter() - started:.0f}s elapsed)", file=sys.stderr, flush=True)

    for key in (metric, "ranking_accuracy"):
        print(f"\n{key}: mean ± std over seeds {args.seeds}")
        header = f"{'labeled':>8} " + " ".join(f"{s:>22}" for s in args.strategies)
        print(header)
        print("-" * len(header))
        columns = {s: summarise(results[s], key) for s in args.strategies}
        for row in range(len(next(iter(columns.values())))):
            labeled = next(iter(columns.values()))[row][0]
            cells = " ".join(f"{columns[s][row][1]:>14.4f} ± {columns[s][row][2]:.4f}" for s in args.strategies)
            print(f"{labeled:>8} {cells}")
    curves = {}
    for strategy in args.strategies:
        rows = summarise(results[strategy], metric)
        ranking = summarise(results[strategy], "ranking_accuracy")
        curves[strategy] = [{"labeled": n, metric: m, f"{metric}_std": s, "ranking_accuracy": rm,
                             "ranking_accuracy_std": rs}
                            for (n, m, s), (_, rm, rs) in zip(rows, ranking)]
    lt.plot_learning_curve(curves, metric, out / "strategies.png", title=f"{args.task} / {args.data}")
    print(f"\nplot: {out / 'strategies.png'}; total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

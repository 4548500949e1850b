#!/usr/bin/env python
"""Learning curves of acquisition strategies over seeds, per task; mean and spread per cycle, and a PNG.

    python benchmarks/curves.py --tasks classification detection pose --seeds 0 1 2 --out runs/curves

By default every task runs every registered strategy it supports (``entropy`` only where the task has
an uncertainty) on its embedded default data, with the lighter settings in CURVE_SETTINGS so that the
whole comparison fits on a 2-core CPU; ``--cycles/--epochs/--initial/--budget/--subset`` override them
(``--preset-settings`` uses the task's preset unchanged). Each (task, strategy, seed) is an ordinary
resumable run under --out, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lossal_tasks as lt
from lossal_tasks.experiment import Experiment, run_experiment
from lossal_tasks.strategies import strategy_needs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["classification", "detection", "pose"])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="default: every registered strategy the task supports")
    parser.add_argument("--preset-settings", action="store_true",
                        help="run the preset as it is instead of CURVE_SETTINGS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cycles", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--initial", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--out", default="runs/curves", help="one folder per task inside")
    return parser.parse_args(argv)


def summarise(records_by_seed: list[list[dict]], key: str) -> list[tuple[int, float, float]]:
    """Per cycle: (labeled, mean, population std) of ``key`` across seeds."""
    rows = []
    for cycle_records in zip(*records_by_seed):
        values = [r[key] for r in cycle_records]
        rows.append((cycle_records[0]["labeled"], statistics.fmean(values), statistics.pstdev(values)))
    return rows


# Much lighter than the quick presets (few epochs and cycles, small K, B and M) so that 3 seeds of
# every strategy on all three tasks fit in about an hour on 2 shared cores; the models stay weak.
CURVE_SETTINGS: dict[str, dict[str, int]] = {
    "classification": {"cycles": 4, "epochs": 6, "initial_size": 150, "budget": 150, "subset_size": 1500},
    "detection": {"cycles": 3, "epochs": 6, "initial_size": 100, "budget": 100, "subset_size": 500},
    "pose": {"cycles": 3, "epochs": 6, "initial_size": 150, "budget": 150, "subset_size": 600},
}


def default_strategies(task: lt.Task) -> list[str]:
    """Every registered strategy the task can run, ``random`` last."""
    names = [name for name in lt.STRATEGIES.names() if name != "random"]
    if not task.has_uncertainty:
        names = [name for name in names if "uncertainty" not in strategy_needs(lt.STRATEGIES.get(name))]
    return names + ["random"]


def settings_for(task_name: str, args: argparse.Namespace) -> dict[str, int | None]:
    settings: dict[str, int | None] = {} if args.preset_settings else dict(CURVE_SETTINGS.get(task_name, {}))
    for key, value in (("cycles", args.cycles), ("epochs", args.epochs), ("initial_size", args.initial),
                       ("budget", args.budget), ("subset_size", args.subset)):
        if value is not None:
            settings[key] = value
    return settings


def print_table(key: str, seeds: list[int], strategies: list[str], results: dict[str, list[list[dict]]]) -> None:
    print(f"\n{key}: mean ± std over seeds {seeds}")
    header = f"{'labeled':>8} " + " ".join(f"{s:>22}" for s in strategies)
    print(header)
    print("-" * len(header))
    columns = {s: summarise(results[s], key) for s in strategies}
    for row in range(len(columns[strategies[0]])):
        labeled = columns[strategies[0]][row][0]
        cells = " ".join(f"{columns[s][row][1]:>14.4f} ± {columns[s][row][2]:.4f}" for s in strategies)
        print(f"{labeled:>8} {cells}")


def run_task(task_name: str, args: argparse.Namespace, started: float) -> None:
    task = lt.TASKS.build(task_name)
    metric = task.primary_metric
    strategies = args.strategies or default_strategies(task)
    settings = settings_for(task_name, args)
    out = Path(args.out) / task_name
    results: dict[str, list[list[dict]]] = {}
    for strategy in strategies:
        for seed in args.seeds:
            run_dir = out / f"{strategy}-s{seed}"
            experiment = Experiment(task=task_name, data=args.data, preset=args.preset, strategy=strategy,
                                    seed=seed, **settings)
            records = run_experiment(experiment, run_dir, resume=(run_dir / "config.json").exists())
            results.setdefault(strategy, []).append(records)
            print(f"  {task_name} {strategy} seed {seed}: final {metric} {records[-1][metric]:.4f} "
                  f"({time.perf_counter() - started:.0f}s elapsed)", file=sys.stderr, flush=True)
    print(f"\n== {task_name} / {args.data}: preset {args.preset} with {settings or 'no overrides'}")
    for key in (metric, "ranking_accuracy"):
        print_table(key, args.seeds, strategies, results)
    curves = {}
    for strategy in strategies:
        rows = summarise(results[strategy], metric)
        ranking = summarise(results[strategy], "ranking_accuracy")
        curves[strategy] = [{"labeled": n, metric: m, f"{metric}_std": s, "ranking_accuracy": rm,
                             "ranking_accuracy_std": rs}
                            for (n, m, s), (_, rm, rs) in zip(rows, ranking)]
    plot = out / "curves.png"
    lt.plot_learning_curve(curves, metric, plot, title=f"{task_name} / {args.data}, seeds {args.seeds}")
    print(f"plot: {plot}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    for task_name in args.tasks:
        run_task(task_name, args, started)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

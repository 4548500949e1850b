#!/usr/bin/env python
"""Plot the learning curves of one or more runs (their metrics.jsonl) into one PNG."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lossal_tasks as lt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--metric", default=None, help="metric key (default: the task's primary metric)")
    args = parser.parse_args(argv)
    try:
        configs = [lt.read_config(run) for run in args.runs]
        metric = args.metric or lt.TASKS.get(configs[0]["task"]).primary_metric
        curves = {f"{Path(run).name}": lt.read_metrics(run) for run in args.runs}
        empty = [run for run, records in zip(args.runs, curves.values()) if not records]
        if empty:
            raise lt.RunStateError(f"{empty[0]}: no finished cycle in metrics.jsonl yet")
        lt.plot_learning_curve(curves, metric, args.out)
    except lt.LossalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

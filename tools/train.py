#!/usr/bin/env python
"""Run the paper's active-learning protocol on a task and dataset; one table row per cycle."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import lossal_tasks as lt
from lossal_tasks import distributed
from lossal_tasks.experiment import Experiment, ResolvedExperiment, run_experiment
from lossal_tasks.labeling import is_labeling_project


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, help=f"one of: {', '.join(lt.TASKS.names())}")
    parser.add_argument("--data", default="synthetic", help="dataset name (default: synthetic, generated)")
    parser.add_argument("--root", default=None, help="folder of the dataset (cifar10, folder, ...)")
    parser.add_argument("--download", action="store_true", help="download the dataset into --root if missing")
    parser.add_argument("--strategy", default="learning_loss", help=f"one of: {', '.join(lt.STRATEGIES.names())}")
    parser.add_argument("--preset", default="quick", help="quick (CPU, minutes) or paper (the paper's settings)")
    parser.add_argument("--cycles", type=int, default=None, help="train/evaluate rounds (acquisitions = cycles - 1)")
    parser.add_argument("--initial", type=int, default=None, help="K: random labels to start with")
    parser.add_argument("--budget", type=int, default=None, help="B: labels acquired per cycle")
    parser.add_argument("--subset", type=int, default=None, help="M: random candidates scored per cycle (0: all)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per cycle (schedule scales with it)")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<task>-<data>-<strategy>-s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out with its saved settings "
                        "(--data labels: import the new annotations and train the next cycle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16, else fp16 "
                        "with loss scaling); ignored on the CPU")
    parser.add_argument("--skip-nonfinite", action="store_true", help="skip (and count) batches whose loss is "
                        "NaN or infinite instead of stopping; may be turned on when resuming")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def print_row(primary: str):
    header = f"{'cycle':>5} {'labeled':>8} {primary:>10} {'rank_acc':>9} {'train_s':>8} {'acquire_s':>9}"
    print(header)
    print("-" * len(header))

    def row(record: dict) -> None:
        acquire = "-" if record.get("acquire_seconds") is None else f"{record['acquire_seconds']:.1f}"
        # a labeling project without test annotations is not evaluated: its metrics are None
        metric, rank = (("-" if record.get(key) is None else f"{record[key]:.4f}")
                        for key in (primary, "ranking_accuracy"))
        print(f"{record['cycle']:>5} {record['labeled']:>8} {metric:>10} "
              f"{rank:>9} {record['train_seconds']:>8.1f} {acquire:>9}", flush=True)

    return row


def main(argv: list[str] | None = None) -> int:
    """Run the tool; under torchrun join the process group first and print on rank 0 only."""
    args = parse_args(argv)
    try:
        with distributed.process_group_session(args.device):
            return _main(args)
    except lt.LossalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    experiment = Experiment(task=args.task, data=args.data, preset=args.preset, root=args.root,
                            download=args.download, strategy=args.strategy, cycles=args.cycles,
                            initial_size=args.initial, budget=args.budget, subset_size=args.subset,
                            epochs=args.epochs, seed=args.seed, device=args.device, num_workers=args.workers,
                            amp=args.amp, skip_nonfinite=args.skip_nonfinite)
    out = Path(args.out or f"runs/{args.task}-{args.data}-{args.strategy}-s{args.seed}")
    rows: dict = {}

    def on_start(resolved: ResolvedExperiment) -> None:
        if is_labeling_project(resolved.data.train):
            pool = resolved.data.train
            print(f"task {resolved.task.name}, labeling project {resolved.experiment.root}: {len(pool)} images, "
                  f"labels from {pool.annotation_source}, {len(resolved.data.test)} annotated test images, "
                  f"{resolved.train_config.epochs} epochs, run directory {out}")
        else:
            print(f"task {resolved.task.name}, data {resolved.experiment.data} "
                  f"({len(resolved.data.train)} train / {len(resolved.data.test)} test), strategy "
                  f"{resolved.experiment.strategy}, {resolved.cycles} cycles, K={resolved.initial_size}, "
                  f"B={resolved.budget}, M={resolved.subset_size or 'all'}, {resolved.train_config.epochs} epochs, "
                  f"run directory {out}")
        rows["print"] = print_row(resolved.task.primary_metric)
        rows["metric"] = resolved.task.primary_metric

    records = run_experiment(experiment, out, resume=args.resume, on_start=on_start,
                             on_cycle=lambda record: rows["print"](record))
    curve = out / "learning_curve.png"
    evaluated = [record for record in records if record.get(rows["metric"]) is not None]
    if evaluated:
        lt.plot_learning_curve({lt.read_config(out)["strategy"]: evaluated}, rows["metric"], curve,
                               title=f"{args.task} / {args.data}")
        print(f"learning curve: {curve}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

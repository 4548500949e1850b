#!/usr/bin/env python
"""Train on the labeled set of one cycle of a classification run with several lambdas / detach epochs.

    python benchmarks/head_weight.py --run runs/classification-synthetic-learning_loss-s0 --cycle 3 \
        --epochs 20 --settings 1:12 0.1:12 1:0 --seeds 0 1

Each setting is ``lambda:detach_epoch``. Prints test accuracy, ranking accuracy and the per-epoch
target loss, so one sees whether the head's gradient holds the backbone back before the detach.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import lossal_tasks as lt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--cycle", type=int, required=True, help="use the samples labeled up to this cycle")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--settings", nargs="+", default=["1:12", "0.1:12"], help="lambda:detach_epoch")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--test-size", type=int, default=600)
    args = parser.parse_args(argv)
    run = lt.open_run(args.run)
    labeled = [i for i, cycle in run.pool.cycles().items() if cycle <= args.cycle]
    test = lt.IndexedSubset(run.data.test, range(min(args.test_size, len(run.data.test))))
    train_values = dict(run.config["train"], epochs=args.epochs,
                        milestones=[round(args.epochs * 0.75)])
    print(f"{len(labeled)} labeled samples from cycles <= {args.cycle} of {args.run}; {len(test)} test samples")
    for setting in args.settings:
        weight, detach = setting.split(":")
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = lt.build_loss_model(run.task, run.config["model_options"])
            config = lt.TrainConfig.from_dict({**train_values, "loss_weight": float(weight),
                                               "detach_epoch": int(detach), "seed": seed})
            started = time.perf_counter()
            history = lt.train(run.task, model, lt.IndexedSubset(run.data.train, labeled,
                                                                 run.task.augmentation(seed)),
                               config, eval_dataset=test)
            losses = " ".join(f"{h['target_loss']:.2f}" for h in history)
            print(f"lambda {weight:>5} detach {detach:>3} seed {seed}: accuracy "
                  f"{history[-1][run.task.primary_metric]:.3f} ranking {history[-1]['ranking_accuracy']:.3f} "
                  f"({time.perf_counter() - started:.0f}s); target loss per epoch: {losses}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

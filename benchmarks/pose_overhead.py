#!/usr/bin/env python
"""What the loss-prediction head adds to a training step of the pose model (paper: "little").

    python benchmarks/pose_overhead.py [--preset quick] [--rounds 30] [--batch-size 32]

Two copies of the preset's hourglass train on one fixed batch of generated samples: one alone
(heatmap loss only), one wrapped in LossPredictionModel (tap on every stack, head, ranking loss
with the task's lambda). Their steps are interleaved (alternating which goes first) so both see the
same machine state; the medians and their ratio are printed.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

import lossal_tasks as lt
from lossal_tasks.training import TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--rounds", type=int, default=30, help="timed steps of each model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps of each model first")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task = lt.TASKS.build("pose")
    preset = task.preset(args.preset)
    config = TrainConfig.from_dict(preset["train"])
    batch_size = args.batch_size or config.batch_size
    data = lt.build_datasets("pose", "synthetic", seed=args.seed, train_size=batch_size, test_size=1,
                             image_size=preset["data"].get("image_size", 64))
    images, targets = task.collate([data.train[i] for i in range(batch_size)])
    images = images.contiguous(memory_format=torch.channels_last)

    torch.manual_seed(args.seed)
    plain = task.build_model(**preset["model"], **task.model_options_for(data.train))
    with_head = lt.LossPredictionModel(copy.deepcopy(plain), task.feature_layers)
    with_head.initialize(images)
    for model in (plain, with_head):
        model.train().to(memory_format=torch.channels_last)
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=config.lr)
                  for name, model in (("plain", plain), ("head", with_head))}

    def plain_step() -> None:
        per_sample = task.per_sample_loss(plain(images), targets)
        loss = task.batch_loss(per_sample, None, targets)
        optimizers["plain"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["plain"].step()

    def head_step() -> None:
        prediction = with_head(images)
        per_sample = task.per_sample_loss(prediction.outputs, targets)
        loss = task.batch_loss(per_sample, prediction.outputs, targets) + task.loss_weight * lt.ranking_loss(
            prediction.loss, per_sample.detach(), margin=config.margin)
        optimizers["head"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["head"].step()

    steps = {"plain": plain_step, "head": head_step}
    times: dict[str, list[float]] = {"plain": [], "head": []}
    for round_ in range(args.warmup + args.rounds):
        order = ("plain", "head") if round_ % 2 == 0 else ("head", "plain")
        for name in order:
            started = time.perf_counter()
            steps[name]()
            elapsed = time.perf_counter() - started
            if round_ >= args.warmup:
                times[name].append(elapsed)
    plain_ms = statistics.median(times["plain"]) * 1000
    head_ms = statistics.median(times["head"]) * 1000
    head_params = sum(p.numel() for p in with_head.head.parameters())  # type: ignore[union-attr]
    print(f"pose {args.preset} hourglass {preset['model']}, batch {batch_size} x "
          f"{tuple(images.shape[1:])}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print(f"head: {len(with_head.head.in_channels)} taps, {head_params} parameters")  # type: ignore[union-attr]
    print(f"training step without head: {plain_ms:8.1f} ms (median)")
    print(f"training step with head:    {head_ms:8.1f} ms (median)")
    print(f"ratio with / without:       {head_ms / plain_ms:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

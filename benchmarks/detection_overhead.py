#!/usr/bin/env python
"""What the learning-loss head adds to a training step of the quick detector.

Times, interleaved in one run (rotating which goes first, after a warm-up), a training step of the
quick SSD alone (forward, multibox loss, backward, SGD step) and of the same detector wrapped in a
LossPredictionModel (plus the loss head on its source maps and the ranking loss), with the head's
gradient reaching the backbone (before ``detach_epoch``) and with detached features (after it), on
one fixed batch of generated images; prints the median step times and their ratios (target <= 1.05).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

import lossal_tasks as lt
from lossal_tasks.training import prepare_inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    task = lt.TASKS.build("detection")
    data = lt.build_datasets("detection", "synthetic", seed=args.seed, train_size=args.batch_size, test_size=1,
                             image_size=args.image_size)
    images, targets = task.collate([data.train[i] for i in range(args.batch_size)])
    images = prepare_inputs(images, torch.device("cpu"), channels_last=True)

    plain = task.build_model(width=args.width, **task.model_options_for(data.train))
    wrapped = lt.LossPredictionModel(copy.deepcopy(plain), task.feature_layers)
    wrapped.initialize(images)
    for model in (plain, wrapped):
        model.to(memory_format=torch.channels_last).train()
    optimizers = {"without head": torch.optim.SGD(plain.parameters(), lr=1e-3, momentum=0.9),
                  "with head": torch.optim.SGD(wrapped.parameters(), lr=1e-3, momentum=0.9)}

    def step_without_head() -> None:
        outputs = plain(images)
        per_image = task.per_sample_loss(outputs, targets)
        loss = task.batch_loss(per_image, outputs, targets)
        optimizers["without head"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["without head"].step()

    def step_with_head(detached: bool = False) -> None:
        prediction = wrapped(images, detach_features=detached)
        per_image = task.per_sample_loss(prediction.outputs, targets)
        loss = (task.batch_loss(per_image, prediction.outputs, targets)
                + task.loss_weight * lt.ranking_loss(prediction.loss, per_image.detach()))
        optimizers["with head"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["with head"].step()

    steps = {"without head": step_without_head, "with head": step_with_head,
             "with head, detached": lambda: step_with_head(detached=True)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_number in range(args.warmup + args.steps):
        order = list(steps)[round_number % 3:] + list(steps)[:round_number % 3]
        for name in order:
            started = time.perf_counter()
            steps[name]()
            if round_number >= args.warmup:
                times[name].append(time.perf_counter() - started)

    without = statistics.median(times["without head"])
    with_head = statistics.median(times["with head"])
    detached = statistics.median(times["with head, detached"])
    paired = statistics.median(w / o for w, o in zip(times["with head"], times["without head"]))
    preset = task.preset("quick")["train"]
    attached_epochs = min(preset["detach_epoch"], preset["epochs"])
    per_cycle = (attached_epochs * with_head + (preset["epochs"] - attached_epochs) * detached) / (preset["epochs"] * without)
    head_params = sum(p.numel() for p in wrapped.head.parameters())
    print(f"quick SSD (width {args.width}, {args.image_size} px, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads), {args.steps} interleaved steps each after {args.warmup} warm-up")
    print(f"loss head: {head_params} parameters on {len(wrapped.in_channels or ())} source maps "
          f"{list(wrapped.in_channels or ())}")
    print(f"training step without head: median {without * 1000:.1f} ms")
    print(f"training step with head:    median {with_head * 1000:.1f} ms")
    print(f"training step with head, features detached (epochs >= detach_epoch): median {detached * 1000:.1f} ms")
    print(f"ratio with / without: {with_head / without:.3f} (target <= 1.05); median of per-round ratios {paired:.3f}")
    print(f"ratio detached / without: {detached / without:.3f}")
    print(f"over a quick-preset cycle ({attached_epochs} attached + {preset['epochs'] - attached_epochs} detached "
          f"epochs): {per_cycle:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

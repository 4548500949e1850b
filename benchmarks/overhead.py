#!/usr/bin/env python
"""What the learning-loss head costs: a training step, and scoring the pool, with and without it.

For each task's preset model (``quick`` by default), in one run:

- training step: the target model alone (forward, task loss, backward, optimizer step) against the
  same model wrapped in a LossPredictionModel (plus the head and the ranking loss), with the head's
  gradient reaching the backbone (before ``detach_epoch``) and with detached features (after it).
  Steps are interleaved on one fixed batch, rotating which goes first; medians are compared.
- scoring: ``score_candidates`` (the engine: wrapped model, inference mode, the predicted loss kept)
  against a bare ``inference_mode`` loop of the target model alone over the same loader; samples per
  second, alternating rounds, median of rounds.

Targets: training step ratio <= 1.05, scoring throughput ratio >= 0.95.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch

import lossal_tasks as lt
from lossal_tasks.acquisition import score_candidates
from lossal_tasks.data import IndexedSubset
from lossal_tasks.training import TrainConfig, make_loader, prepare_inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["classification", "detection", "pose"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps of each kind")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps of each kind first")
    parser.add_argument("--score-samples", type=int, default=512, help="samples scored per round")
    parser.add_argument("--score-rounds", type=int, default=5, help="timed scoring rounds of each kind")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def interleaved_medians(kinds: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, float]:
    """Median seconds of each callable, run in rotating order so drifts in machine load hit all alike."""
    names = list(kinds)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(warmup + rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            kinds[name]()
            if round_number >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)


def training_step_times(task: lt.Task, plain: torch.nn.Module, wrapped: lt.LossPredictionModel,
                        images: torch.Tensor, targets, config: TrainConfig, args) -> dict[str, float]:
    optimizers = {"plain": make_optimizer(plain, config), "head": make_optimizer(wrapped, config)}
    loss_weight = task.loss_weight if config.loss_weight is None else config.loss_weight

    def without_head() -> None:
        outputs = plain(images)
        loss = task.batch_loss(task.per_sample_loss(outputs, targets), outputs, targets)
        optimizers["plain"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["plain"].step()

    def with_head(detached: bool) -> None:
        prediction = wrapped(images, detach_features=detached)
        per_sample = task.per_sample_loss(prediction.outputs, targets)
        loss = (task.batch_loss(per_sample, prediction.outputs, targets)
                + loss_weight * lt.ranking_loss(prediction.loss, per_sample.detach(), margin=config.margin))
        optimizers["head"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["head"].step()

    plain.train()
    wrapped.train()
    return interleaved_medians({"without head": without_head,
                                "with head": lambda: with_head(False),
                                "with head, detached": lambda: with_head(True)}, args.steps, args.warmup)


def scoring_times(task: lt.Task, plain: torch.nn.Module, wrapped: lt.LossPredictionModel, dataset,
                  config: TrainConfig, args) -> dict[str, float]:
    candidates = np.arange(min(args.score_samples, len(dataset)))
    device = torch.device("cpu")

    def bare_loop() -> None:
        plain.eval()
        loader = make_loader(task, IndexedSubset(dataset, candidates), config.eval_batch_size, 0)
        with torch.inference_mode():
            for inputs, _ in loader:
                plain(prepare_inputs(inputs, device, True))

    def engine() -> None:
        score_candidates(wrapped, task, dataset, candidates, frozenset({"loss"}),
                         batch_size=config.eval_batch_size, device="cpu")

    return interleaved_medians({"bare loop": bare_loop, "engine": engine}, args.score_rounds, 1)


def measure(task_name: str, args) -> list[str]:
    task = lt.TASKS.build(task_name)
    preset = task.preset(args.preset)
    config = TrainConfig.from_dict(preset["train"])
    data_options = {key: value for key, value in preset["data"].items() if key == "image_size"}
    data = lt.build_datasets(task_name, "synthetic", seed=args.seed, train_size=max(args.score_samples, config.batch_size),
                             test_size=1, **data_options)
    images, targets = task.collate([data.train[i] for i in range(config.batch_size)])
    images = prepare_inputs(images, torch.device("cpu"), channels_last=True)
    torch.manual_seed(args.seed)
    plain = task.build_model(**{**task.model_options_for(data.train), **preset["model"]})
    wrapped = lt.LossPredictionModel(copy.deepcopy(plain), task.feature_layers)
    wrapped.initialize(images)
    for model in (plain, wrapped):
        model.to(memory_format=torch.channels_last)
    step = training_step_times(task, plain, wrapped, images, targets, config, args)
    score = scoring_times(task, plain, wrapped, data.train, config, args)
    samples = min(args.score_samples, len(data.train))
    bare_rate, engine_rate = samples / score["bare loop"], samples / score["engine"]
    return [
        f"{task_name:<15} {step['without head'] * 1e3:9.1f} {step['with head'] * 1e3:9.1f} "
        f"{step['with head, detached'] * 1e3:9.1f} {step['with head'] / step['without head']:7.3f} "
        f"{step['with head, detached'] / step['without head']:7.3f} {bare_rate:9.1f} {engine_rate:9.1f} "
        f"{engine_rate / bare_rate:7.3f}"
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"preset {args.preset}, {torch.get_num_threads()} threads; training: {args.steps} interleaved steps "
          f"per kind after {args.warmup} warm-up, the preset's batch size; scoring: {args.score_samples} "
          f"samples x {args.score_rounds} alternating rounds, the preset's eval batch size")
    print(f"{'task':<15} {'plain ms':>9} {'head ms':>9} {'detach ms':>9} {'ratio':>7} {'ratio_d':>7} "
          f"{'bare/s':>9} {'engine/s':>9} {'ratio':>7}")
    for task_name in args.tasks:
        for line in measure(task_name, args):
            print(line, flush=True)
    print("training ratio = with head / without (target <= 1.05; ratio_d: features detached); "
          "scoring ratio = engine / bare samples per second (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

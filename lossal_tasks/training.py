"""train(): the joint objective L_target + lambda * L_loss, with the paper's detach schedule."""
from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from lossal_tasks import distributed
from lossal_tasks.errors import ConfigError, NonFiniteLossError
from lossal_tasks.model import LossPredictionModel
from lossal_tasks.objectives import HEAD_OBJECTIVES, head_objective
from lossal_tasks.runio import move_to
from lossal_tasks.task import Task

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How to train a :class:`LossPredictionModel` on a labeled set.

    ``detach_epoch``: from this epoch on (0-based) the features entering the loss head are
    detached, so the head keeps learning but no longer shapes the backbone (paper: 120 of 200).
    ``loss_weight``: lambda; None takes the task's default. ``objective``: "ranking" (paper) or "mse".
    ``amp``: mixed precision on CUDA (bfloat16 where supported, else float16 with a GradScaler);
    ignored on the CPU. Under torchrun ``batch_size`` is per process.
    ``skip_nonfinite``: a batch whose loss is NaN or infinite is skipped (no optimizer step),
    counted in the epoch's ``nonfinite_batches`` and logged, instead of stopping training.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (160,)
    gamma: float = 0.1
    optimizer: str = "sgd"
    loss_weight: float | None = None
    margin: float = 1.0
    objective: str = "ranking"
    detach_epoch: int | None = 120
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    channels_last: bool = True
    eval_batch_size: int = 256
    amp: bool = False
    skip_nonfinite: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"TrainConfig.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.objective not in HEAD_OBJECTIVES:
            raise ConfigError(
                f"TrainConfig.objective must be one of {sorted(HEAD_OBJECTIVES)}, got {self.objective!r}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be positive, got {self.lr}")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        return cls(**values)


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; asking for CUDA without a GPU raises ConfigError."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def prepare_inputs(inputs: Any, device: torch.device, channels_last: bool) -> Any:
    inputs = move_to(inputs, device)
    if channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def make_loader(task: Task, dataset: Dataset, batch_size: int, num_workers: int = 0,
                shuffle: bool = False, seed: int = 0, sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with the task's collate; shuffling uses a generator seeded with ``seed``
    (a ``sampler``, e.g. a DistributedSampler, replaces the shuffle)."""
    shuffle = shuffle and sampler is None
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, sampler=sampler,
                      num_workers=num_workers, collate_fn=task.collate,
                      persistent_workers=False, pin_memory=False)


def _optimizer(model: LossPredictionModel, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _wrap_for_ranks(model: LossPredictionModel, device: torch.device,
                    config: TrainConfig) -> torch.nn.Module:
    """``model`` in DistributedDataParallel under torchrun (gradients averaged over ranks), else itself.

    Call after the lazily built head exists, so DDP registers and broadcasts its parameters too.
    After the detach epoch a tapped layer that feeds only the head gets no gradient; DDP must then
    look for unused parameters, so it does whenever this run detaches.
    """
    if not distributed.is_distributed():
        return model
    detaches = config.detach_epoch is not None and config.detach_epoch < config.epochs
    device_ids = None
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=detaches)


def _autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``, or None for float32 (CPU, or amp off)."""
    if not amp:
        return None
    if device.type != "cuda":
        log.warning("TrainConfig.amp: mixed precision is used on CUDA only; training on %s in float32", device)
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def show_progress() -> bool:
    """tqdm bars only on a terminal."""
    return sys.stderr.isatty()


def train(task: Task, model: LossPredictionModel, dataset: Dataset, config: TrainConfig,
          eval_dataset: Dataset | None = None, context: str = "") -> list[dict[str, float]]:
    """Train ``model`` (target + loss head) on ``dataset`` with the joint objective.

    Per batch: ``per_sample = task.per_sample_loss(outputs, targets)`` [B];
    ``loss = task.batch_loss(per_sample, ...) + lambda * head_objective(predicted [B], per_sample
    detached)``. From ``config.detach_epoch`` on, the head sees detached features.

    Returns one dict per epoch (``epoch``, ``target_loss``, ``head_loss``, ``lr``, ``seconds``,
    ``detached``, ``nonfinite_batches``), plus evaluation metrics on ``eval_dataset`` after the last epoch when given.
    A non-finite loss raises NonFiniteLossError naming ``context``, the epoch and the batch, before
    any file is written; with ``config.skip_nonfinite`` the batch is skipped and counted instead.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    # Under torchrun every rank gets a disjoint, equally long share, reshuffled per epoch with the seed.
    sampler = (DistributedSampler(dataset, num_replicas=distributed.world_size(), rank=distributed.rank(),
                                  shuffle=True, seed=config.seed) if distributed.is_distributed() else None)
    loader = make_loader(task, dataset, config.batch_size, config.num_workers, shuffle=True,
                         seed=config.seed, sampler=sampler)
    if len(dataset) == 0:
        raise ConfigError("train(): the labeled set is empty")
    if model.head is None:
        first_inputs, _ = task.collate([dataset[0]])
        model.initialize(prepare_inputs(first_inputs, device, config.channels_last))
    net = _wrap_for_ranks(model, device, config)
    amp_dtype = _autocast_dtype(device, config.amp)
    # float16 gradients underflow without loss scaling; bfloat16 and float32 need none.
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
    head_loss_fn = head_objective(config.objective, config.margin)
    loss_weight = task.loss_weight if config.loss_weight is None else config.loss_weight
    history: list[dict[str, float]] = []
    epochs = tqdm(range(config.epochs), desc=f"train {context}".strip(), leave=False,
                  disable=not show_progress())
    for epoch in epochs:
        detached = config.detach_epoch is not None and epoch >= config.detach_epoch
        model.train()
        started = time.perf_counter()
        target_total = head_total = 0.0
        batches = skipped = 0
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch, (inputs, targets) in enumerate(loader):
            inputs = prepare_inputs(inputs, device, config.channels_last)
            targets = move_to(targets, device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                prediction = net(inputs, detach_features=detached)
                per_sample = task.per_sample_loss(prediction.outputs, targets)
                target_loss = task.batch_loss(per_sample, prediction.outputs, targets)
            # The ranking loss compares nearby values: keep it, and the sum, in float32.
            per_sample, target_loss = per_sample.float(), target_loss.float()
            head_loss = head_loss_fn(prediction.loss.float(), per_sample.detach())
            loss = target_loss + loss_weight * head_loss
            # Every rank must take the same branch, or the others wait forever in DDP's all-reduce.
            if not distributed.all_ranks_true(bool(torch.isfinite(loss.detach()))):
                where = f"{context}, " if context else ""
                problem = (f"non-finite loss {loss.item()} at {where}epoch {epoch}, batch {batch} "
                           f"(target loss {target_loss.item()}, head loss {head_loss.item()})")
                if not config.skip_nonfinite:
                    raise NonFiniteLossError(f"{problem}; nothing of this training is saved (skip such "
                                             "batches with skip_nonfinite, --skip-nonfinite)")
                log.warning("skipping the batch: %s", problem)
                skipped += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            target_total += target_loss.item()
            head_total += head_loss.item()
            batches += 1
        if skipped and not batches:
            raise NonFiniteLossError(f"every batch of {f'{context}, ' if context else ''}epoch {epoch} had a "
                                     f"non-finite loss ({skipped} skipped); the model cannot learn from this data")
        scheduler.step()
        target_mean, head_mean = distributed.mean_over_ranks(
            [target_total / max(1, batches), head_total / max(1, batches)])
        record = {"epoch": epoch, "target_loss": target_mean,
                  "head_loss": head_mean, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - started, "detached": detached,
                  "nonfinite_batches": skipped}
        history.append(record)
        epochs.set_postfix(loss=f"{record['target_loss']:.3f}", head=f"{record['head_loss']:.3f}")
        log.debug("%s epoch %d: %s", context, epoch, record)
    skipped_total = sum(record["nonfinite_batches"] for record in history)
    if skipped_total:
        log.warning("%s: skipped %d batches with a non-finite loss", context or "train", skipped_total)
    if eval_dataset is not None:
        from lossal_tasks.evaluation import evaluate

        history[-1].update(evaluate(task, model, eval_dataset, config.eval_batch_size, config.device,
                                    config.num_workers, config.channels_last))
    return history

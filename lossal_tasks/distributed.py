"""Running under ``torchrun``: process group set-up, sharding and gathering, rank-0-only writes.

Every helper here is a no-op in a single process (no process group), so library code calls them
unconditionally. Under ``torchrun --nproc_per_node N`` the tools call :func:`init_from_env` first;
training then wraps the model in DistributedDataParallel, scoring splits the candidates with
:func:`shard` and reassembles them with :func:`all_gather_rows`, and only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from lossal_tasks.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Whether init_from_env created the process group, so shutdown() leaves alone one a caller made.
_joined_here = False


def _launched_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a whole number") from None


def init_from_env(device: str = "cpu", timeout_minutes: float = 30.0) -> bool:
    """Join the process group that ``torchrun`` describes in RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR and MASTER_PORT; returns True when running with more than one process.

    The backend is ``nccl`` for a CUDA ``device`` (each process takes the GPU numbered by its
    LOCAL_RANK) and ``gloo`` for the CPU. Without torchrun (WORLD_SIZE unset or 1) nothing happens.
    Calling it again once joined (here or by the caller) is a no-op.
    """
    global _joined_here
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if _launched_size() <= 1:
        return False
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                              "use --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    _joined_here = True
    log.info("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)
    return dist.get_world_size() > 1


@contextlib.contextmanager
def process_group_session(device: str = "cpu") -> Iterator[None]:
    """For a command-line tool: join torchrun's process group (nothing outside torchrun), silence
    stdout on every rank but 0 so each line is printed once, and leave the group on the way out."""
    init_from_env(device)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(sys.stdout if is_main() else devnull):
            yield
    finally:
        shutdown()


def shutdown() -> None:
    """Leave the process group that :func:`init_from_env` joined; call at the end of a tool.
    A group the caller set up itself is left to the caller."""
    global _joined_here
    if _joined_here and dist.is_initialized():
        dist.destroy_process_group()
    _joined_here = False


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes take part (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files and prints.

    Before the process group is joined, torchrun's RANK variable decides, so a script that never
    calls :func:`init_from_env` still has a single writer.
    """
    if is_distributed():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0").strip() in ("", "0")


def barrier() -> None:
    """Wait until every process gets here; a no-op in a single process."""
    if is_distributed():
        dist.barrier(**_barrier_args())


def _barrier_args() -> dict[str, Any]:
    # nccl otherwise guesses the GPU from the rank, which is wrong on multi-node launches.
    if dist.get_backend() == "nccl":
        return {"device_ids": [torch.cuda.current_device()]}
    return {}


def _collective_device() -> torch.device:
    """Where tensors must live for the backend's collectives: the local GPU for nccl, else CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard_bounds(count: int, block: int = 1, rank_: int | None = None,
                 world: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of this rank's contiguous share of ``count`` items, cut at multiples of
    ``block``.

    The items are grouped into ``ceil(count / block)`` blocks and the blocks are split as evenly as
    possible, earlier ranks taking the extra ones; shares follow rank order and together cover
    ``range(count)`` exactly once. With ``block`` = the scoring batch size every rank runs exactly
    the batches a single process would run, so the gathered scores equal the single-process ones.
    A rank may get an empty share when there are fewer blocks than ranks.
    """
    mine = rank_ is None and world is None
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if block < 1:
        raise ConfigError(f"shard block must be at least 1, got {block}")
    if not 0 <= rank_ < world:
        raise ConfigError(f"rank {rank_} is outside a world of {world} processes")
    blocks = -(-count // block)
    base, extra = divmod(blocks, world)
    first = rank_ * base + min(rank_, extra)
    last = first + base + (1 if rank_ < extra else 0)
    start, stop = min(first * block, count), min(last * block, count)
    if mine and world > 1:
        log.info("rank %d of %d takes items [%d, %d) of %d", rank_, world, start, stop, count)
    return start, stop


def shard(items: Sequence[T], block: int = 1) -> Sequence[T]:
    """This rank's contiguous share of ``items`` (see :func:`shard_bounds`); all of them in a
    single process. Works on lists, numpy arrays and tensors (a slice of the same type)."""
    start, stop = shard_bounds(len(items), block)
    return items[start:stop]


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order, on every rank.

    ``tensor``: [n_r, ...] on rank r; the trailing shape and dtype must agree across ranks, except
    that a rank with no rows may pass any empty tensor. Returns [sum n_r, ...] on the CPU. Used
    with :func:`shard`, rank order is the original order, so row i belongs to item i again.
    In a single process the tensor is returned as is.
    """
    if not is_distributed():
        return tensor
    shapes: list[Any] = [None] * world_size()
    dist.all_gather_object(shapes, (tuple(tensor.shape), str(tensor.dtype)) if tensor.numel() else None)
    filled = [shape for shape in shapes if shape is not None]
    if not filled:
        return tensor.cpu()
    trailing, dtype_name = filled[0][0][1:], filled[0][1]
    for shape, name in filled:
        if shape[1:] != trailing or name != dtype_name:
            raise RuntimeError(f"all_gather_rows: ranks disagree on row shape or dtype: {shapes}")
    dtype = getattr(torch, dtype_name.removeprefix("torch."))
    rows = [0 if shape is None else shape[0][0] for shape in shapes]
    longest = max(rows)
    device = _collective_device()
    # Collectives need equal sizes on every rank: pad to the longest share, trim after.
    padded = torch.zeros((longest, *trailing), dtype=dtype, device=device)
    if tensor.numel():
        padded[: tensor.shape[0]] = tensor.to(device)
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, rows)]).cpu()


def all_ranks_true(flag: bool) -> bool:
    """True when ``flag`` holds on every rank (so all ranks take the same branch); ``flag`` alone
    in a single process."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_over_ranks(values: Sequence[float]) -> list[float]:
    """The mean of each value over the ranks (e.g. per-epoch losses); ``values`` in a single process."""
    if not is_distributed():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / world_size()).cpu().tolist()

"""Atomic file writes and small helpers shared by the run directory code."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch

from lossal_tasks import distributed


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    if not distributed.is_main():
        # Under torchrun only rank 0 writes; the other ranks hold the same state in memory.
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``os.replace``: never half-written."""
    _atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    _atomic_write(path, lambda stream: torch.save(obj, stream))


def move_to(obj: Any, device: torch.device | str) -> Any:
    """Move tensors inside (nested lists, tuples, dicts of) ``obj`` to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {key: move_to(value, device) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [move_to(value, device) for value in obj]
        return type(obj)(moved) if isinstance(obj, list) else tuple(moved)
    return obj


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (e.g. run seed, cycle, purpose), stable across runs."""
    import numpy as np

    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)

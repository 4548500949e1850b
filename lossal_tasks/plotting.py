"""Learning-curve plots from metrics.jsonl records (no task-specific keys)."""
from __future__ import annotations

import io
import os
from typing import Any, Sequence

from lossal_tasks.runio import atomic_write_bytes


def plot_learning_curve(curves: dict[str, Sequence[dict[str, Any]]], metric: str,
                        path: str | os.PathLike, title: str = "") -> None:
    """Plot ``metric`` and ``ranking_accuracy`` against the labeled count, one line per curve.

    ``curves`` maps a label (e.g. a strategy) to its per-cycle records; records may carry
    ``{metric}_std`` for an error band. The PNG is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, records in curves.items():
        labeled = [r["labeled"] for r in records]
        for axis, key in zip(axes, (metric, "ranking_accuracy")):
            values = [r.get(key, float("nan")) for r in records]
            axis.plot(labeled, values, marker="o", label=label)
            spread = [r.get(f"{key}_std") for r in records]
            if all(s is not None for s in spread):
                axis.fill_between(labeled, [v - s for v, s in zip(values, spread)],
                                  [v + s for v, s in zip(values, spread)], alpha=0.2)
    for axis, key in zip(axes, (metric, "ranking_accuracy")):
        axis.set_xlabel("labeled samples")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())

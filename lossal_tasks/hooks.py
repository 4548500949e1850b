"""FeatureTap: capture the outputs of named submodules with forward hooks."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from lossal_tasks.errors import ConfigError


def flatten_tensors(output: Any) -> list[torch.Tensor]:
    """Tensors found in a module output: a tensor, or tuples/lists/dicts of them, in order.

    Dict values follow insertion order; non-tensor leaves (None, ints) are skipped.
    """
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [tensor for item in output for tensor in flatten_tensors(item)]
    return []


class FeatureTap:
    """Forward hooks on the submodules of ``model`` named by dotted path (``"layer1"``, ``"head.0"``).

    After each forward pass, :attr:`features` holds the captured tensors, in the order of
    ``layer_names`` (a layer whose output is a tuple/list/dict contributes all its tensors).
    The hooks stay until :meth:`remove` (or the end of a ``with`` block).
    """

    def __init__(self, model: nn.Module, layer_names: Sequence[str]) -> None:
        if isinstance(layer_names, str):
            layer_names = (layer_names,)
        if not layer_names:
            raise ConfigError("FeatureTap needs at least one layer name")
        modules = dict(model.named_modules())
        missing = [name for name in layer_names if name not in modules]
        if missing:
            available = ", ".join(name for name in modules if name) or "(none)"
            raise ConfigError(
                f"FeatureTap: no module named {missing} in {type(model).__name__}; "
                f"available: {available}"
            )
        self.layer_names = tuple(layer_names)
        self._captured: list[list[torch.Tensor] | None] = [None] * len(layer_names)
        self._handles = [
            modules[name].register_forward_hook(self._hook_for(position))
            for position, name in enumerate(self.layer_names)
        ]

    def _hook_for(self, position: int):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self._captured[position] = flatten_tensors(output)

        return hook

    @property
    def features(self) -> list[torch.Tensor]:
        """Tensors captured by the last forward pass, in layer order."""
        not_run = [name for name, got in zip(self.layer_names, self._captured) if got is None]
        if not_run:
            raise RuntimeError(f"FeatureTap: layers {not_run} did not run in the last forward pass")
        return [tensor for captured in self._captured for tensor in captured]  # type: ignore[union-attr]

    def clear(self) -> None:
        """Forget the captured tensors (frees their memory)."""
        self._captured = [None] * len(self.layer_names)

    def remove(self) -> None:
        """Remove every hook; the model behaves as if never tapped."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()

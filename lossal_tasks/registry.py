"""A small name -> object registry (tasks, datasets, strategies)."""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from lossal_tasks.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or functions) of one kind.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("tiny")
    ... class Tiny: ...
    >>> MODELS.build("tiny")  # doctest: +ELLIPSIS
    <...Tiny object at ...>
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a name already taken raises ConfigError."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(obj: T) -> T:
            if name in self._entries:
                raise ConfigError(
                    f"{self.kind} {name!r} is already registered (by {self._entries[name]!r}); "
                    "pick another name"
                )
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises ConfigError listing the known."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(self.names()) or "(none)"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the object registered as ``name`` with ``kwargs`` and return the result."""
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what was registered (e.g. a plugin or a test cleaning up)."""
        self.get(name)
        return self._entries.pop(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


TASKS: Registry = Registry("task")
DATASETS: Registry = Registry("dataset")
STRATEGIES: Registry = Registry("strategy")

"""Error types. Every error lossal raises on bad input is a :class:`LossalError`.

The kinds say who must act: :class:`BadDataError` (fix the data file it names),
:class:`ConfigError` (fix the option it names), :class:`RunStateError` (the run directory
is not what the command expects).
"""
from __future__ import annotations


class LossalError(Exception):
    """Base class of every error lossal raises on purpose."""


class BadDataError(LossalError, ValueError):
    """A data file or sample is missing, corrupt or inconsistent; the message names it."""


class ConfigError(LossalError, ValueError):
    """An option, name or argument is invalid; the message names it and what is allowed."""


class RunStateError(LossalError, RuntimeError):
    """A run directory is missing, incomplete, from another task, or in use."""


class NonFiniteLossError(LossalError, FloatingPointError):
    """Training produced a NaN or infinite loss; the message names cycle, epoch and batch."""

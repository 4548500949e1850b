"""One writer per run directory: a lock file holding the owner's pid, host and start time.

The lock is created with ``O_CREAT | O_EXCL`` (atomic on a local file system), so of two processes
started on the same run directory exactly one gets it; the other raises :class:`RunStateError`
naming the directory and the holder. A lock left by a process that died (SIGKILL, power loss) is
stale: on the same host its pid no longer runs, or runs a different program started later (pid
reuse), and the next process takes it over. Under torchrun only rank 0 writes, so only rank 0 locks.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from lossal_tasks import distributed
from lossal_tasks.errors import RunStateError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
# An unreadable lock younger than this may still be being written by its creator.
_WRITE_GRACE_SECONDS = 10.0


def _process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces or parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process ``pid`` of this host runs (a zombie counts as dead). With ``start_ticks``,
    a process with that pid started at another time is a reused pid and counts as dead too."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    if _process_state(pid) == "Z":
        return False
    if start_ticks is not None:
        current = _process_start_ticks(pid)
        if current is not None and current != start_ticks:
            return False
    return True


class RunLock:
    """Exclusive use of a run directory; use as ``with RunLock(run_dir): ...``.

    ``acquire`` raises RunStateError when another live process holds the lock, and takes over a
    stale one (logged). The lock file is JSON: ``pid``, ``hostname``, ``started`` (UTC, ISO 8601),
    ``start_ticks`` (the pid's start time, to tell a reused pid) and ``command``.
    """

    def __init__(self, run_dir: str | os.PathLike, command: str = "") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self.held = False
        self.took_over: dict[str, Any] | None = None

    def _owner(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "hostname": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "start_ticks": _process_start_ticks(os.getpid()), "command": self.command}

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The holder recorded in ``path``; None when the file is empty or malformed."""
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None

    def _is_stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > _WRITE_GRACE_SECONDS
        if holder.get("hostname") != socket.gethostname():
            return False  # a pid on another host cannot be checked from here
        if holder["pid"] == os.getpid():
            return False
        return not process_alive(holder["pid"], holder.get("start_ticks"))

    def _describe(self, holder: dict[str, Any] | None) -> str:
        if holder is None:
            return f"{self.run_dir} is locked ({self.path} is being written by another process)"
        return (f"{self.run_dir} is in use by pid {holder['pid']} on {holder.get('hostname')} "
                f"(since {holder.get('started')}{', ' + holder['command'] if holder.get('command') else ''}); "
                f"wait for it to finish, or if that process is gone delete {self.path}")

    def _take_over(self, holder: dict[str, Any] | None) -> bool:
        """Remove the stale lock we judged; False if the file changed meanwhile (someone else
        took over first)."""
        aside = self.path.with_name(f".{LOCK_FILE}.{os.getpid()}.stale")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return True
        if self._read(aside) == holder:
            aside.unlink()
            return True
        # We moved a fresh lock of a faster process aside: put it back unless yet another exists.
        try:
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False

    def acquire(self) -> "RunLock":
        """Take the lock (the directory must exist); RunStateError if a live process holds it."""
        if not distributed.is_main():
            return self
        if not self.run_dir.is_dir():
            raise RunStateError(f"{self.run_dir}: run directory not found")
        for _ in range(5):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read(self.path)
                if not self._is_stale(holder):
                    raise RunStateError(self._describe(holder)) from None
                if self._take_over(holder):
                    log.warning("%s: taking over the stale lock of %s", self.run_dir,
                                "an unfinished writer" if holder is None else
                                f"pid {holder['pid']} (started {holder.get('started')}), which is no longer running")
                    self.took_over = holder or {}
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(json.dumps(self._owner(), sort_keys=True) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            self.held = True
            return self
        raise RunStateError(f"{self.run_dir}: could not take the lock {self.path} (contended)")

    def release(self) -> None:
        """Drop the lock if this process holds it (a lock of another pid is left alone)."""
        if not self.held:
            return
        self.held = False
        holder = self._read(self.path)
        if holder is not None and holder.get("pid") == os.getpid():
            self.path.unlink()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def remove_partial_files(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temp files of atomic writes that a killed writer left under ``run_dir``
    (``.<name>.<random>.tmp``, see runio); returns them. Call only while holding the run lock:
    a live writer's temp file looks the same."""
    removed = []
    for path in sorted(Path(run_dir).rglob(".*.tmp")):
        if path.is_file():
            path.unlink()
            removed.append(path)
            log.warning("removed %s, left half-written by an interrupted run", path)
    return removed

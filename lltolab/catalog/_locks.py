"""Exclusive advisory file locks (flock on POSIX, msvcrt on Windows)."""

from __future__ import annotations

import os
import time
from typing import IO, Any


class FileLock:
    """Exclusive advisory lock on an open file (flock on POSIX, msvcrt on Windows)."""

    def __init__(self, fileobj: IO[Any]) -> None:
        self._f = fileobj

    def try_acquire(self) -> bool:
        """Take the lock if free; False at once if another holder has it."""
        fd = self._f.fileno()
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            try:
                os.lseek(fd, 0, os.SEEK_SET)  # lock byte 0 (append writes still go to the end)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            except OSError:
                return False
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire_within(self, timeout_s: float, what: str) -> None:
        """Take the lock, polling; raise TimeoutError after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} still locked by another process after {timeout_s} s")
            time.sleep(0.05)


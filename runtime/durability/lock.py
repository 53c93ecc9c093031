"""``DirectoryLock``: one open runtime owns a data directory, for as long as it is open.

Two runtimes on one directory would each keep their own live instance of an actor, with its
own cached state, and overwrite each other's acknowledged writes. The lock is ``flock`` on
``roost.lock`` inside the directory, taken before LMDB is opened and released after it is
closed. The kernel drops it with the process, so ``kill -9`` never leaves a stale lock. It
covers writing owners only: a tool that opens the LMDB environment read-only (as the crash
loop does to count reader slots) does not take it, and LMDB's own lock file keeps such
readers consistent.
"""

from __future__ import annotations

import fcntl
import os

from ..errors import DataDirectoryLockedError

LOCK_FILE_NAME = "roost.lock"


class DirectoryLock:
    """The exclusive lock of ``path``, taken at once or not at all."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        lock_path = os.path.join(path, LOCK_FILE_NAME)
        self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            raise DataDirectoryLockedError(
                f"data directory {os.path.abspath(path)!r} is in use by another open Roost runtime"
                f"{_describe(holder)}: one runtime owns a data directory at a time"
            ) from None
        except BaseException:
            os.close(self._fd)
            raise
        # The holder's pid, for the error a second opener gets; only ever read by one.
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the directory up (closing the descriptor drops the lock)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file, if it reads as one."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _describe(holder: int | None) -> str:
    if holder is None:
        return ""
    return f" (pid {holder}, this process)" if holder == os.getpid() else f" (pid {holder})"

"""One writer per run store: an exclusive ``flock`` on the store's folder, held while writing.

The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
crashed run never leaves a stale lock behind. The holder's pid is recorded in the store's
attributes (``stream3d.writer``) so that a refused second writer can name it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

from stream3d.errors import UserError


class StoreLock:
    """An exclusive lock on a store folder; :meth:`release` (or process exit) frees it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def try_acquire(cls, folder: Path) -> StoreLock | None:
        """The lock on ``folder``, or None when another open file (process) holds it."""
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise UserError(f"cannot lock the run store {folder}: {exc}") from None
        return cls(fd, folder)

    @classmethod
    def acquire(cls, folder: Path) -> StoreLock:
        """The lock on ``folder``; :class:`UserError` naming the holder when it is taken."""
        lock = cls.try_acquire(folder)
        if lock is None:
            pid = holder_pid(folder)
            who = f"process {pid}" if pid is not None else "another process"
            raise UserError(f"run store {folder} is being written by {who} (one writer per "
                            "store): wait for it to end, or write to another --out")
        return lock

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


def holder_pid(folder: Path) -> int | None:
    """The pid the store's attributes name as its writer (None when unknown)."""
    try:
        meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
        pid = meta["attributes"]["stream3d"]["writer"]["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) else None

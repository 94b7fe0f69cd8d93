"""An exclusive lock on a destination file for as long as one process or thread writes it.

`locked(dest)` holds an `flock` on `.<name>.lock` beside `dest`. The holder removes that file before
releasing it, so none is left behind; a waiter that then obtains the lock of the removed file sees
that it is no longer the file under the lock's name and locks the current one instead, so two
holders never overlap. flock locks belong to an open file description: two threads of one process
exclude each other as two processes do.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["identity", "lock_path", "locked"]

logger = logging.getLogger(__name__)


def lock_path(dest: Path) -> Path:
    """The lock file of a destination while a download of it runs (removed by the download holding it)."""
    return dest.with_name(f".{dest.name}.lock")


def identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None when absent: whether a file was replaced."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


@contextlib.contextmanager
def locked(dest: Path, *, while_waiting: Callable[[], None] = lambda: None) -> Iterator[bool]:
    """Hold the lock of `dest`; yields whether another holder had to finish first.

    `while_waiting` runs between attempts (every 0.1 s) and may raise to give up (a deadline).
    """
    lock = lock_path(dest)
    waited = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        logger.info("%s: another download of this file is running; waiting for it (%s)", dest, lock)
                        waited = True
                    while_waiting()
                    time.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock):
            break
        os.close(fd)  # the previous holder removed this lock file: lock the current one
    try:
        yield waited
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)  # closing the descriptor releases the lock

"""Small I/O helpers shared by every stage: atomic outputs, file digests, progress lines.

A stage killed halfway must leave nothing that looks done, so every output is written to a
temporary sibling and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["ProgressLog", "atomic_open", "atomic_path", "file_digest", "fingerprint"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it to `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(dest)
    # Unique per thread as well as per process: threads of one process (Prefect's thread pool) may
    # write the same file at once, e.g. a digest memo; the pid stays last for the stale-file check.
    tmp = dest.with_name(f".{dest.name}.tmp-{threading.get_native_id()}-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(dest: Path) -> None:
    """Delete temporaries of `dest` left by processes that were killed (their pid no longer exists)."""
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            logger.info("removing %s, left by a killed process", stale)
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(dest: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open()` whose result appears under `dest` only once closed without error."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(dest) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: str | Path) -> str:
    """Cheap identity of a file for cache keys: size, mtime and the digest of its first MiB."""
    path = Path(path)
    stat = path.stat()
    with open(path, "rb") as handle:
        head = hashlib.sha256(handle.read(1 << 20)).hexdigest()[:16]
    return f"{stat.st_size}-{int(stat.st_mtime_ns)}-{head}"


class ProgressLog:
    """Periodic log lines with counts and rates, for long loops (at most one line per `interval` s)."""

    def __init__(
        self,
        what: str,
        *,
        unit: str = "lines",
        total: int | None = None,
        interval: float = 10.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.what, self.unit, self.total, self.interval = what, unit, total, interval
        self.log = log or logger
        self.count = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._emit(now)

    def _emit(self, now: float) -> None:
        rate = self.count / max(now - self.start, 1e-9)
        if self.total:
            eta = (self.total - self.count) / max(rate, 1e-9)
            self.log.info(
                "%s: %d/%d %s (%.0f %s/s, ETA %.0fs)",
                self.what,
                self.count,
                self.total,
                self.unit,
                rate,
                self.unit,
                eta,
            )
        else:
            self.log.info("%s: %d %s (%.0f %s/s)", self.what, self.count, self.unit, rate, self.unit)

    def done(self) -> None:
        now = time.monotonic()
        rate = self.count / max(now - self.start, 1e-9)
        self.log.info(
            "%s: done, %d %s in %.1fs (%.0f %s/s)", self.what, self.count, self.unit, now - self.start, rate, self.unit
        )

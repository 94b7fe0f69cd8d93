"""Resumable, verified, time-bounded downloads over http(s)://, file:// or from a local path.

`download()` streams into a hidden partial file `.<name>.part` beside the destination, resumes
it with a `Range` request after transient failures (5xx, resets, timeouts, truncated bodies, a
transfer slower than the minimum rate), verifies size and checksums, and only then renames it to
the final name. A failed download therefore never leaves a file under the final name.
`max_bytes` caps what a server may send; `deadline_s` bounds the whole download, resumes and
retries included (`xlm_core.data.http_transfer`).

Two downloads of one destination at once (a corpus listed twice, two flows sharing a work
directory) take turns: each holds an exclusive `flock` on `.<name>.lock` for its whole download, and
the one that waited returns the file the other completed instead of fetching it again.

A file with nothing to check it against (no checksum, no size) is still checked against the
server's Content-Length, and a warning says so. Mirrors this code builds itself publish a
`SHA256SUMS` list beside their files (`write_checksum_list`, `published_sha256`).

`download_to()` also accepts an fsspec URL as destination (`s3://bucket/key`, `memory://...`):
the file is downloaded and verified locally, uploaded to a temporary sibling key and moved
into place, so the final key too appears only once complete.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlm_core.data.checksums import CHECKSUM_LIST, mismatch, published_sha256, write_checksum_list
from xlm_core.data.file_lock import identity, lock_path, locked
from xlm_core.data.http_transfer import (
    ChecksumError,
    DownloadDeadlineError,
    DownloadError,
    DownloadSizeError,
    DownloadTooSlowError,
    Limits,
    TransientDownloadError,
    fetch_http,
    local_path,
    read_url,
    too_large,
    with_retries,
)

if TYPE_CHECKING:
    from xlm_core.config.transfer import DownloadConfig

__all__ = [
    "CHECKSUM_LIST",
    "ChecksumError",
    "DownloadDeadlineError",
    "DownloadError",
    "DownloadSizeError",
    "DownloadTooSlowError",
    "TransientDownloadError",
    "download",
    "download_options",
    "download_to",
    "is_remote",
    "lock_path",
    "partial_path",
    "published_sha256",
    "read_url",
    "time_limits",
    "to_url",
    "write_checksum_list",
]

logger = logging.getLogger(__name__)

_ALGORITHMS = ("sha1", "md5", "sha256")
# Time limits set by `time_limits` for the downloads of the current thread (or task) that pass none.
_SCOPED_LIMITS: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "download_limits", default=None
)


def to_url(location: str | Path) -> str:
    """`http(s)://` and `file://` URLs unchanged; a local path becomes a `file://` URL."""
    text = str(location)
    if re.match(r"^(https?|file)://", text):
        return text.rstrip("/")
    return Path(text).expanduser().resolve().as_uri()


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def download_options(settings: DownloadConfig) -> dict[str, Any]:
    """`download()` keyword arguments from a config's `data.download` section."""
    return {
        "timeout": settings.timeout_s,
        "retries": settings.retries,
        "deadline_s": settings.deadline_s,
        "min_bytes_per_s": settings.min_bytes_per_s,
        "rate_window_s": settings.rate_window_s,
    }


@contextlib.contextmanager
def time_limits(
    *, deadline_s: float | None = None, min_bytes_per_s: float = 0.0, rate_window_s: float = 120.0
) -> Iterator[None]:
    """Time limits for every `download()` in this block (this thread or task only) that passes none of
    its own, so a stage can bound the downloads of library functions that do not take them (a
    dump fetched from a list of mirrors, say). Each download gets the whole `deadline_s`."""
    token = _SCOPED_LIMITS.set(
        {"deadline_s": deadline_s, "min_bytes_per_s": min_bytes_per_s, "rate_window_s": rate_window_s}
    )
    try:
        yield
    finally:
        _SCOPED_LIMITS.reset(token)


def _limits(
    timeout: float, deadline_s: float | None, min_bytes_per_s: float | None, rate_window_s: float | None
) -> Limits:
    scoped = _SCOPED_LIMITS.get() or {}
    return Limits(
        timeout=timeout,
        deadline_s=deadline_s if deadline_s is not None else scoped.get("deadline_s"),
        min_bytes_per_s=min_bytes_per_s if min_bytes_per_s is not None else scoped.get("min_bytes_per_s", 0.0),
        rate_window_s=rate_window_s if rate_window_s is not None else scoped.get("rate_window_s", 120.0),
    )


def _copy_local(source: Path, part: Path, url: str, max_bytes: int | None = None) -> None:
    if not source.is_file():
        raise DownloadError(f"{url}: no such file {source}", url=url, status=404)
    expected = source.stat().st_size
    if max_bytes is not None and expected > max_bytes:
        raise too_large(url, expected, max_bytes)
    with open(source, "rb") as reader, open(part, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
    if part.stat().st_size != expected:
        part.unlink()
        raise DownloadError(f"{url}: copied {part.stat().st_size} of {expected} bytes (did {source} change?)", url=url)


def download(
    url: str,
    dest: Path,
    *,
    sha1: str | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    size_tolerance: int = 0,
    max_bytes: int | None = None,
    timeout: float = 30,
    retries: int = 5,
    backoff: float = 1.0,
    deadline_s: float | None = None,
    min_bytes_per_s: float | None = None,
    rate_window_s: float | None = None,
) -> Path:
    """Fetch `url` into `dest`, resuming and retrying on transient errors, verifying when asked.

    Args:
        url: `http(s)://` or `file://` URL, or a local path (copied).
        dest: final file; it appears only once complete and verified.
        sha1, md5, sha256, size: expected checksums (hex) and size in bytes, each optional. With none,
            the file is checked against the server's Content-Length only, and a warning says so.
        size_tolerance: accept a size within this many bytes of `size` (sources that publish rounded
            sizes, e.g. OPUS's kilobytes).
        max_bytes: refuse a body larger than this (announced or received), without retrying.
        timeout: connect and per-read timeout in seconds.
        retries: retries after transient errors, with exponential `backoff` seconds between them.
        deadline_s: the longest the whole call may take (waiting for another download of `dest`,
            resumes and retries included); None: the enclosing `time_limits` block's, else none.
        min_bytes_per_s, rate_window_s: a transfer slower than this over a window (default 120 s) is
            a transient failure (resumed, retried); None: the enclosing `time_limits` block's, else
            no minimum.

    Returns:
        `dest`. An existing `dest` that matches the given checksum or size is returned untouched.

    Raises:
        DownloadError: the file is missing or refused (404, 403, ...), raised without retrying.
        TransientDownloadError: transient errors (DownloadTooSlowError among them) persisted after `retries`.
        DownloadDeadlineError: `deadline_s` passed; the partial file is kept for a later resume.
        ChecksumError: the complete download does not match `sha1`/`md5`/`sha256`/`size`.
        DownloadSizeError: the body exceeds `max_bytes`.
    """
    dest = Path(dest)
    limits = _limits(timeout, deadline_s, min_bytes_per_s, rate_window_s)
    checks: dict[str, Any] = {
        "sha1": sha1,
        "md5": md5,
        "sha256": sha256,
        "size": size,
        "size_tolerance": size_tolerance,
    }
    verifiable = any(value is not None for value in (sha1, md5, sha256, size))
    if dest.is_file() and verifiable and mismatch(dest, **checks) is None:
        logger.info("%s: already present and verified", dest)
        return dest
    local = local_path(url)
    if local is None and not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: unsupported scheme; use http(s)://, file:// or a local path", url=url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    before = identity(dest)
    waiting = f"still waiting for another download of {dest} (lock {lock_path(dest)})"
    with locked(dest, while_waiting=lambda: limits.check(url, waiting)) as waited:
        # Re-check under the lock: a download that held it may just have completed this file.
        if dest.is_file() and verifiable and mismatch(dest, **checks) is None:
            logger.info("%s: completed and verified by another download", dest)
            return dest
        if dest.is_file() and waited and not verifiable and identity(dest) != before:
            logger.info("%s: completed by another download while this one waited", dest)
            return dest
        return _download_locked(url, dest, local, limits, checks, retries=retries, backoff=backoff, max_bytes=max_bytes)


def _download_locked(
    url: str,
    dest: Path,
    local: Path | None,
    limits: Limits,
    checks: dict[str, Any],
    *,
    retries: int,
    backoff: float,
    max_bytes: int | None,
) -> Path:
    part = partial_path(dest)
    size, tolerance = checks["size"], checks["size_tolerance"]
    for fresh_start in (False, True):
        if local is not None:
            _copy_local(local, part, url, max_bytes)
            resumed = False
        else:
            if fresh_start:
                part.unlink(missing_ok=True)
            had_partial = part.exists() and part.stat().st_size > 0
            try:
                resumed = _fetch_resuming(url, part, limits, size, tolerance, max_bytes, retries, backoff)
            except DownloadError as e:
                if not isinstance(e, TransientDownloadError | DownloadDeadlineError):
                    part.unlink(missing_ok=True)  # a refused URL makes the partial file meaningless
                raise
            resumed = resumed or had_partial
        problem = mismatch(part, **checks)
        if problem is None:
            os.replace(part, dest)
            _log_saved(url, dest, local, verified=any(checks[name] is not None for name in (*_ALGORITHMS, "size")))
            return dest
        part.unlink(missing_ok=True)
        if resumed and not fresh_start:
            # A stale or corrupt partial file from an earlier run; one clean download settles it.
            logger.warning("%s: %s after resuming; downloading again from byte 0", url, problem)
            continue
        raise ChecksumError(
            f"{url}: downloaded file has {problem}; nothing was kept. The mirror may be corrupt or the "
            "expected checksum stale: check the checksum list or pick another mirror.",
            url=url,
        )
    raise AssertionError("unreachable")


def _fetch_resuming(
    url: str,
    part: Path,
    limits: Limits,
    size: int | None,
    tolerance: int,
    max_bytes: int | None,
    retries: int,
    backoff: float,
) -> bool:
    """Fetch `url` into `part`, resuming after transient failures; True if any attempt resumed."""
    resumed = []

    def attempt() -> None:
        largest = None if size is None else size + tolerance
        resumed.append(fetch_http(url, part, limits=limits, size=largest, max_bytes=max_bytes))

    with_retries(attempt, url=url, retries=retries, backoff=backoff, limits=limits)
    return any(resumed)


def _log_saved(url: str, dest: Path, local: Path | None, *, verified: bool) -> None:
    size = dest.stat().st_size
    if verified:
        logger.info("%s: saved %s (%d bytes, verified)", url, dest, size)
    elif local is not None:
        logger.warning("%s: copied to %s (%d bytes) with no checksum or size to verify it against", url, dest, size)
    else:
        logger.warning(
            "%s: saved %s (%d bytes); no checksum or size is known for this file, so only the server's "
            "Content-Length verified it",
            url,
            dest,
            size,
        )


def is_remote(location: str | Path) -> bool:
    """True for fsspec URLs other than local files (`s3://`, `gs://`, `memory://`, ...)."""
    text = str(location)
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", text)) and not text.startswith("file://")


def _remote_matches(fs: Any, path: str, *, size: int | None, size_tolerance: int, **digests: str | None) -> bool:
    if not fs.exists(path):
        return False
    if size is not None and abs(int(fs.size(path)) - size) > size_tolerance:
        return False
    expected = {name: value.lower() for name, value in digests.items() if value}
    if expected:
        hashers = {name: hashlib.new(name) for name in expected}
        with fs.open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                for hasher in hashers.values():
                    hasher.update(chunk)
        return all(hashers[name].hexdigest() == value for name, value in expected.items())
    return True


def download_to(url: str, dest: str | Path, *, staging_dir: Path | None = None, **options: Any) -> str:
    """`download()` to a local path or to any fsspec URL; returns the final location as a string.

    For a remote `dest` (`s3://…`, `memory://…`) the file is fetched and verified under
    `staging_dir` (a local directory; default: a temporary one, so a later call cannot resume),
    uploaded to a unique `.{name}.part-…` key beside `dest`, its uploaded size checked, then moved
    to `dest`. An existing remote `dest` matching the given size/checksums is kept untouched.
    `options` are `download()`'s keyword arguments.
    """
    if not is_remote(dest):
        local = local_path(str(dest))
        return str(download(url, local if local is not None else Path(dest), **options))
    try:
        import fsspec  # optional dependency: only remote destinations need it
    except ImportError as e:
        raise DownloadError(f"{dest}: remote destinations need fsspec (pip install 'fsspec>=2024.2')", url=url) from e
    fs, remote = fsspec.core.url_to_fs(str(dest))
    checks = {name: options.get(name) for name in (*_ALGORITHMS, "size")}
    if any(value is not None for value in checks.values()) and _remote_matches(
        fs, remote, size_tolerance=options.get("size_tolerance", 0), **checks
    ):
        logger.info("%s: already present and verified", dest)
        return str(dest)
    parent, _, name = remote.rstrip("/").rpartition("/")
    unique = f".{name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary = f"{parent}/{unique}" if parent else unique
    with contextlib.ExitStack() as stack:
        local_dir = staging_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xlm-download-")))
        local = download(url, Path(local_dir) / name, **options)
        try:
            fs.put_file(str(local), temporary)
            uploaded = int(fs.size(temporary))
            if uploaded != local.stat().st_size:
                raise TransientDownloadError(
                    f"{dest}: upload incomplete ({uploaded} of {local.stat().st_size} bytes); nothing was kept",
                    url=url,
                )
            fs.mv(temporary, remote)
        except DownloadError:
            raise
        except Exception as e:  # each fsspec backend raises its own types (botocore, gcsfs, ...)
            raise TransientDownloadError(f"{dest}: upload failed ({type(e).__name__}: {e})", url=url) from e
        finally:
            with contextlib.suppress(Exception):
                if fs.exists(temporary):
                    fs.rm(temporary)
        local.unlink(missing_ok=True)
    logger.info("%s: uploaded to %s", url, dest)
    return str(dest)

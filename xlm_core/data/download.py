"""Resumable, verified downloads over http(s)://, file:// or from a local path.

`download()` streams into a hidden partial file `.<name>.part` beside the destination, resumes
it with a `Range` request after transient failures (5xx, resets, timeouts, truncated bodies),
verifies size and checksums, and only then renames it to the final name. A failed download
therefore never leaves a file under the final name. `max_bytes` caps what a server may send.

`download_to()` also accepts an fsspec URL as destination (`s3://bucket/key`, `memory://...`):
the file is downloaded and verified locally, uploaded to a temporary sibling key and moved
into place, so the final key too appears only once complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from xlm_core.io import ProgressLog

__all__ = [
    "ChecksumError",
    "DownloadError",
    "DownloadSizeError",
    "TransientDownloadError",
    "download",
    "download_to",
    "is_remote",
    "partial_path",
    "read_url",
    "to_url",
]

logger = logging.getLogger(__name__)

USER_AGENT = "xlm-pipeline/0.1 (+https://github.com/facebookresearch/XLM)"
CHUNK = 1 << 16
# Statuses worth retrying: the server or a proxy is temporarily unable to answer.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


class DownloadError(ValueError):
    """A download failed for good (missing file, refused access, bad checksum)."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class TransientDownloadError(DownloadError):
    """A download failed on errors that may go away (5xx, reset, timeout); retrying may succeed."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or checksum; nothing was kept."""


class DownloadSizeError(DownloadError):
    """The server sent (or announced) more than `max_bytes`; nothing was kept."""


def to_url(location: str | Path) -> str:
    """`http(s)://` and `file://` URLs unchanged; a local path becomes a `file://` URL."""
    text = str(location)
    if re.match(r"^(https?|file)://", text):
        return text.rstrip("/")
    return Path(text).expanduser().resolve().as_uri()


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not re.match(r"^[a-z][a-z0-9+.-]*://", url):
        return Path(url).expanduser()
    return None


def _digests(path: Path, algorithms: list[str]) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _mismatch(
    path: Path, *, sha1: str | None, md5: str | None, size: int | None, size_tolerance: int = 0
) -> str | None:
    """Why `path` does not match the expectations, or None when it does."""
    actual_size = path.stat().st_size
    if size is not None and abs(actual_size - size) > size_tolerance:
        within = f" ± {size_tolerance}" if size_tolerance else ""
        return f"size {actual_size} bytes, expected {size}{within}"
    expected = {name: value.lower() for name, value in (("sha1", sha1), ("md5", md5)) if value}
    if expected:
        actual = _digests(path, list(expected))
        for name, value in expected.items():
            if actual[name] != value:
                return f"{name} {actual[name]}, expected {value}"
    return None


def _with_retries(action: Callable[[], T], *, url: str, retries: int, backoff: float) -> T:
    attempt = 0
    while True:
        try:
            return action()
        except TransientDownloadError as e:
            attempt += 1
            if attempt > retries:
                raise TransientDownloadError(
                    f"{url}: giving up after {attempt} attempts; last error: {e}. "
                    "Check the server or mirror, or raise `retries`/`timeout`.",
                    url=url,
                    status=e.status,
                ) from e
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("%s: %s; retry %d/%d in %.1fs", url, e, attempt, retries, delay)
            time.sleep(delay)


def _http_error(url: str, error: urllib.error.HTTPError) -> DownloadError:
    if error.code in TRANSIENT_STATUS:
        return TransientDownloadError(f"HTTP {error.code} {error.reason}", url=url, status=error.code)
    hint = " (check the URL, the dump date or the corpus version)" if error.code == 404 else ""
    return DownloadError(f"{url}: HTTP {error.code} {error.reason}{hint}", url=url, status=error.code)


def _open(url: str, *, timeout: float, offset: int = 0) -> http.client.HTTPResponse:
    """Open an http(s) URL; translate failures into DownloadError / TransientDownloadError."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked by caller)
    except urllib.error.HTTPError as e:
        e.close()
        raise _http_error(url, e) from e
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DownloadError(f"{url}: TLS certificate rejected ({reason}); retrying will not help", url=url) from e
        raise TransientDownloadError(f"no response: {reason}", url=url) from e


def read_url(url: str, *, timeout: float = 30, retries: int = 5, backoff: float = 1.0) -> bytes:
    """Whole content of a small file (checksum lists, RSS); a missing file raises status 404."""
    local = _local_path(url)
    if local is not None:
        if not local.is_file():
            raise DownloadError(f"{url}: no such file {local}", url=url, status=404)
        return local.read_bytes()

    def fetch() -> bytes:
        with _open(url, timeout=timeout) as response:
            try:
                body = response.read()
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
                raise TransientDownloadError(f"reading the body failed: {e}", url=url) from e
            expected = response.headers.get("Content-Length")
            if expected is not None and len(body) != int(expected):
                raise TransientDownloadError(f"truncated body: {len(body)} of {expected} bytes", url=url)
            return body

    return _with_retries(fetch, url=url, retries=retries, backoff=backoff)


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def _too_large(url: str, count: int, max_bytes: int) -> DownloadSizeError:
    return DownloadSizeError(
        f"{url}: the server sends more than max_bytes={max_bytes} bytes ({count} so far or announced); "
        "nothing was kept. Raise the cap if the file is genuine.",
        url=url,
    )


def _fetch_http(url: str, part: Path, *, timeout: float, size: int | None, max_bytes: int | None = None) -> bool:
    """One attempt: append the rest of `url` to `part`. Returns True if it resumed a partial file.

    `size` here is the largest acceptable size (expected size plus tolerance).
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        logger.warning("%s: partial file is larger than expected (%d > %d); restarting", part, offset, size)
        part.unlink()
        offset = 0
    try:
        response = _open(url, timeout=timeout, offset=offset)
    except DownloadError as e:
        if e.status == 416 and offset:
            # The partial file already covers the whole resource (or the resource shrank).
            part.unlink()
            raise TransientDownloadError("range not satisfiable; restarting from byte 0", url=url) from e
        raise
    with response:
        resumed = False
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise TransientDownloadError(
                    f"server answered Range {offset}- with {response.headers.get('Content-Range')!r}; restarting",
                    url=url,
                )
            resumed = True
            logger.info("%s: resuming at byte %d", url, offset)
        elif offset:
            logger.info("%s: server ignored the Range request (HTTP %d); restarting", url, response.status)
            offset = 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        total = offset + expected if expected is not None else size
        if max_bytes is not None and total is not None and expected is not None and total > max_bytes:
            raise _too_large(url, total, max_bytes)
        progress = ProgressLog(f"download {part.name[1:-5]}", unit="bytes", total=total, log=logger)
        progress.count = offset
        received = 0
        with open(part, "ab" if resumed else "wb") as handle:
            try:
                while chunk := response.read1(CHUNK):
                    handle.write(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
                    if max_bytes is not None and offset + received > max_bytes:
                        raise _too_large(url, offset + received, max_bytes)
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
                raise TransientDownloadError(f"connection lost after {offset + received} bytes: {e}", url=url) from e
        if expected is not None and received != expected:
            raise TransientDownloadError(
                f"truncated body: {received} of {expected} bytes (file now {offset + received} bytes)", url=url
            )
        progress.done()
        return resumed


def _fetch_with_retries(
    url: str,
    part: Path,
    *,
    timeout: float,
    size: int | None,
    retries: int,
    backoff: float,
    max_bytes: int | None = None,
) -> bool:
    """Fetch into `part` until complete; True if any attempt resumed a partial file."""
    resumed: list[bool] = []
    _with_retries(
        lambda: resumed.append(_fetch_http(url, part, timeout=timeout, size=size, max_bytes=max_bytes)),
        url=url,
        retries=retries,
        backoff=backoff,
    )
    return any(resumed)


def _copy_local(source: Path, part: Path, url: str, max_bytes: int | None = None) -> None:
    if not source.is_file():
        raise DownloadError(f"{url}: no such file {source}", url=url, status=404)
    if max_bytes is not None and source.stat().st_size > max_bytes:
        raise _too_large(url, source.stat().st_size, max_bytes)
    with open(source, "rb") as reader, open(part, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)


def download(
    url: str,
    dest: Path,
    *,
    sha1: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    size_tolerance: int = 0,
    max_bytes: int | None = None,
    timeout: float = 30,
    retries: int = 5,
    backoff: float = 1.0,
) -> Path:
    """Fetch `url` into `dest`, resuming and retrying on transient errors, verifying when asked.

    Args:
        url: `http(s)://` or `file://` URL, or a local path (copied).
        dest: final file; it appears only once complete and verified.
        sha1, md5, size: expected checksums (hex) and size in bytes, each optional.
        size_tolerance: accept a size within this many bytes of `size` (sources that publish rounded
            sizes, e.g. OPUS's kilobytes).
        max_bytes: refuse a body larger than this (announced or received), without retrying.
        timeout: connect and per-read timeout in seconds.
        retries: retries after transient errors, with exponential `backoff` seconds between them.

    Returns:
        `dest`. An existing `dest` that matches the given checksum or size is returned untouched.

    Raises:
        DownloadError: the file is missing or refused (404, 403, ...), raised without retrying.
        TransientDownloadError: transient errors persisted after `retries` retries.
        ChecksumError: the complete download does not match `sha1`/`md5`/`size`.
        DownloadSizeError: the body exceeds `max_bytes`.
    """
    dest = Path(dest)
    verifiable = any(value is not None for value in (sha1, md5, size))
    checks = {"sha1": sha1, "md5": md5, "size": size, "size_tolerance": size_tolerance}
    if dest.is_file() and verifiable and _mismatch(dest, **checks) is None:
        logger.info("%s: already present and verified", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    local = _local_path(url)
    if local is None and not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: unsupported scheme; use http(s)://, file:// or a local path", url=url)

    for fresh_start in (False, True):
        if local is not None:
            _copy_local(local, part, url, max_bytes)
            resumed = False
        else:
            if fresh_start:
                part.unlink(missing_ok=True)
            had_partial = part.exists() and part.stat().st_size > 0
            try:
                resumed = (
                    _fetch_with_retries(
                        url,
                        part,
                        timeout=timeout,
                        size=None if size is None else size + size_tolerance,
                        retries=retries,
                        backoff=backoff,
                        max_bytes=max_bytes,
                    )
                    or had_partial
                )
            except DownloadError as e:
                if not isinstance(e, TransientDownloadError):
                    part.unlink(missing_ok=True)  # a refused URL makes the partial file meaningless
                raise
        problem = _mismatch(part, **checks)
        if problem is None:
            os.replace(part, dest)
            logger.info("%s: saved %s (%d bytes)", url, dest, dest.stat().st_size)
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


def is_remote(location: str | Path) -> bool:
    """True for fsspec URLs other than local files (`s3://`, `gs://`, `memory://`, ...)."""
    text = str(location)
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", text)) and not text.startswith("file://")


def _remote_matches(fs: Any, path: str, *, sha1: str | None, md5: str | None, size: int | None, tolerance: int) -> bool:
    if not fs.exists(path):
        return False
    if size is not None and abs(int(fs.size(path)) - size) > tolerance:
        return False
    expected = {name: value.lower() for name, value in (("sha1", sha1), ("md5", md5)) if value}
    if expected:
        hashers = {name: hashlib.new(name) for name in expected}
        with fs.open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                for hasher in hashers.values():
                    hasher.update(chunk)
        return all(hashers[name].hexdigest() == value for name, value in expected.items())
    return True


def download_to(
    url: str,
    dest: str | Path,
    *,
    sha1: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    size_tolerance: int = 0,
    max_bytes: int | None = None,
    timeout: float = 30,
    retries: int = 5,
    backoff: float = 1.0,
    staging_dir: Path | None = None,
) -> str:
    """`download()` to a local path or to any fsspec URL; returns the final location as a string.

    For a remote `dest` (`s3://…`, `memory://…`) the file is fetched and verified under
    `staging_dir` (a local directory; default: a temporary one, so a later call cannot resume),
    uploaded to `.{name}.part-{pid}` beside `dest`, its uploaded size checked, then moved to
    `dest`. An existing remote `dest` matching the given size/checksums is kept untouched.
    The other arguments are `download()`'s.
    """
    options: dict[str, Any] = {
        "sha1": sha1,
        "md5": md5,
        "size": size,
        "size_tolerance": size_tolerance,
        "max_bytes": max_bytes,
        "timeout": timeout,
        "retries": retries,
        "backoff": backoff,
    }
    if not is_remote(dest):
        local = _local_path(str(dest))
        return str(download(url, local if local is not None else Path(dest), **options))
    try:
        import fsspec  # optional dependency: only remote destinations need it
    except ImportError as e:
        raise DownloadError(f"{dest}: remote destinations need fsspec (pip install 'fsspec>=2024.2')", url=url) from e
    fs, remote = fsspec.core.url_to_fs(str(dest))
    verifiable = any(value is not None for value in (sha1, md5, size))
    if verifiable and _remote_matches(fs, remote, sha1=sha1, md5=md5, size=size, tolerance=size_tolerance):
        logger.info("%s: already present and verified", dest)
        return str(dest)
    parent, _, name = remote.rstrip("/").rpartition("/")
    temporary = f"{parent}/.{name}.part-{os.getpid()}" if parent else f".{name}.part-{os.getpid()}"
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

"""HTTP(S) transfers behind `xlm_core.data.download`: the error types, time limits and one attempt.

An attempt appends the rest of a URL to a partial file (a `Range` request when part of it is there).
Three limits bound it: the socket timeout (each connect and read), a minimum transfer rate averaged
over a window (a server dripping a byte every few seconds never trips the socket timeout), and the
deadline of the whole download, resumes and retries included. The deadline is enforced by a watchdog
that shuts the attempt's sockets down when it passes, so a read blocked in the status line, the
headers or the body cannot outlive it.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from xlm_core.io import ProgressLog

__all__ = [
    "ChecksumError",
    "DownloadDeadlineError",
    "DownloadError",
    "DownloadSizeError",
    "DownloadTooSlowError",
    "NETWORK_ERRORS",
    "Limits",
    "TransientDownloadError",
    "fetch_http",
    "local_path",
    "open_url",
    "read_url",
    "too_large",
    "with_retries",
]

logger = logging.getLogger(__name__)

USER_AGENT = "xlm-pipeline/0.1 (+https://github.com/facebookresearch/XLM)"
CHUNK = 1 << 16
# Statuses worth retrying: the server or a proxy is temporarily unable to answer.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
NETWORK_ERRORS = (TimeoutError, ConnectionError, http.client.HTTPException, OSError)
T = TypeVar("T")


class DownloadError(ValueError):
    """A download failed for good (missing file, refused access, bad checksum)."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class TransientDownloadError(DownloadError):
    """A download failed on errors that may go away (5xx, reset, timeout); retrying may succeed."""


class DownloadTooSlowError(TransientDownloadError):
    """The transfer rate stayed below the minimum over a whole window; another attempt or mirror may be faster."""


class DownloadDeadlineError(DownloadError):
    """The whole download (resumes and retries included) did not finish before its deadline."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or checksum; nothing was kept."""


class DownloadSizeError(DownloadError):
    """The server sent (or announced) more than `max_bytes`; nothing was kept."""


@dataclass
class Limits:
    """Time limits of one download. `deadline_s` None: no deadline; `min_bytes_per_s` 0: no minimum rate."""

    timeout: float = 30.0
    deadline_s: float | None = None
    min_bytes_per_s: float = 0.0
    rate_window_s: float = 120.0
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float | None:
        return None if self.deadline_s is None else self.started + self.deadline_s - time.monotonic()

    def socket_timeout(self) -> float:
        left = self.remaining()
        return self.timeout if left is None else max(min(self.timeout, left), 0.05)

    def expired(self, url: str, what: str) -> DownloadDeadlineError:
        return DownloadDeadlineError(
            f"{url}: {what} after {time.monotonic() - self.started:.0f} s, past the deadline of "
            f"{self.deadline_s:.0f} s for the whole download (data.download.deadline_s). The partial file is kept, "
            "so a rerun resumes it; raise the deadline or pick a faster mirror.",
            url=url,
        )

    def passed(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def check(self, url: str, what: str = "still downloading") -> None:
        if self.passed():
            raise self.expired(url, what)


def with_retries(action: Callable[[], T], *, url: str, retries: int, backoff: float, limits: Limits | None = None) -> T:
    """Run `action`, retrying TransientDownloadError with exponential backoff, within the deadline."""
    attempt = 0
    while True:
        if limits is not None:
            limits.check(url, "not finished")
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
            left = limits.remaining() if limits is not None else None
            if left is not None and left <= delay:
                raise limits.expired(url, f"gave up waiting to retry ({e})") from e  # type: ignore[union-attr]
            logger.warning("%s: %s; retry %d/%d in %.1fs", url, e, attempt, retries, delay)
            time.sleep(delay)


class _Watchdog:
    """Shuts down the sockets its connections open once its time is up, so a blocked read returns.

    Sockets are taken when they connect (urllib drops the connection's reference to its socket once
    the headers are read, the response keeps reading it), and one connecting after the time is up
    is shut down at once."""

    def __init__(self, seconds: float | None) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire) if seconds is not None else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def connection_class(self, cls: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        watchdog = self

        class Watched(cls):  # type: ignore[valid-type, misc]
            def connect(self) -> None:
                super().connect()
                watchdog._watch(self.sock)

        return Watched

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            # The plain socket's shutdown, also under TLS: it wakes a reader blocked in recv.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                self._shut(sock)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    class WatchedHTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(watchdog.connection_class(http.client.HTTPConnection), req)

    class WatchedHTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(
                watchdog.connection_class(http.client.HTTPSConnection),
                req,
                context=self._context,  # type: ignore[attr-defined]
            )

    return urllib.request.build_opener(WatchedHTTP(), WatchedHTTPS())


def _http_error(url: str, error: urllib.error.HTTPError) -> DownloadError:
    if error.code in TRANSIENT_STATUS:
        return TransientDownloadError(f"HTTP {error.code} {error.reason}", url=url, status=error.code)
    hint = " (check the URL, the dump date or the corpus version)" if error.code == 404 else ""
    return DownloadError(f"{url}: HTTP {error.code} {error.reason}{hint}", url=url, status=error.code)


@contextlib.contextmanager
def open_url(url: str, *, limits: Limits, offset: int = 0) -> Iterator[tuple[http.client.HTTPResponse, _Watchdog]]:
    """Open an http(s) URL under the watchdog of `limits`' deadline; failures become DownloadError types."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    limits.check(url, "not started")
    watchdog = _Watchdog(limits.remaining())
    try:
        try:
            response = _opener(watchdog).open(request, timeout=limits.socket_timeout())
        except urllib.error.HTTPError as e:
            e.close()
            raise _http_error(url, e) from e
        except NETWORK_ERRORS as e:
            if watchdog.fired or limits.passed():
                raise limits.expired(url, "no answer") from e
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise DownloadError(
                    f"{url}: TLS certificate rejected ({reason}); retrying will not help", url=url
                ) from e
            raise TransientDownloadError(f"no response: {reason}", url=url) from e
        with response:
            yield response, watchdog
    finally:
        watchdog.cancel()


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def too_large(url: str, count: int, max_bytes: int) -> DownloadSizeError:
    return DownloadSizeError(
        f"{url}: the server sends more than max_bytes={max_bytes} bytes ({count} so far or announced); "
        "nothing was kept. Raise the cap if the file is genuine.",
        url=url,
    )


class _RateMeter:
    """Bytes per second over consecutive windows; `check` raises when a whole window was too slow."""

    def __init__(self, url: str, limits: Limits) -> None:
        self.url, self.limits = url, limits
        self.window_start, self.window_bytes = time.monotonic(), 0

    def add(self, count: int) -> None:
        self.window_bytes += count
        if self.limits.min_bytes_per_s <= 0:
            return
        now = time.monotonic()
        elapsed = now - self.window_start
        if elapsed < self.limits.rate_window_s:
            return
        rate = self.window_bytes / elapsed
        if rate < self.limits.min_bytes_per_s:
            raise DownloadTooSlowError(
                f"{self.url}: {rate:.0f} bytes/s over the last {elapsed:.0f} s, below the minimum of "
                f"{self.limits.min_bytes_per_s:.0f} bytes/s (data.download.min_bytes_per_s)",
                url=self.url,
            )
        self.window_start, self.window_bytes = now, 0


def fetch_http(url: str, part: Path, *, limits: Limits, size: int | None, max_bytes: int | None = None) -> bool:
    """One attempt: append the rest of `url` to `part`. Returns True if it resumed a partial file.

    `size` here is the largest acceptable size (expected size plus tolerance).
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        logger.warning("%s: partial file is larger than expected (%d > %d); restarting", part, offset, size)
        part.unlink()
        offset = 0
    try:
        with open_url(url, limits=limits, offset=offset) as (response, watchdog):
            return _receive(url, part, response, watchdog, limits=limits, offset=offset, size=size, max_bytes=max_bytes)
    except DownloadError as e:
        if e.status == 416 and offset:
            # The partial file already covers the whole resource (or the resource shrank).
            part.unlink(missing_ok=True)
            raise TransientDownloadError("range not satisfiable; restarting from byte 0", url=url) from e
        raise


def _receive(
    url: str,
    part: Path,
    response: http.client.HTTPResponse,
    watchdog: _Watchdog,
    *,
    limits: Limits,
    offset: int,
    size: int | None,
    max_bytes: int | None,
) -> bool:
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
        raise too_large(url, total, max_bytes)
    progress = ProgressLog(f"download {part.name[1:-5]}", unit="bytes", total=total, log=logger)
    progress.count = offset
    meter = _RateMeter(url, limits)
    received = 0
    with open(part, "ab" if resumed else "wb") as handle:
        try:
            while chunk := response.read1(CHUNK):
                handle.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
                if max_bytes is not None and offset + received > max_bytes:
                    raise too_large(url, offset + received, max_bytes)
                meter.add(len(chunk))
                limits.check(url)
        except NETWORK_ERRORS as e:
            if watchdog.fired or limits.passed():
                raise limits.expired(url, f"still downloading ({offset + received} bytes)") from e
            raise TransientDownloadError(f"connection lost after {offset + received} bytes: {e}", url=url) from e
    if (watchdog.fired or limits.passed()) and (expected is None or received != expected):
        raise limits.expired(url, f"still downloading ({offset + received} bytes)")
    if expected is not None and received != expected:
        raise TransientDownloadError(
            f"truncated body: {received} of {expected} bytes (file now {offset + received} bytes)", url=url
        )
    if expected is None:
        logger.warning("%s: the server sent no Content-Length; only the transfer's own framing checks the size", url)
    progress.done()
    return resumed


def local_path(url: str) -> Path | None:
    """The local file a `file://` URL or a plain path names; None for a network URL."""
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not re.match(r"^[a-z][a-z0-9+.-]*://", url):
        return Path(url).expanduser()
    return None


def read_url(
    url: str, *, timeout: float = 30, retries: int = 5, backoff: float = 1.0, deadline_s: float | None = 600.0
) -> bytes:
    """Whole content of a small file (checksum lists, RSS, API answers); a missing file raises status 404."""
    local = local_path(url)
    if local is not None:
        if not local.is_file():
            raise DownloadError(f"{url}: no such file {local}", url=url, status=404)
        return local.read_bytes()
    limits = Limits(timeout=timeout, deadline_s=deadline_s)  # a small file: its own deadline, not the scope's

    def fetch() -> bytes:
        with open_url(url, limits=limits) as (response, watchdog):
            try:
                body = response.read()
            except NETWORK_ERRORS as e:
                if watchdog.fired or limits.passed():
                    raise limits.expired(url, "still reading") from e
                raise TransientDownloadError(f"reading the body failed: {e}", url=url) from e
            if watchdog.fired or limits.passed():
                raise limits.expired(url, "still reading")
            expected = response.headers.get("Content-Length")
            if expected is not None and len(body) != int(expected):
                raise TransientDownloadError(f"truncated body: {len(body)} of {expected} bytes", url=url)
            return body

    return with_retries(fetch, url=url, retries=retries, backoff=backoff, limits=limits)

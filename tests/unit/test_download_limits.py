"""download(): a dripping or silent server cannot hold a download past its limits, and two downloads
of one destination at once (threads or processes) end with one verified file, fetched once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.support.http_server import Fault, serve
from xlm_core.data.download import (
    DownloadDeadlineError,
    DownloadTooSlowError,
    TransientDownloadError,
    download,
    partial_path,
    read_url,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def payload(tmp_path: Path) -> tuple[Path, bytes, str]:
    data = os.urandom(300_000)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "file.bin").write_bytes(data)
    return tmp_path / "srv", data, hashlib.sha256(data).hexdigest()


def test_dripping_server_is_too_slow_and_retries_end_in_one_error(payload, tmp_path):
    root, _, sha256 = payload
    dest = tmp_path / "file.bin"
    drip = {"/file.bin": [Fault("drip", times=99, delay=0.1, after_bytes=10)]}  # 100 bytes/s, never a timeout
    with serve(root, faults=drip) as server:
        started = time.monotonic()
        with pytest.raises(TransientDownloadError, match="giving up after 3 attempts.*below the minimum") as info:
            download(
                server.url + "/file.bin",
                dest,
                sha256=sha256,
                timeout=5,
                retries=2,
                backoff=0.01,
                min_bytes_per_s=5000,
                rate_window_s=0.8,
                deadline_s=30,
            )
        elapsed = time.monotonic() - started
        hits = server.hits("/file.bin")
    assert isinstance(info.value.__cause__, DownloadTooSlowError)
    assert 3 * 0.8 <= elapsed < 3 * 0.8 + 3, elapsed  # three windows, not the 50 minutes the drip would take
    assert len(hits) == 3 and all(h.range for h in hits[1:])  # each retry resumed what had arrived
    assert not dest.exists()
    assert 0 < partial_path(dest).stat().st_size < 1000  # kept for a later resume


def test_deadline_bounds_the_whole_download_with_its_resumes(payload, tmp_path):
    root, _, sha256 = payload
    dest = tmp_path / "file.bin"
    drip = {"/file.bin": [Fault("drip", times=99, delay=0.05, after_bytes=200)]}  # fast enough for the rate check
    with serve(root, faults=drip) as server:
        started = time.monotonic()
        with pytest.raises(DownloadDeadlineError, match=r"deadline of 2 s .*data\.download\.deadline_s"):
            download(
                server.url + "/file.bin",
                dest,
                sha256=sha256,
                timeout=30,
                retries=5,
                min_bytes_per_s=100,
                rate_window_s=0.5,
                deadline_s=2,
            )
        elapsed = time.monotonic() - started
    assert 2 <= elapsed < 3.5, elapsed
    assert not dest.exists() and partial_path(dest).exists()
    # The partial file is resumed by a later call without limits.
    with serve(root) as server:
        download(server.url + "/file.bin", dest, sha256=sha256)
        assert server.hits("/file.bin")[0].range is not None
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha256


def test_deadline_interrupts_a_server_that_never_answers(payload, tmp_path):
    root, _, _ = payload
    dest = tmp_path / "file.bin"
    silent = {"/file.bin": [Fault("stall", times=9, delay=20)]}  # headers never come
    with serve(root, faults=silent) as server:
        started = time.monotonic()
        with pytest.raises(DownloadDeadlineError, match="no answer"):
            download(server.url + "/file.bin", dest, timeout=30, retries=0, deadline_s=1)
        assert time.monotonic() - started < 2.5  # the 30 s socket timeout did not apply
        with pytest.raises(DownloadDeadlineError):
            read_url(server.url + "/file.bin", timeout=30, retries=0, deadline_s=1)
    assert not dest.exists()


def test_deadline_interrupts_headers_that_never_end(payload, tmp_path):
    root, _, _ = payload
    dest = tmp_path / "file.bin"
    dripping = {"/file.bin": [Fault("drip_headers", times=9, delay=0.1)]}  # each read well within the timeout
    with serve(root, faults=dripping) as server:
        started = time.monotonic()
        with pytest.raises(DownloadDeadlineError, match="past the deadline of 1 s"):
            download(server.url + "/file.bin", dest, timeout=5, retries=3, deadline_s=1)
        assert time.monotonic() - started < 2.5  # the watchdog shut the socket; http.client would read on
    assert not dest.exists()


def test_deadline_interrupts_a_body_that_stops_coming(payload, tmp_path):
    root, _, _ = payload
    dest = tmp_path / "file.bin"
    stalled = {"/file.bin": [Fault("stall", times=9, delay=20, after_bytes=1000)]}  # 1000 bytes, then silence
    with serve(root, faults=stalled) as server:
        started = time.monotonic()
        with pytest.raises(DownloadDeadlineError, match=r"still downloading \(1000 bytes\)"):
            download(server.url + "/file.bin", dest, timeout=30, retries=3, deadline_s=1)
        assert time.monotonic() - started < 2.5  # neither the 30 s socket timeout nor the 20 s stall
    assert not dest.exists() and partial_path(dest).stat().st_size == 1000


def _slow_start(times: int) -> dict[str, list[Fault]]:
    # The first answer pauses mid-body, so concurrent downloads overlap.
    return {"/file.bin": [Fault("stall", times=times, delay=0.8, after_bytes=1000)]}


@pytest.mark.parametrize("checked", [True, False], ids=["with-checksum", "unverified"])
def test_two_threads_downloading_one_destination_fetch_it_once(payload, tmp_path, checked):
    root, data, sha256 = payload
    dest = tmp_path / "downloads" / "file.bin"
    results: list[Path | BaseException] = []

    def fetch(url: str) -> None:
        try:
            results.append(download(url, dest, sha256=sha256 if checked else None, timeout=5, retries=1))
        except BaseException as e:  # reported below
            results.append(e)

    with serve(root, faults=_slow_start(1)) as server:
        threads = [threading.Thread(target=fetch, args=(server.url + "/file.bin",)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        hits = server.hits("/file.bin")
    assert results == [dest, dest]
    assert dest.read_bytes() == data
    assert len(hits) == 1  # the second download waited for the lock and took the first one's file
    assert not partial_path(dest).exists()


def test_two_processes_downloading_one_destination_agree(payload, tmp_path):
    root, data, sha256 = payload
    dest = tmp_path / "downloads" / "file.bin"
    with serve(root, faults=_slow_start(1)) as server:
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from xlm_core.data.download import download
            download({server.url + "/file.bin"!r}, Path({str(dest)!r}), sha256={sha256!r}, timeout=5, retries=1)
            """
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) for _ in range(2)]
        errors = [proc.communicate(timeout=300)[1].decode() for proc in procs]
        hits = server.hits("/file.bin")
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert dest.read_bytes() == data
    assert len(hits) == 1
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no lock or partial file left

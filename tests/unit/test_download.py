"""download(): every fault ends in a verified file or one clear error, never a half file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.support.http_server import Fault, serve
from xlm_core.data.download import (
    ChecksumError,
    DownloadError,
    DownloadSizeError,
    TransientDownloadError,
    download,
    download_to,
    partial_path,
    read_url,
)

FAST = {"timeout": 2.0, "retries": 4, "backoff": 0.01}


@pytest.fixture()
def payload(tmp_path: Path) -> tuple[Path, bytes, str]:
    data = os.urandom(300_000)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "file.bin").write_bytes(data)
    return tmp_path / "srv", data, hashlib.sha1(data).hexdigest()


def _assert_clean_failure(dest: Path) -> None:
    assert not dest.exists()
    assert not any(p.name.startswith(f".{dest.name}.tmp") for p in dest.parent.iterdir())


def test_plain_download_verified(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "out" / "file.bin"
    with serve(root) as server:
        assert download(server.url + "/file.bin", dest, sha1=sha1, size=len(data), **FAST) == dest
    assert dest.read_bytes() == data
    assert not partial_path(dest).exists()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_then_success(payload, tmp_path, status):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    with serve(root, faults={"/file.bin": [Fault("status", times=2, status=status)]}) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, **FAST)
        assert [r.status for r in server.hits("/file.bin")] == [status, status, 200]
    assert dest.read_bytes() == data


def test_connection_dropped_mid_body_is_resumed(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    with serve(root, faults={"/file.bin": [Fault("drop", after_bytes=100_000)]}) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, **FAST)
        hits = server.hits("/file.bin")
    assert dest.read_bytes() == data
    assert len(hits) == 2 and hits[1].range is not None and hits[1].status == 206
    assert int(hits[1].range.split("=")[1].rstrip("-")) > 0


def test_truncated_body_is_retried(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    with serve(root, faults={"/file.bin": [Fault("truncate", times=2)]}) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, **FAST)
        assert len(server.hits("/file.bin")) == 3
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(data[:1000])
    with serve(root, faults={"/file.bin": [Fault("ignore_range")]}) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, **FAST)
        hits = server.hits("/file.bin")
    assert hits[0].range == "bytes=1000-" and hits[0].status == 200
    assert dest.read_bytes() == data


def test_stall_times_out_then_succeeds(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    with serve(root, faults={"/file.bin": [Fault("stall", delay=1.0)]}) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, timeout=0.3, retries=2, backoff=0.01)
        assert [r.status for r in server.hits("/file.bin")] == [0, 200]
    assert dest.read_bytes() == data


def test_stall_mid_body_times_out_then_resumes(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    with serve(root, faults={"/file.bin": [Fault("stall", delay=1.0, after_bytes=50_000)]}) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, timeout=0.3, retries=2, backoff=0.01)
        assert [r.status for r in server.hits("/file.bin")] == [200, 206]
    assert dest.read_bytes() == data


def test_404_fails_at_once_without_retry(payload, tmp_path):
    root, _, _ = payload
    dest = tmp_path / "missing.bin"
    with serve(root) as server:
        with pytest.raises(DownloadError, match=r"missing\.bin: HTTP 404") as info:
            download(server.url + "/missing.bin", dest, **FAST)
        assert len(server.hits("/missing.bin")) == 1
    assert not isinstance(info.value, TransientDownloadError) and info.value.status == 404
    _assert_clean_failure(dest)
    assert not partial_path(dest).exists()


def test_wrong_checksum_keeps_nothing(payload, tmp_path):
    root, _, _ = payload
    dest = tmp_path / "file.bin"
    with serve(root) as server, pytest.raises(ChecksumError, match="sha1 .* expected 0000"):
        download(server.url + "/file.bin", dest, sha1="0" * 40, **FAST)
    _assert_clean_failure(dest)
    assert not partial_path(dest).exists()


def test_wrong_size_keeps_nothing(payload, tmp_path):
    root, data, _ = payload
    dest = tmp_path / "file.bin"
    with serve(root) as server, pytest.raises(ChecksumError, match="size"):
        download(server.url + "/file.bin", dest, size=len(data) + 1, **FAST)
    _assert_clean_failure(dest)


def test_persistent_errors_give_one_transient_error(payload, tmp_path):
    root, data, _ = payload
    dest = tmp_path / "file.bin"
    with serve(root, faults={"/file.bin": [Fault("status", times=99, status=503)]}) as server:
        with pytest.raises(TransientDownloadError, match="giving up after 3 attempts"):
            download(server.url + "/file.bin", dest, timeout=2, retries=2, backoff=0.01)
        assert len(server.hits("/file.bin")) == 3
    _assert_clean_failure(dest)


def test_stale_partial_from_other_file_is_redownloaded(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(b"x" * 5000)  # same length prefix, wrong bytes
    with serve(root) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, **FAST)
        assert [r.status for r in server.hits("/file.bin")] == [206, 200]
    assert dest.read_bytes() == data


def test_existing_verified_file_is_not_fetched_again(payload, tmp_path):
    root, data, sha1 = payload
    dest = tmp_path / "file.bin"
    dest.write_bytes(data)
    with serve(root) as server:
        download(server.url + "/file.bin", dest, sha1=sha1, **FAST)
        download(server.url + "/file.bin", dest, size=len(data), **FAST)
        assert server.requests == []


def test_local_path_and_file_url(payload, tmp_path):
    root, data, sha1 = payload
    a = download(str(root / "file.bin"), tmp_path / "a.bin", sha1=sha1)
    b = download((root / "file.bin").as_uri(), tmp_path / "b.bin", sha1=sha1)
    assert a.read_bytes() == b.read_bytes() == data
    with pytest.raises(DownloadError, match="no such file"):
        download(str(root / "nope.bin"), tmp_path / "c.bin")
    _assert_clean_failure(tmp_path / "c.bin")


def test_read_url_small_files(payload):
    root, data, _ = payload
    with serve(root, faults={"/file.bin": [Fault("status", status=502)]}) as server:
        assert read_url(server.url + "/file.bin", **FAST) == data
        with pytest.raises(DownloadError) as info:
            read_url(server.url + "/absent.txt", **FAST)
    assert info.value.status == 404


def test_max_bytes_refuses_without_retry_and_keeps_nothing(payload, tmp_path):
    root, data, _ = payload
    dest = tmp_path / "file.bin"
    with serve(root) as server:
        with pytest.raises(DownloadSizeError, match="max_bytes=1000"):
            download(server.url + "/file.bin", dest, max_bytes=1000, **FAST)
        assert len(server.hits("/file.bin")) == 1
    _assert_clean_failure(dest)
    assert not partial_path(dest).exists()
    with pytest.raises(DownloadSizeError):
        download(str(root / "file.bin"), dest, max_bytes=len(data) - 1)
    _assert_clean_failure(dest)
    assert download(str(root / "file.bin"), dest, max_bytes=len(data)).read_bytes() == data


def test_size_tolerance(payload, tmp_path):
    root, data, _ = payload
    with serve(root) as server:
        download(server.url + "/file.bin", tmp_path / "a.bin", size=len(data) + 900, size_tolerance=1024, **FAST)
        with pytest.raises(ChecksumError, match="± 1024"):
            download(server.url + "/file.bin", tmp_path / "b.bin", size=len(data) - 2000, size_tolerance=1024, **FAST)
    _assert_clean_failure(tmp_path / "b.bin")


def test_download_to_fsspec_memory(payload, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    root, data, sha1 = payload
    fs = fsspec.filesystem("memory")
    dest = "memory://bucket/corpora/file.bin"
    with serve(root, faults={"/file.bin": [Fault("drop", after_bytes=100_000)]}) as server:
        assert download_to(server.url + "/file.bin", dest, sha1=sha1, **FAST) == dest
        assert fs.cat_file("/bucket/corpora/file.bin") == data
        assert fs.ls("/bucket/corpora", detail=False) == ["/bucket/corpora/file.bin"]  # no temporary left
        download_to(server.url + "/file.bin", dest, sha1=sha1, **FAST)  # present and verified: no request
        assert len(server.hits("/file.bin")) == 2
        with pytest.raises(ChecksumError):
            download_to(server.url + "/file.bin", "memory://bucket/bad.bin", sha1="0" * 40, **FAST)
    assert not fs.exists("/bucket/bad.bin")
    assert fs.ls("/bucket", detail=False) == ["/bucket/corpora"]
    local = tmp_path / "local.bin"
    assert download_to(str(root / "file.bin"), str(local)) == str(local) and local.read_bytes() == data
    fs.rm("/bucket", recursive=True)

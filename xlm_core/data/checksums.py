"""Checking a file against expected digests and sizes, and the `SHA256SUMS` lists of the mirrors
this code builds itself (the demo's offline Wikipedia/OPUS mirror and NLI set): `write_checksum_list`
writes one beside the files, `published_sha256` reads the entry of one file back, so a download
from such a mirror is verified like any other.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from xlm_core.data.http_transfer import DownloadError, read_url

__all__ = ["CHECKSUM_LIST", "digests", "mismatch", "published_sha256", "write_checksum_list"]

CHECKSUM_LIST = "SHA256SUMS"


def digests(path: Path, algorithms: list[str]) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def mismatch(path: Path, *, size: int | None, size_tolerance: int = 0, **expected_digests: str | None) -> str | None:
    """Why `path` does not match the expectations, or None when it does."""
    actual_size = path.stat().st_size
    if size is not None and abs(actual_size - size) > size_tolerance:
        within = f" ± {size_tolerance}" if size_tolerance else ""
        return f"size {actual_size} bytes, expected {size}{within}"
    expected = {name: value.lower() for name, value in expected_digests.items() if value}
    if expected:
        actual = digests(path, list(expected))
        for name, value in expected.items():
            if actual[name] != value:
                return f"{name} {actual[name]}, expected {value}"
    return None


def write_checksum_list(files: Iterable[Path]) -> list[Path]:
    """Write a `SHA256SUMS` list into each directory of `files`, naming those files (for mirrors built here)."""
    by_dir: dict[Path, list[Path]] = {}
    for file in files:
        by_dir.setdefault(Path(file).parent, []).append(Path(file))
    written = []
    for directory, members in sorted(by_dir.items()):
        lines = [f"{digests(f, ['sha256'])['sha256']}  {f.name}\n" for f in sorted(members)]
        tmp = directory / f".{CHECKSUM_LIST}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, directory / CHECKSUM_LIST)
        written.append(directory / CHECKSUM_LIST)
    return written


def published_sha256(url: str, *, timeout: float = 30, retries: int = 2) -> str | None:
    """The SHA-256 the `SHA256SUMS` list beside `url` gives its file; None when no list or no entry."""
    base, _, name = url.rstrip("/").rpartition("/")
    list_url = f"{base}/{CHECKSUM_LIST}"
    try:
        text = read_url(list_url, timeout=timeout, retries=retries).decode("utf-8", errors="replace")
    except DownloadError as e:
        if e.status == 404:
            return None
        raise
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
                raise DownloadError(f"{list_url}: {parts[0]!r} is not a SHA-256", url=list_url)
            return parts[0].lower()
    return None

"""Safe reading and extraction of zip and tar archives from the network.

Every member name is checked before anything is read: absolute paths, drive letters, `..`
components, symlinks, hardlinks and device/fifo members make the whole archive refused with
`UnsafeArchiveError`, so nothing is ever written outside the target directory. Decompressed
bytes are counted while streaming (header sizes are not trusted) and a member larger than
`max_member_bytes` raises `ArchiveSizeError`. macOS resource forks (`__MACOSX/`, `._name`)
are tolerated and skipped.

Extraction goes to a temporary sibling directory renamed into place when complete, so a
failed extraction leaves nothing under the final name.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "ArchiveError",
    "ArchiveSizeError",
    "UnsafeArchiveError",
    "check_tar",
    "check_zip",
    "extract_tar",
    "extract_zip",
    "is_resource_fork",
    "open_tar",
    "open_zip",
    "read_zip_member",
]

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An archive cannot be read (corrupt, truncated, not an archive, missing member)."""


class UnsafeArchiveError(ArchiveError):
    """A member would land outside the target directory, or is a link or a device."""


class ArchiveSizeError(ArchiveError):
    """A member decompresses to more than the configured cap."""


def is_resource_fork(name: str) -> bool:
    """macOS metadata entries (`__MACOSX/...`, `._name`) that archives made on a Mac carry."""
    name = name.replace("\\", "/")
    return name.startswith("__MACOSX/") or "/__MACOSX/" in name or Path(name).name.startswith("._")


def _check_name(archive: Path, name: str) -> None:
    normalized = name.replace("\\", "/")
    if (
        not normalized
        or normalized.startswith("/")
        or re.match(r"^[A-Za-z]:", normalized)
        or ".." in normalized.split("/")
        or "\x00" in normalized
    ):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute or parent-relative path; refusing the whole archive "
            "(it would write outside the target directory)"
        )


def check_zip(archive: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    """Refuse hostile members; return the regular file members (resource forks and directories skipped)."""
    files = []
    for info in archive.infolist():
        _check_name(path, info.filename)
        mode = stat.S_IFMT(info.external_attr >> 16)  # Unix file type bits, 0 when the zip has none
        if mode and stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"{path}: member {info.filename!r} is a symbolic link; refusing the whole archive")
        if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchiveError(f"{path}: member {info.filename!r} is not a regular file; refusing the archive")
        if not info.is_dir() and not is_resource_fork(info.filename):
            files.append(info)
    return files


def check_tar(archive: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    """Refuse hostile members; return the regular file members (resource forks and directories skipped)."""
    files = []
    for info in archive.getmembers():
        _check_name(path, info.name)
        if info.issym() or info.islnk():
            raise UnsafeArchiveError(
                f"{path}: member {info.name!r} is a {'symbolic' if info.issym() else 'hard'} link to "
                f"{info.linkname!r}; refusing the whole archive"
            )
        if not (info.isreg() or info.isdir()):
            raise UnsafeArchiveError(f"{path}: member {info.name!r} is a device, fifo or special file; refusing it")
        if info.isreg() and not is_resource_fork(info.name):
            files.append(info)
    return files


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArchiveError(f"{path}: not a readable zip archive ({e}); delete it and download again") from e


def open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchiveError(f"{path}: not a readable tar archive ({e}); delete it and download again") from e


def _capped(stream: IO[bytes], *, path: Path, member: str, max_bytes: int | None) -> Iterator[bytes]:
    total = 0
    while True:
        try:
            chunk = stream.read(CHUNK)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise ArchiveError(f"{path}: member {member!r} is corrupt or truncated ({e})") from e
        if not chunk:
            return
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise ArchiveSizeError(
                f"{path}: member {member!r} decompresses to more than {max_bytes} bytes (max_member_bytes); "
                "raise the cap if the archive is genuine"
            )
        yield chunk


class _CappedReader:
    """A binary file object over a zip member that counts decompressed bytes against a cap."""

    def __init__(self, raw: IO[bytes], *, path: Path, member: str, max_bytes: int | None) -> None:
        self._chunks = _capped(raw, path=path, member=member, max_bytes=max_bytes)
        self._raw = raw
        self._buffer = b""

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def readline(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = next(self._chunks, b"")
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _CappedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_zip_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, path: Path, max_member_bytes: int | None = None
) -> _CappedReader:
    """Binary line reader over one member (iterate for lines); errors name the archive and member."""
    try:
        raw = archive.open(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as e:
        raise ArchiveError(f"{path}: cannot read member {info.filename!r} ({e})") from e
    return _CappedReader(raw, path=path, member=info.filename, max_bytes=max_member_bytes)


def _extract(
    path: Path,
    dest_dir: Path,
    members: list[tuple[str, Callable[[], IO[bytes]]]],
    *,
    max_member_bytes: int | None,
    max_total_bytes: int | None,
) -> list[Path]:
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        raise ArchiveError(f"{dest_dir}: already exists; extraction writes a new directory (delete it first)")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extract-", dir=dest_dir.parent))
    total = 0
    written = []
    try:
        root = tmp.resolve()
        for name, opener in members:
            target = (tmp / name).resolve()
            if root not in target.parents:  # defence in depth; _check_name already refused such names
                raise UnsafeArchiveError(f"{path}: member {name!r} resolves outside the target directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener() as stream, open(target, "wb") as out:
                for chunk in _capped(stream, path=path, member=name, max_bytes=max_member_bytes):
                    total += len(chunk)
                    if max_total_bytes is not None and total > max_total_bytes:
                        raise ArchiveSizeError(
                            f"{path}: archive decompresses to more than {max_total_bytes} bytes (max_total_bytes)"
                        )
                    out.write(chunk)
            written.append(Path(name))
        os.replace(tmp, dest_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: extracted %d members (%d bytes) into %s", path, len(written), total, dest_dir)
    return [dest_dir / name for name in written]


def extract_zip(
    zip_path: Path,
    dest_dir: Path,
    *,
    select: Callable[[str], bool] | None = None,
    max_member_bytes: int | None = None,
    max_total_bytes: int | None = None,
) -> list[Path]:
    """Extract the regular members of a zip (those `select(name)` accepts) into a new `dest_dir`.

    Raises:
        UnsafeArchiveError: any member is absolute, parent-relative, a link or a special file.
        ArchiveSizeError: a member or the total exceeds its cap; nothing is left under `dest_dir`.
        ArchiveError: the archive is corrupt or truncated.
    """
    zip_path = Path(zip_path)
    with open_zip(zip_path) as archive:
        files = [info for info in check_zip(archive, zip_path) if select is None or select(info.filename)]
        openers = [(info.filename, (lambda info=info: archive.open(info))) for info in files]
        return _extract(zip_path, dest_dir, openers, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes)


def extract_tar(
    tar_path: Path,
    dest_dir: Path,
    *,
    select: Callable[[str], bool] | None = None,
    max_member_bytes: int | None = None,
    max_total_bytes: int | None = None,
) -> list[Path]:
    """Extract the regular members of a (compressed) tar into a new `dest_dir`; see `extract_zip`."""
    tar_path = Path(tar_path)
    with open_tar(tar_path) as archive:
        try:
            files = [info for info in check_tar(archive, tar_path) if select is None or select(info.name)]
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ArchiveError(f"{tar_path}: corrupt or truncated tar archive ({e})") from e

        def opener(info: tarfile.TarInfo) -> IO[bytes]:
            handle = archive.extractfile(info)
            if handle is None:  # only regular files reach here
                raise ArchiveError(f"{tar_path}: member {info.name!r} has no data")
            return handle

        openers = [(info.name, (lambda info=info: opener(info))) for info in files]
        return _extract(tar_path, dest_dir, openers, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes)

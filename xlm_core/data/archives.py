"""Safe reading and extraction of zip and tar archives from the network.

Every member name is checked before anything is read: absolute paths, drive letters, `..`
components, symlinks, hardlinks and device/fifo members make the whole archive refused with
`UnsafeArchiveError`, so nothing is ever written outside the target directory. Decompressed
bytes are counted while streaming (header sizes are not trusted): a member larger than
`max_member_bytes`, or past `RATIO_FLOOR` bytes and more than `max_ratio` times its compressed
size (a zip bomb), raises `ArchiveSizeError`. macOS resource forks (`__MACOSX/`, `._name`) are
tolerated and skipped.

`read_zip_member` streams one member's lines: it reads fixed-size blocks, splits them on b"\n" and
keeps only the unfinished tail, so it runs at close to `zipfile`'s own speed whatever the line
lengths. A line longer than `max_line_bytes` is dropped and counted, never buffered whole.

Extraction goes to a temporary sibling directory renamed into place when complete, so a
failed extraction leaves nothing under the final name.
"""

from __future__ import annotations

import itertools
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
    "RATIO_FLOOR",
    "ArchiveError",
    "ArchiveSizeError",
    "UnsafeArchiveError",
    "ZipLineReader",
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
# The compression-ratio guard applies past this many decompressed bytes: small members of repetitive
# text (a README, a column of labels) may compress far better than whole corpora.
RATIO_FLOOR = 16 << 20


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


def _capped(
    stream: IO[bytes],
    *,
    path: Path,
    member: str,
    max_bytes: int | None,
    max_ratio: float | None = None,
    compressed_size: int | None = None,
) -> Iterator[bytes]:
    total = 0
    ratio_limit = max(RATIO_FLOOR, max_ratio * compressed_size) if max_ratio and compressed_size else None
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
        if ratio_limit is not None and total > ratio_limit:
            raise _ratio_error(path, f"member {member!r}", compressed_size or 0, max_ratio or 0)
        yield chunk


def _ratio_error(path: Path, what: str, compressed: int, max_ratio: float) -> ArchiveSizeError:
    return ArchiveSizeError(
        f"{path}: {what} decompresses to more than {max_ratio:g} times its {compressed} compressed bytes "
        "(max_ratio): a decompression bomb, or unusually repetitive data; raise the ratio if the archive is genuine"
    )


class ZipLineReader:
    """The lines of one zip member (without their b"\n"), read in blocks under the member's caps.

    Iterating yields the lines that fit `max_line_bytes`; `lines()` also yields None in place of each
    longer line, so callers reading two aligned members can drop the pair. `dropped_lines` counts them.
    """

    def __init__(
        self,
        raw: IO[bytes],
        *,
        path: Path,
        member: str,
        max_bytes: int | None,
        max_ratio: float | None = None,
        compressed_size: int | None = None,
        max_line_bytes: int | None = None,
    ) -> None:
        self._chunks = _capped(
            raw, path=path, member=member, max_bytes=max_bytes, max_ratio=max_ratio, compressed_size=compressed_size
        )
        self._raw = raw
        self.member = member
        self.max_line_bytes = max_line_bytes
        self.dropped_lines = 0
        self.longest_dropped = 0

    def __iter__(self) -> Iterator[bytes]:
        return (line for line in self.lines() if line is not None)

    def _drop(self, length: int) -> None:
        self.dropped_lines += 1
        self.longest_dropped = max(self.longest_dropped, length)

    def lines(self) -> Iterator[bytes | None]:
        limit = self.max_line_bytes
        head: list[bytes] = []  # pieces of the line still waiting for its b"\n"
        head_len = 0
        overlong = False  # the waiting line is already past the limit: only its length is kept
        for block in self._chunks:
            parts = block.split(b"\n")
            tail = parts.pop()
            if parts:
                first = parts[0]
                if overlong or (limit is not None and head_len + len(first) > limit):
                    self._drop(head_len + len(first))
                    yield None
                else:
                    yield b"".join((*head, first)) if head else first
                head, head_len, overlong = [], 0, False
                if limit is None or max(map(len, parts)) <= limit:
                    yield from itertools.islice(parts, 1, None)
                else:
                    for line in itertools.islice(parts, 1, None):
                        if len(line) > limit:
                            self._drop(len(line))
                            yield None
                        else:
                            yield line
            if tail:
                head_len += len(tail)
                if not overlong:
                    head.append(tail)
                    if limit is not None and head_len > limit:
                        overlong, head = True, []
        if overlong:
            self._drop(head_len)
            yield None
        elif head:
            yield b"".join(head)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> ZipLineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_zip_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    path: Path,
    max_member_bytes: int | None = None,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
) -> ZipLineReader:
    """Line reader over one member (iterate for lines); errors name the archive and member."""
    try:
        raw = archive.open(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as e:
        raise ArchiveError(f"{path}: cannot read member {info.filename!r} ({e})") from e
    return ZipLineReader(
        raw,
        path=path,
        member=info.filename,
        max_bytes=max_member_bytes,
        max_ratio=max_ratio,
        compressed_size=info.compress_size,
        max_line_bytes=max_line_bytes,
    )


def _extract(
    path: Path,
    dest_dir: Path,
    members: list[tuple[str, Callable[[], IO[bytes]], int | None]],
    *,
    max_member_bytes: int | None,
    max_total_bytes: int | None,
    max_ratio: float | None = None,
) -> list[Path]:
    """Write `members` (name, opener, compressed size or None) into a new `dest_dir`. Members without
    a compressed size (tar) are held to `max_ratio` as a whole, against the archive's file size."""
    dest_dir = Path(dest_dir)
    archive_bytes = path.stat().st_size
    total_limit = max(RATIO_FLOOR, max_ratio * archive_bytes) if max_ratio else None
    if dest_dir.exists():
        raise ArchiveError(f"{dest_dir}: already exists; extraction writes a new directory (delete it first)")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extract-", dir=dest_dir.parent))
    total = 0
    written = []
    try:
        root = tmp.resolve()
        for name, opener, compressed in members:
            target = (tmp / name).resolve()
            if root not in target.parents:  # defence in depth; _check_name already refused such names
                raise UnsafeArchiveError(f"{path}: member {name!r} resolves outside the target directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener() as stream, open(target, "wb") as out:
                chunks = _capped(
                    stream,
                    path=path,
                    member=name,
                    max_bytes=max_member_bytes,
                    max_ratio=max_ratio,
                    compressed_size=compressed,
                )
                for chunk in chunks:
                    total += len(chunk)
                    if max_total_bytes is not None and total > max_total_bytes:
                        raise ArchiveSizeError(
                            f"{path}: archive decompresses to more than {max_total_bytes} bytes (max_total_bytes)"
                        )
                    if compressed is None and total_limit is not None and total > total_limit:
                        raise _ratio_error(path, "the archive", archive_bytes, max_ratio or 0)
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
    max_ratio: float | None = None,
) -> list[Path]:
    """Extract the regular members of a zip (those `select(name)` accepts) into a new `dest_dir`.

    Raises:
        UnsafeArchiveError: any member is absolute, parent-relative, a link or a special file.
        ArchiveSizeError: a member or the total exceeds its cap, or a member past RATIO_FLOOR bytes
            decompresses to more than `max_ratio` times its compressed size; nothing is left under `dest_dir`.
        ArchiveError: the archive is corrupt or truncated.
    """
    zip_path = Path(zip_path)
    with open_zip(zip_path) as archive:
        files = [info for info in check_zip(archive, zip_path) if select is None or select(info.filename)]
        openers = [(info.filename, (lambda info=info: archive.open(info)), info.compress_size) for info in files]
        return _extract(
            zip_path,
            dest_dir,
            openers,
            max_member_bytes=max_member_bytes,
            max_total_bytes=max_total_bytes,
            max_ratio=max_ratio,
        )


def extract_tar(
    tar_path: Path,
    dest_dir: Path,
    *,
    select: Callable[[str], bool] | None = None,
    max_member_bytes: int | None = None,
    max_total_bytes: int | None = None,
    max_ratio: float | None = None,
) -> list[Path]:
    """Extract the regular members of a (compressed) tar into a new `dest_dir`; see `extract_zip`
    (`max_ratio` holds the whole extraction to that ratio of the tar file's size)."""
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

        openers = [(info.name, (lambda info=info: opener(info)), None) for info in files]
        return _extract(
            tar_path,
            dest_dir,
            openers,
            max_member_bytes=max_member_bytes,
            max_total_bytes=max_total_bytes,
            max_ratio=max_ratio,
        )

"""OPUS moses zips: download URLs and a streaming reader that writes the two aligned sides.

A moses zip is flat: `{Corpus}.{l1}-{l2}.{l1}` and `.{l2}` (one segment per line, equal line
counts), usually with README/LICENSE and sometimes `.ids`/`.xml` alignment files, which are
ignored. Members are read from the archive, never extracted to disk by name.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import IO

from xlm_core.data.download import to_url
from xlm_core.io import ProgressLog, atomic_open

__all__ = ["OpusFormatError", "moses_name", "moses_url", "read_moses_zip", "sorted_pair"]

logger = logging.getLogger(__name__)

# Characters Python's str.splitlines() treats as line ends; inside a segment they become spaces
# so that both sides keep exactly one segment per "\n"-terminated line.
LINE_SEPARATORS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class OpusFormatError(ValueError):
    """A moses zip does not hold one aligned, readable pair of sides."""


def sorted_pair(pair: str) -> tuple[str, str]:
    """`fr-en` -> (`en`, `fr`): OPUS names pairs in plain string order."""
    parts = pair.split("-")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise OpusFormatError(f"language pair {pair!r} must look like l1-l2 with two different languages")
    first, second = sorted(parts)
    return first, second


def moses_name(corpus: str, version: str, pair: str) -> str:
    """Local file name for a downloaded zip, as in paths.py: `{Corpus}-{version}-{l1}-{l2}.txt.zip`."""
    l1, l2 = sorted_pair(pair)
    return f"{corpus}-{version}-{l1}-{l2}.txt.zip"


def moses_url(base_url: str, corpus: str, version: str, pair: str) -> str:
    """`{base}/OPUS-{corpus}/{version}/moses/{l1}-{l2}.txt.zip` with the pair sorted."""
    l1, l2 = sorted_pair(pair)
    return f"{to_url(base_url)}/OPUS-{corpus}/{version}/moses/{l1}-{l2}.txt.zip"


def _pick_member(archive: zipfile.ZipFile, zip_path: Path, suffix: str) -> zipfile.ZipInfo:
    names = [info.filename for info in archive.infolist()]
    candidates = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and info.filename.endswith(suffix)
        and not info.filename.startswith("__MACOSX/")
        and not Path(info.filename).name.startswith("._")
    ]
    if len(candidates) != 1:
        found = "none" if not candidates else ", ".join(c.filename for c in candidates)
        raise OpusFormatError(
            f"{zip_path}: expected exactly one member ending in {suffix!r}, found {found}; members: {names}. "
            "Check the corpus and pair (OPUS sorts the pair, e.g. en-fr not fr-en)."
        )
    return candidates[0]


def _check_names(archive: zipfile.ZipFile, zip_path: Path) -> None:
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
            raise OpusFormatError(
                f"{zip_path}: member {info.filename!r} has an absolute or parent-relative path; "
                "refusing a zip that is not a genuine OPUS moses archive"
            )


def _lines(handle: IO[bytes], member: str, counters: dict[str, int]) -> Iterator[str]:
    for raw in handle:  # binary iteration splits on b"\n" only
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            counters[member] = counters.get(member, 0) + 1
        yield LINE_SEPARATORS.sub(" ", text.rstrip("\n"))


def read_moses_zip(zip_path: Path, pair: str, out_l1: Path, out_l2: Path) -> int:
    """Write the two sides of a moses zip to `out_l1`/`out_l2` (atomically); return the pair count.

    `pair` is `l1-l2` in the caller's order: `out_l1` receives the side of the first language
    named in `pair`, whatever order OPUS uses inside the archive.
    """
    zip_path = Path(zip_path)
    a, b = sorted_pair(pair)
    first, second = pair.split("-")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise OpusFormatError(f"{zip_path}: not a readable zip archive ({e}); delete it and download again") from e
    with archive:
        _check_names(archive, zip_path)
        members = {lang: _pick_member(archive, zip_path, f".{a}-{b}.{lang}") for lang in (a, b)}
        counters: dict[str, int] = {}
        count = 0
        progress = ProgressLog(f"read {zip_path.name}", unit="pairs", log=logger)
        with (
            archive.open(members[first]) as in_1,
            archive.open(members[second]) as in_2,
            atomic_open(out_l1) as writer_1,
            atomic_open(out_l2) as writer_2,
        ):
            name_1, name_2 = members[first].filename, members[second].filename
            for line_1, line_2 in zip_longest(_lines(in_1, name_1, counters), _lines(in_2, name_2, counters)):
                if line_1 is None or line_2 is None:
                    rest_1 = sum(1 for _ in in_1) + (line_1 is not None)
                    rest_2 = sum(1 for _ in in_2) + (line_2 is not None)
                    raise OpusFormatError(
                        f"{zip_path}: sides are not aligned: {name_1} has {count + rest_1} lines, "
                        f"{name_2} has {count + rest_2}; the archive is damaged or not a moses zip"
                    )
                writer_1.write(line_1 + "\n")
                writer_2.write(line_2 + "\n")
                count += 1
                progress.update()
        progress.done()
    for member, bad in counters.items():
        logger.warning("%s: %d lines of %s were not valid UTF-8 (bad bytes replaced)", zip_path, bad, member)
    return count

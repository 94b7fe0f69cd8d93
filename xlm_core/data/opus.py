"""OPUS moses zips: download URLs and a streaming reader that writes the two aligned sides.

A moses zip is flat: `{Corpus}.{l1}-{l2}.{l1}` and `.{l2}` (one segment per line, equal line
counts), usually with README/LICENSE and sometimes `.ids`/`.xml` alignment files, which are
ignored. Members are read from the archive, never extracted to disk by name; archives with
absolute, parent-relative or link members are refused whole (`archives.check_zip`).

`opus_lookup` asks the OPUS API (`https://opus.nlpl.eu/opusapi/`) for a release's URL and size
(published in KB, so sizes are checked within `OPUS_SIZE_TOLERANCE`); `fetch_moses` downloads
with that check. `XNLI15_PARALLEL` lists the paper's parallel data for the 14 en-X pairs.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator
from itertools import zip_longest
from pathlib import Path
from typing import NamedTuple

from xlm_core.data import archives
from xlm_core.data.download import DownloadError, download_to, read_url, to_url
from xlm_core.io import ProgressLog, atomic_open

__all__ = [
    "OPUS_API_URL",
    "OPUS_SIZE_TOLERANCE",
    "XNLI15_PARALLEL",
    "OpusFormatError",
    "OpusLookupError",
    "OpusRelease",
    "ParallelSource",
    "decode_lines",
    "fetch_moses",
    "moses_name",
    "moses_url",
    "opus_lookup",
    "read_moses_zip",
    "sorted_pair",
    "write_aligned",
    "xnli15_parallel",
]

OPUS_API_URL = "https://opus.nlpl.eu/opusapi/"
OPUS_BASE_URL = "https://object.pouta.csc.fi"
# The API publishes sizes in KB (1024 bytes, rounded): accept one KiB either way.
OPUS_SIZE_TOLERANCE = 1024

logger = logging.getLogger(__name__)

# Characters Python's str.splitlines() treats as line ends; inside a segment they become spaces
# so that both sides keep exactly one segment per "\n"-terminated line.
LINE_SEPARATORS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


_END = object()  # marks the end of the shorter side in write_aligned


class OpusFormatError(ValueError):
    """A moses zip does not hold one aligned, readable pair of sides."""


class OpusLookupError(DownloadError):
    """The OPUS API has no (or an ambiguous, or a malformed) answer for a corpus/version/pair."""


class OpusRelease(NamedTuple):
    url: str
    size_bytes: int  # the API's KB x 1024; compare within OPUS_SIZE_TOLERANCE


class ParallelSource(NamedTuple):
    corpus: str
    version: str
    pair: str  # sorted, as OPUS names it


# The paper's parallel data for the 14 en-X pairs of XNLI-15 (XLM's get-data-para.sh, with
# OPUS's IITB v2.0 moses zip in place of the IITB parallel.tgz, and OpenSubtitles v2018 for tr).
XNLI15_PARALLEL: tuple[ParallelSource, ...] = (
    ParallelSource("MultiUN", "v1", "ar-en"),
    ParallelSource("EUbookshop", "v2", "bg-en"),
    ParallelSource("EUbookshop", "v2", "de-en"),
    ParallelSource("EUbookshop", "v2", "el-en"),
    ParallelSource("MultiUN", "v1", "en-es"),
    ParallelSource("MultiUN", "v1", "en-fr"),
    ParallelSource("IITB", "v2.0", "en-hi"),
    ParallelSource("MultiUN", "v1", "en-ru"),
    ParallelSource("Tanzil", "v1", "en-sw"),
    ParallelSource("GlobalVoices", "v2018q4", "en-sw"),
    ParallelSource("OpenSubtitles", "v2018", "en-th"),
    ParallelSource("OpenSubtitles", "v2018", "en-tr"),
    ParallelSource("Tanzil", "v1", "en-ur"),
    ParallelSource("OpenSubtitles", "v2018", "en-vi"),
    ParallelSource("MultiUN", "v1", "en-zh"),
)


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


def xnli15_parallel(base_url: str = OPUS_BASE_URL) -> list[tuple[ParallelSource, str]]:
    """The paper's XNLI-15 parallel corpora with their moses zip URLs under `base_url`."""
    return [(source, moses_url(base_url, *source)) for source in XNLI15_PARALLEL]


def opus_lookup(
    api_url: str, corpus: str, version: str, pair: str, *, timeout: float = 30, retries: int = 5
) -> OpusRelease:
    """URL and size of a moses release from the OPUS API.

    Queries `{api}/?corpus=C&source=l1&target=l2&preprocessing=moses&version=V` (the pair sorted,
    as OPUS stores it; `version` may be `latest`) and checks that exactly one moses row answers.

    Raises:
        OpusLookupError: no such release (the message lists what the API returned), several
            releases, or an answer that is not the API's JSON.
    """
    l1, l2 = sorted_pair(pair)
    query = urllib.parse.urlencode(
        {"corpus": corpus, "source": l1, "target": l2, "preprocessing": "moses", "version": version}
    )
    url = f"{api_url.rstrip('/')}/?{query}"
    body = read_url(url, timeout=timeout, retries=retries)
    try:
        rows = json.loads(body)["corpora"]
        if not isinstance(rows, list):
            raise TypeError("'corpora' is not a list")
    except (ValueError, KeyError, TypeError) as e:
        raise OpusLookupError(f"{url}: not an OPUS API answer ({e}); check the API URL", url=url) from e
    wanted = [
        row
        for row in rows
        if isinstance(row, dict)
        and row.get("corpus") == corpus
        and row.get("preprocessing") == "moses"
        and (row.get("source"), row.get("target")) == (l1, l2)
        and (row.get("version") == version or (version == "latest" and str(row.get("latest")) == "True"))
    ]
    if len({row.get("url") for row in wanted}) != 1:
        found = [(row.get("corpus"), row.get("version"), row.get("source"), row.get("target")) for row in rows]
        what = "no" if not wanted else "more than one"
        raise OpusLookupError(
            f"{url}: {what} moses release of {corpus} {version} for {l1}-{l2}; the API returned {found or 'nothing'}. "
            "Check the corpus name, version and pair.",
            url=url,
        )
    row = wanted[0]
    release_url, size_kb = row.get("url"), row.get("size")
    if not isinstance(release_url, str) or not release_url.endswith(f"/moses/{l1}-{l2}.txt.zip"):
        raise OpusLookupError(f"{url}: unexpected moses URL {release_url!r} for {l1}-{l2}", url=url)
    try:
        size_bytes = int(size_kb) * 1024
    except (TypeError, ValueError) as e:
        raise OpusLookupError(f"{url}: size {size_kb!r} is not a number of KB", url=url) from e
    return OpusRelease(release_url, size_bytes)


def fetch_moses(
    api_url: str,
    corpus: str,
    version: str,
    pair: str,
    dest: str | Path,
    *,
    base_url: str | None = None,
    max_bytes: int | None = None,
    timeout: float = 30,
    retries: int = 5,
) -> str:
    """Look a release up with `opus_lookup` and download it with the API's size check.

    Args:
        dest: local path or fsspec URL (see `download_to`).
        base_url: a mirror of the object store; the API's URL is re-rooted there
            (`{base_url}/OPUS-{corpus}/...`) while its size is still checked.

    The time limits are those of the enclosing `download.time_limits` block, if any.
    """
    release = opus_lookup(api_url, corpus, version, pair, timeout=timeout, retries=retries)
    url = release.url
    if base_url is not None:
        marker = url.find("/OPUS-")
        if marker < 0:
            raise OpusLookupError(f"{url}: cannot re-root a URL without /OPUS-<corpus>/ on {base_url}", url=url)
        url = to_url(base_url) + url[marker:]
    return download_to(
        url,
        dest,
        size=release.size_bytes,
        size_tolerance=OPUS_SIZE_TOLERANCE,
        max_bytes=max_bytes,
        timeout=timeout,
        retries=retries,
    )


def _pick_member(files: list[zipfile.ZipInfo], zip_path: Path, suffix: str, names: list[str]) -> zipfile.ZipInfo:
    candidates = [info for info in files if info.filename.endswith(suffix)]
    if len(candidates) != 1:
        found = "none" if not candidates else ", ".join(c.filename for c in candidates)
        raise OpusFormatError(
            f"{zip_path}: expected exactly one member ending in {suffix!r}, found {found}; members: {names}. "
            "Check the corpus and pair (OPUS sorts the pair, e.g. en-fr not fr-en)."
        )
    return candidates[0]


def decode_lines(handle: Iterable[bytes | None], member: str, counters: dict[str, int]) -> Iterator[str | None]:
    """UTF-8 lines split on b"\\n" only, other line separators turned into spaces.

    Undecodable bytes are replaced and counted per member in `counters`. A None (a line the archive
    reader dropped as too long) stays None, so the other side can drop its partner.
    """
    for raw in handle:  # binary iteration splits on b"\n" only
        if raw is None:
            yield None
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            counters[member] = counters.get(member, 0) + 1
        yield LINE_SEPARATORS.sub(" ", text.rstrip("\n"))


def write_aligned(
    lines_1: Iterable[str | None],
    lines_2: Iterable[str | None],
    out_1: Path,
    out_2: Path,
    *,
    source: str,
    names: tuple[str, str],
    stats: dict[str, int] | None = None,
) -> int:
    """Write two sides line by line (atomically); raise OpusFormatError if their lengths differ.

    A pair with a None side (a line dropped as too long) is left out and counted in
    `stats["dropped_long_pairs"]`. Returns the pairs written.
    """
    count = dropped = 0
    it_1, it_2 = iter(lines_1), iter(lines_2)
    progress = ProgressLog(f"read {source}", unit="pairs", log=logger)
    with atomic_open(out_1) as writer_1, atomic_open(out_2) as writer_2:
        for line_1, line_2 in zip_longest(it_1, it_2, fillvalue=_END):
            if line_1 is _END or line_2 is _END:
                rest_1 = sum(1 for _ in it_1) + (line_1 is not _END)
                rest_2 = sum(1 for _ in it_2) + (line_2 is not _END)
                raise OpusFormatError(
                    f"{source}: sides are not aligned: {names[0]} has {count + dropped + rest_1} lines, "
                    f"{names[1]} has {count + dropped + rest_2}; the archive is damaged or not in the expected layout"
                )
            if line_1 is None or line_2 is None:
                dropped += 1
                continue
            writer_1.write(line_1 + "\n")
            writer_2.write(line_2 + "\n")
            count += 1
            progress.update()
    progress.done()
    if stats is not None:
        stats["dropped_long_pairs"] = stats.get("dropped_long_pairs", 0) + dropped
    return count


def read_moses_zip(
    zip_path: Path,
    pair: str,
    out_l1: Path,
    out_l2: Path,
    *,
    max_member_bytes: int | None = None,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
    stats: dict[str, int] | None = None,
) -> int:
    """Write the two sides of a moses zip to `out_l1`/`out_l2` (atomically); return the pair count.

    `pair` is `l1-l2` in the caller's order: `out_l1` receives the side of the first language
    named in `pair`, whatever order OPUS uses inside the archive. `max_member_bytes` and
    `max_ratio` cap the decompressed size of each side (`archives.ArchiveSizeError`). A pair with a
    side longer than `max_line_bytes` is left out, counted in `stats["dropped_long_pairs"]` and logged.
    """
    zip_path = Path(zip_path)
    a, b = sorted_pair(pair)
    first, second = pair.split("-")
    caps = {"max_member_bytes": max_member_bytes, "max_ratio": max_ratio, "max_line_bytes": max_line_bytes}
    counts: dict[str, int] = {}
    try:
        archive = archives.open_zip(zip_path)
        with archive:
            files = archives.check_zip(archive, zip_path)
            names = [info.filename for info in archive.infolist()]
            members = {lang: _pick_member(files, zip_path, f".{a}-{b}.{lang}", names) for lang in (a, b)}
            counters: dict[str, int] = {}
            name_1, name_2 = members[first].filename, members[second].filename
            with (
                archives.read_zip_member(archive, members[first], path=zip_path, **caps) as in_1,
                archives.read_zip_member(archive, members[second], path=zip_path, **caps) as in_2,
            ):
                count = write_aligned(
                    decode_lines(in_1.lines(), name_1, counters),
                    decode_lines(in_2.lines(), name_2, counters),
                    out_l1,
                    out_l2,
                    source=str(zip_path),
                    names=(name_1, name_2),
                    stats=counts,
                )
    except archives.ArchiveSizeError:
        raise
    except archives.ArchiveError as e:
        raise OpusFormatError(str(e)) from e
    for member, bad in counters.items():
        logger.warning("%s: %d lines of %s were not valid UTF-8 (bad bytes replaced)", zip_path, bad, member)
    dropped = counts.get("dropped_long_pairs", 0)
    if dropped:
        longest = max(in_1.longest_dropped, in_2.longest_dropped)
        logger.warning(
            "%s: %d pairs left out, a side longer than %d bytes (max_line_bytes; the longest: %d bytes)",
            zip_path,
            dropped,
            max_line_bytes,
            longest,
        )
    if stats is not None:
        stats["dropped_long_pairs"] = stats.get("dropped_long_pairs", 0) + dropped
    return count

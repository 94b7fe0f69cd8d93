"""Wikipedia: dump URLs, verified dump download, and text extraction with WikiExtractor 3.1.0.

The output of `extract()` is what XLM's get-data-wiki.sh produced before tokenization: one
paragraph per line, each article introduced by its title line, no `<doc>` lines, no blank lines.
"""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from xlm_core.data.download import DownloadError, download, read_url, to_url
from xlm_core.io import ProgressLog, atomic_open

__all__ = ["ExtractionError", "FetchedDump", "dump_name", "dump_url", "extract", "fetch_dump", "resolve_latest"]

logger = logging.getLogger(__name__)


class ExtractionError(ValueError):
    """WikiExtractor failed or produced nothing from a non-empty dump."""


@dataclass(frozen=True)
class FetchedDump:
    path: Path
    lang: str
    date: str  # resolved YYYYMMDD, also when `latest` was asked for
    url: str
    sha1: str | None  # None when the server has no checksum list


def dump_name(lang: str, date: str, multistream: bool = False) -> str:
    kind = "pages-articles-multistream" if multistream else "pages-articles"
    return f"{lang}wiki-{date}-{kind}.xml.bz2"


def dump_url(base_url: str, lang: str, date: str, multistream: bool = False) -> str:
    """`{base}/{lang}wiki/{date}/{lang}wiki-{date}-pages-articles[-multistream].xml.bz2`.

    `base_url` may be http(s)://, file:// or a local directory (returned as a file:// URL).
    """
    return f"{to_url(base_url)}/{lang}wiki/{date}/{dump_name(lang, date, multistream)}"


def resolve_latest(base_url: str, lang: str, multistream: bool = False, *, timeout: float = 30) -> str:
    """The date behind `latest`, read from the dump server's RSS feed for that file."""
    kind = "pages-articles-multistream" if multistream else "pages-articles"
    url = f"{to_url(base_url)}/{lang}wiki/latest/{lang}wiki-latest-{kind}.xml.bz2-rss.xml"
    body = read_url(url, timeout=timeout)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise DownloadError(f"{url}: not a valid RSS document ({e})", url=url) from e
    for element in root.iter():
        if element.tag in ("link", "title") and element.text:
            match = re.search(rf"/{re.escape(lang)}wiki/(\d{{8}})\b", element.text)
            if match:
                return match.group(1)
    raise DownloadError(
        f"{url}: no dated dump link (/{lang}wiki/YYYYMMDD) in the RSS feed; pin data.wikipedia.dump_date instead",
        url=url,
    )


def _expected_sha1(base_url: str, lang: str, date: str, name: str, timeout: float) -> str | None:
    url = f"{to_url(base_url)}/{lang}wiki/{date}/{lang}wiki-{date}-sha1sums.txt"
    try:
        text = read_url(url, timeout=timeout).decode("utf-8", errors="replace")
    except DownloadError as e:
        if e.status != 404:
            raise
        logger.warning("%s is missing; downloading %s without checksum verification", url, name)
        return None
    for line_number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            if not re.fullmatch(r"[0-9a-fA-F]{40}", parts[0]):
                raise DownloadError(f"{url}:{line_number}: {parts[0]!r} is not a SHA-1", url=url)
            return parts[0].lower()
    logger.warning("%s has no entry for %s; downloading without checksum verification", url, name)
    return None


def fetch_dump(
    base_url: str,
    lang: str,
    date: str,
    dest_dir: Path,
    multistream: bool = False,
    *,
    timeout: float = 30,
    retries: int = 5,
) -> FetchedDump:
    """Download one pages-articles dump, verified against the server's `*-sha1sums.txt`.

    `date` may be `latest`; it is resolved through the RSS feed and the dated file is fetched.
    """
    if date == "latest":
        date = resolve_latest(base_url, lang, multistream, timeout=timeout)
        logger.info("%swiki: latest dump is %s", lang, date)
    name = dump_name(lang, date, multistream)
    sha1 = _expected_sha1(base_url, lang, date, name, timeout)
    url = dump_url(base_url, lang, date, multistream)
    path = download(url, Path(dest_dir) / name, sha1=sha1, timeout=timeout, retries=retries)
    return FetchedDump(path=path, lang=lang, date=date, url=url, sha1=sha1)


def _output_files(directory: Path) -> list[Path]:
    # WikiExtractor names files AA/wiki_00 .. AA/wiki_99, AB/wiki_00 ...; sorting keeps dump order.
    return sorted(p for p in directory.glob("*/wiki_*") if p.is_file())


def _paragraphs(text: str) -> list[str]:
    return [line for line in (" ".join(raw.split()) for raw in text.split("\n")) if line]


def extract(dump_path: Path, out_path: Path, *, processes: int = 2, max_articles: int | None = None) -> dict:
    """Run WikiExtractor on a dump and write one paragraph per line (title lines kept).

    Args:
        dump_path: `pages-articles[-multistream].xml.bz2` (or an uncompressed XML file).
        out_path: text file written atomically.
        processes: WikiExtractor worker processes.
        max_articles: keep only the first N non-empty articles.

    Returns:
        `{"articles", "empty_articles", "lines", "paragraphs", "characters"}`; lines = articles + paragraphs
        (each article's title line is kept, as XLM does).
    """
    dump_path, out_path = Path(dump_path), Path(out_path)
    if not dump_path.is_file():
        raise ExtractionError(f"{dump_path}: dump not found; run the download stage first")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.wikiextractor-", dir=out_path.parent))
    try:
        # --html-safe "" turns off HTML escaping (the XLM-era extractor did not escape).
        command = [
            sys.executable,
            "-m",
            "wikiextractor.WikiExtractor",
            str(dump_path),
            "--json",
            "--html-safe",
            "",
            "-o",
            str(tmp_dir),
            "-b",
            "10M",
            "--processes",
            str(processes),
            "-q",
        ]
        logger.info("running %s", " ".join(command[1:]))
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ExtractionError(
                f"WikiExtractor failed on {dump_path} (exit {result.returncode}):\n{result.stderr[-2000:]}"
            )
        stats = {"articles": 0, "empty_articles": 0, "lines": 0, "characters": 0}
        progress = ProgressLog(f"extract {dump_path.name}", unit="articles", log=logger)
        with atomic_open(out_path) as out:
            for part in _output_files(tmp_dir):
                with open(part, encoding="utf-8") as handle:
                    for line_number, line in enumerate(handle, 1):
                        if max_articles is not None and stats["articles"] >= max_articles:
                            break
                        try:
                            doc = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ExtractionError(f"{part}:{line_number}: WikiExtractor wrote invalid JSON") from e
                        paragraphs = _paragraphs(doc["text"])
                        if not paragraphs:
                            stats["empty_articles"] += 1
                            continue
                        # WikiExtractor leaves titles HTML-escaped (AT&amp;T) even with --html-safe "".
                        title = " ".join(html.unescape(doc["title"]).split())
                        for paragraph in [title, *paragraphs]:
                            out.write(paragraph + "\n")
                            stats["lines"] += 1
                            stats["characters"] += len(paragraph)
                        stats["articles"] += 1
                        progress.update()
            if stats["articles"] == 0 and stats["empty_articles"] == 0 and dump_path.stat().st_size > 0:
                raise ExtractionError(
                    f"WikiExtractor produced no article from {dump_path} (exit 0). Its reader is line-based: "
                    "every XML element must start on its own line as in real dumps (a minified or "
                    f"re-serialised file yields nothing). stderr: {result.stderr[-1000:]!r}"
                )
        progress.done()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    stats["paragraphs"] = stats["lines"] - stats["articles"]
    logger.info(
        "%s: %d articles, %d lines, %d characters", out_path, stats["articles"], stats["lines"], stats["characters"]
    )
    return stats

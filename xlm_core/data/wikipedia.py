"""Wikipedia: dump URLs, verified dump download, and text extraction with WikiExtractor 3.1.0.

The output of `extract()` is what XLM's get-data-wiki.sh produced before tokenization: one
paragraph per line, each article introduced by its title line, no `<doc>` lines, no blank lines.

Verification: a dump is checked against the dump's `*-sha1sums.txt`, else `*-md5sums.txt`, else
the sizes and checksums in `dumpstatus.json`. The only XML this module parses itself (the
`latest` RSS feed) goes through `safe_xml.parse_xml`, whose parser refuses any DOCTYPE, entity or
notation declaration in any encoding, so no external or recursive entity is ever expanded.
WikiExtractor reads dumps with line regexes (no XML parser, no entity expansion) and exits 0 on
truncated or unbalanced XML, so `extract()` checks the dump's structure (complete bz2 streams,
balanced `<page>`/`<text>`, final `</mediawiki>`) in a thread running beside it and turns any
defect into one `DumpFormatError` naming the file.
"""

from __future__ import annotations

import bz2
import contextlib
import html
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from xlm_core.data.download import DownloadError, download, read_url, to_url
from xlm_core.data.safe_xml import RefusedXMLError, XMLFormatError, parse_xml
from xlm_core.io import ProgressLog, atomic_open
from xlm_core.names import check_lang

__all__ = [
    "DumpCheck",
    "DumpFormatError",
    "Expected",
    "ExtractionError",
    "FetchedDump",
    "check_dump",
    "dump_name",
    "dump_url",
    "expected_checksums",
    "extract",
    "fetch_dump",
    "parse_untrusted_xml",
    "resolve_latest",
]

logger = logging.getLogger(__name__)


class ExtractionError(ValueError):
    """WikiExtractor failed or produced nothing from a non-empty dump."""


class DumpFormatError(ExtractionError):
    """The dump is truncated, not bz2/XML, or its XML is unbalanced; nothing was written."""


@dataclass(frozen=True)
class FetchedDump:
    path: Path
    lang: str
    date: str  # resolved YYYYMMDD, also when `latest` was asked for
    url: str
    sha1: str | None  # None when the server publishes no SHA-1 for the file
    md5: str | None = None
    size: int | None = None  # from dumpstatus.json, when the checksum lists were missing
    verified_by: str | None = None  # "sha1sums", "md5sums", "dumpstatus.json" or None (unverified)


@dataclass(frozen=True)
class Expected:
    """What the dump server publishes about one file; `source` names where it came from."""

    sha1: str | None = None
    md5: str | None = None
    size: int | None = None
    source: str | None = None


def parse_untrusted_xml(body: bytes, *, url: str) -> ET.Element:
    """Parse a small XML document from the network; the parser refuses any DOCTYPE, ENTITY or NOTATION
    declaration (in whatever encoding the document is), so no entity is ever expanded."""
    try:
        return parse_xml(body)
    except RefusedXMLError as e:
        raise DownloadError(f"{url}: XML with a DOCTYPE/ENTITY declaration refused: {e}", url=url) from e
    except XMLFormatError as e:
        raise DownloadError(f"{url}: not a valid XML document ({e})", url=url) from e


def dump_name(lang: str, date: str, multistream: bool = False) -> str:
    check_lang(lang, "Wikipedia dump: lang")  # the name is a file name under the downloads directory
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
    root = parse_untrusted_xml(read_url(url, timeout=timeout), url=url)
    for element in root.iter():
        if element.tag in ("link", "title") and element.text:
            match = re.search(rf"/{re.escape(lang)}wiki/(\d{{8}})\b", element.text)
            if match:
                return match.group(1)
    raise DownloadError(
        f"{url}: no dated dump link (/{lang}wiki/YYYYMMDD) in the RSS feed; pin data.wikipedia.dump_date instead",
        url=url,
    )


def _sums_entry(url: str, text: str, name: str, algorithm: str) -> str | None:
    width = 40 if algorithm == "sha1" else 32
    for line_number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", parts[0]):
                raise DownloadError(f"{url}:{line_number}: {parts[0]!r} is not an {algorithm.upper()}", url=url)
            return parts[0].lower()
    return None


def _status_entry(url: str, body: bytes, name: str) -> Expected | None:
    try:
        jobs = json.loads(body)["jobs"]
    except (ValueError, KeyError, TypeError) as e:
        raise DownloadError(f"{url}: not a dumpstatus.json document ({e})", url=url) from e
    for job_name, job in jobs.items():
        files = job.get("files") or {}
        if name not in files:
            continue
        if job.get("status") != "done":
            raise DownloadError(
                f"{url}: job {job_name} is {job.get('status')!r}, not 'done'; the dump is incomplete, "
                "pick an earlier data.wikipedia.dump_date",
                url=url,
            )
        info = files[name]
        size = info.get("size")
        return Expected(
            sha1=info.get("sha1"),
            md5=info.get("md5"),
            size=int(size) if size is not None else None,
            source="dumpstatus.json",
        )
    return None


def expected_checksums(base_url: str, lang: str, date: str, name: str, *, timeout: float = 30) -> Expected:
    """What the dump server publishes about `name`: its sha1sums, else md5sums, else dumpstatus.json."""
    day = f"{to_url(base_url)}/{lang}wiki/{date}"
    for algorithm in ("sha1", "md5"):
        url = f"{day}/{lang}wiki-{date}-{algorithm}sums.txt"
        try:
            text = read_url(url, timeout=timeout).decode("utf-8", errors="replace")
        except DownloadError as e:
            if e.status != 404:
                raise
            continue
        value = _sums_entry(url, text, name, algorithm)
        if value is not None:
            return Expected(**{algorithm: value}, source=f"{algorithm}sums")
    url = f"{day}/dumpstatus.json"
    try:
        entry = _status_entry(url, read_url(url, timeout=timeout), name)
    except DownloadError as e:
        if e.status != 404:
            raise
        entry = None
    if entry is not None:
        return entry
    logger.warning("%s: no sha1sums, md5sums or dumpstatus.json entry for %s; downloading unverified", day, name)
    return Expected()


def fetch_dump(
    base_url: str,
    lang: str,
    date: str,
    dest_dir: Path,
    multistream: bool = False,
    *,
    timeout: float = 30,
    retries: int = 5,
    max_bytes: int | None = None,
) -> FetchedDump:
    """Download one pages-articles dump, verified against what the server publishes.

    `date` may be `latest`; it is resolved through the RSS feed and the dated file is fetched. (The
    pipeline resolves `latest` itself, from the server's listing and dumpstatus.json, records it and
    tries mirrors: `xlm_core.data.dump_dates`.)
    Verification uses `*-sha1sums.txt`, else `*-md5sums.txt`, else `dumpstatus.json` (size and
    checksums); with none of them the file is downloaded unverified (logged as a warning).
    `max_bytes` refuses a larger body (DownloadSizeError).
    """
    if date == "latest":
        date = resolve_latest(base_url, lang, multistream, timeout=timeout)
        logger.info("%swiki: latest dump is %s", lang, date)
    name = dump_name(lang, date, multistream)
    expected = expected_checksums(base_url, lang, date, name, timeout=timeout)
    url = dump_url(base_url, lang, date, multistream)
    path = download(
        url,
        Path(dest_dir) / name,
        sha1=expected.sha1,
        md5=expected.md5,
        size=expected.size,
        max_bytes=max_bytes,
        timeout=timeout,
        retries=retries,
    )
    return FetchedDump(
        path=path,
        lang=lang,
        date=date,
        url=url,
        sha1=expected.sha1,
        md5=expected.md5,
        size=expected.size,
        verified_by=expected.source,
    )


@dataclass
class DumpCheck:
    pages: int = 0
    xml_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)


_TEXT_OPEN = re.compile(rb"<text[\s>/]")
_TEXT_EMPTY = re.compile(rb"<text\b[^>\n]*/>")


def check_dump(dump_path: Path, *, max_xml_bytes: int | None = None) -> DumpCheck:
    """Stream a dump once and check that it is complete, well-framed export XML.

    Checks: every bz2 stream is complete; the XML starts with `<mediawiki` and ends with
    `</mediawiki>`; `<page>`/`</page>` and `<text>`/`</text>` are balanced (wikitext is
    XML-escaped in dumps, so these tags cannot occur inside article text). Counting happens on
    whole lines, as WikiExtractor reads them.

    Raises:
        DumpFormatError: naming the file and the defect.
    """
    dump_path = Path(dump_path)
    keys = ("page", "/page", "text", "text/", "/text")
    counts = dict.fromkeys(keys, 0)
    head = b""
    tail = b""
    carry = b""
    total = 0
    opener = bz2.open if dump_path.suffix == ".bz2" else open
    try:
        with opener(dump_path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                total += len(chunk)
                if max_xml_bytes is not None and total > max_xml_bytes:
                    raise DumpFormatError(
                        f"{dump_path}: decompresses to more than {max_xml_bytes} bytes (max_xml_bytes); "
                        "raise the cap if the dump is genuine"
                    )
                if len(head) < 4096:
                    head += chunk[: 4096 - len(head)]
                block, newline, carry = (carry + chunk).rpartition(b"\n")
                if not newline:
                    block, carry = b"", block + carry
                counts["page"] += block.count(b"<page>")
                counts["/page"] += block.count(b"</page>")
                counts["text"] += len(_TEXT_OPEN.findall(block))
                counts["text/"] += len(_TEXT_EMPTY.findall(block))
                counts["/text"] += block.count(b"</text>")
                tail = (tail + block + newline)[-4096:]
    except EOFError as e:
        raise DumpFormatError(
            f"{dump_path}: truncated bz2 stream after {total} bytes of XML ({e}); the file is incomplete: "
            "delete it and download it again"
        ) from e
    except OSError as e:
        raise DumpFormatError(f"{dump_path}: not a readable bz2 dump ({e}); delete it and download it again") from e
    tail = (tail + carry).rstrip()
    problems = []
    if b"<mediawiki" not in head:
        problems.append("it does not start with a <mediawiki> element")
    if not tail.endswith(b"</mediawiki>"):
        problems.append("it does not end with </mediawiki> (truncated XML)")
    if counts["page"] != counts["/page"]:
        problems.append(f"{counts['page']} <page> but {counts['/page']} </page>")
    if counts["text"] - counts["text/"] != counts["/text"]:
        problems.append(f"{counts['text'] - counts['text/']} <text> but {counts['/text']} </text>")
    if problems:
        raise DumpFormatError(
            f"{dump_path}: malformed MediaWiki export XML: {'; '.join(problems)}. WikiExtractor would "
            "silently drop or merge pages; re-download the dump or fix the mirror."
        )
    return DumpCheck(pages=counts["page"], xml_bytes=total, counts=counts)


def _output_files(directory: Path) -> list[Path]:
    # WikiExtractor names files AA/wiki_00 .. AA/wiki_99, AB/wiki_00 ...; sorting keeps dump order.
    return sorted(p for p in directory.glob("*/wiki_*") if p.is_file())


def _paragraphs(text: str) -> list[str]:
    return [line for line in (" ".join(raw.split()) for raw in text.split("\n")) if line]


def extract(
    dump_path: Path,
    out_path: Path,
    *,
    processes: int = 2,
    max_articles: int | None = None,
    check: bool = True,
    max_xml_bytes: int | None = None,
    articles_path: Path | None = None,
) -> dict:
    """Run WikiExtractor on a dump and write one paragraph per line (title lines kept).

    Args:
        dump_path: `pages-articles[-multistream].xml.bz2` (or an uncompressed XML file).
        out_path: text file written atomically.
        articles_path: where to write each article's line count (title + paragraphs), one integer a
            line in text order, so later stages (the article-level split) know the article boundaries.
        processes: WikiExtractor worker processes.
        max_articles: keep only the first N non-empty articles.
        check: run `check_dump` beside WikiExtractor (one more core while it runs); a defect
            raises `DumpFormatError` and nothing is written.
        max_xml_bytes: cap on the decompressed dump size, enforced by the check.

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
        checked: list[DumpCheck | BaseException] = []

        def run_check() -> None:
            try:
                checked.append(check_dump(dump_path, max_xml_bytes=max_xml_bytes))
            except BaseException as e:  # re-raised in the caller's thread below
                checked.append(e)

        checker = threading.Thread(target=run_check, name=f"check-{dump_path.name}", daemon=True)
        if check:
            checker.start()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check:
            checker.join()
            if isinstance(checked[0], BaseException):
                raise checked[0]
        if result.returncode != 0:
            raise ExtractionError(
                f"WikiExtractor failed on {dump_path} (exit {result.returncode}):\n{result.stderr[-2000:]}"
            )
        stats = {"articles": 0, "empty_articles": 0, "lines": 0, "characters": 0}
        progress = ProgressLog(f"extract {dump_path.name}", unit="articles", log=logger)
        with atomic_open(out_path) as out, contextlib.ExitStack() as stack:
            docs = stack.enter_context(atomic_open(articles_path)) if articles_path is not None else None
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
                        if docs is not None:
                            docs.write(f"{1 + len(paragraphs)}\n")
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

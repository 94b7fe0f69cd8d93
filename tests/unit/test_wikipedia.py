"""Wikipedia: a demo dump served over HTTP, fetched with SHA-1 verification, extracted by WikiExtractor."""

from __future__ import annotations

import bz2
import json
import re
from pathlib import Path

import pytest

from tests.support.http_server import Fault, serve
from xlm_core.data.demo_mirror import TALK_TEXT, TEMPLATE_DOC, build_wikipedia_dump
from xlm_core.data.download import ChecksumError, DownloadError, DownloadSizeError
from xlm_core.data.wikipedia import (
    DumpFormatError,
    ExtractionError,
    check_dump,
    dump_url,
    extract,
    fetch_dump,
    resolve_latest,
)

DATE = "20240101"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    build_wikipedia_dump("en", DATE, root, max_pages=5)
    return root


def test_dump_url_layout(tmp_path):
    assert dump_url("https://dumps.wikimedia.org/", "en", DATE) == (
        "https://dumps.wikimedia.org/enwiki/20240101/enwiki-20240101-pages-articles.xml.bz2"
    )
    assert dump_url("https://x.org", "fr", DATE, multistream=True).endswith(
        "/frwiki/20240101/frwiki-20240101-pages-articles-multistream.xml.bz2"
    )
    expected = f"{tmp_path.as_uri()}/enwiki/{DATE}/enwiki-{DATE}-pages-articles.xml.bz2"
    assert dump_url(str(tmp_path), "en", DATE) == expected
    assert dump_url(tmp_path.as_uri() + "/", "en", DATE).startswith(tmp_path.as_uri() + "/enwiki/")


def test_fetch_verify_and_extract(mirror, tmp_path):
    with serve(mirror) as server:
        fetched = fetch_dump(server.url, "en", "latest", tmp_path / "downloads")
        paths = [r.path for r in server.requests]
    assert fetched.date == DATE and fetched.sha1 and len(fetched.sha1) == 40
    assert f"/enwiki/{DATE}/enwiki-{DATE}-sha1sums.txt" in paths
    assert fetched.path.read_bytes() == (mirror / "enwiki" / DATE / fetched.path.name).read_bytes()

    out = tmp_path / "text" / "en.all"
    stats = extract(fetched.path, out, processes=1)
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert stats["articles"] == 5 and stats["lines"] == len(lines)
    # Real man-page prose (getent(1) of the pinned manpages package, first in order) with its title line kept.
    assert lines[0] == "Getent"
    assert "If no output file is given, iconv writes to standard output." in text
    # Markup we generated is gone (man pages may quote "[[" literally, so match whole links).
    assert not re.search(r"\[\[[\w .:()-]+(\|[^\]]*)?\]\]|\{\{[\w ]+(\|[^}]*)?\}\}", text)
    for markup in ("<ref", "references", "'''", "&lt;", "&amp;", "wikitable", "Infobox", "Category:"):
        assert markup not in text, markup
    assert "uses the iconv(3) function" in text  # a link [[iconv]](3) kept as its text
    assert TEMPLATE_DOC not in text and TALK_TEXT.format("getent") not in text
    assert "(command)" not in text and "REDIRECT" not in text
    assert all(line == line.strip() and "  " not in line for line in lines)
    assert not list(out.parent.glob(".*"))  # no temporary files or WikiExtractor directories left


def test_extract_multistream_and_max_articles(mirror, tmp_path):
    fetched = fetch_dump(str(mirror), "en", DATE, tmp_path, multistream=True)
    stats = extract(fetched.path, tmp_path / "en.all", max_articles=2)
    assert stats["articles"] == 2
    assert (tmp_path / "en.all").read_text(encoding="utf-8").startswith("Getent\n")


def _missing(*names: str) -> dict:
    return {f"/enwiki/{DATE}/{name}": [Fault("status", status=404, times=9)] for name in names}


def test_missing_sha1sums_falls_back_to_md5sums(mirror, tmp_path):
    with serve(mirror, faults=_missing(f"enwiki-{DATE}-sha1sums.txt")) as server:
        fetched = fetch_dump(server.url, "en", DATE, tmp_path)
    assert fetched.sha1 is None and fetched.md5 and len(fetched.md5) == 32
    assert fetched.verified_by == "md5sums" and fetched.path.is_file()


def test_missing_sums_fall_back_to_dumpstatus(mirror, tmp_path):
    sums = (f"enwiki-{DATE}-sha1sums.txt", f"enwiki-{DATE}-md5sums.txt")
    with serve(mirror, faults=_missing(*sums)) as server:
        fetched = fetch_dump(server.url, "en", DATE, tmp_path, multistream=True)
    assert fetched.verified_by == "dumpstatus.json"
    assert fetched.sha1 and fetched.size == fetched.path.stat().st_size


def test_dumpstatus_of_unfinished_dump_is_refused(mirror, tmp_path):
    day = tmp_path / "m" / "enwiki" / DATE
    day.mkdir(parents=True)
    name = f"enwiki-{DATE}-pages-articles.xml.bz2"
    (day / name).write_bytes((mirror / "enwiki" / DATE / name).read_bytes())
    (day / "dumpstatus.json").write_text(
        json.dumps({"jobs": {"articlesdump": {"status": "in-progress", "files": {name: {"size": 1}}}}})
    )
    with pytest.raises(DownloadError, match="in-progress"):
        fetch_dump(str(tmp_path / "m"), "en", DATE, tmp_path / "dl")
    (day / "dumpstatus.json").unlink()
    fetched = fetch_dump(str(tmp_path / "m"), "en", DATE, tmp_path / "dl")
    assert fetched.verified_by is None and fetched.sha1 is None and fetched.path.is_file()


def test_dump_size_cap(mirror, tmp_path):
    with pytest.raises(DownloadSizeError, match="max_bytes=100"):
        fetch_dump(str(mirror), "en", DATE, tmp_path, max_bytes=100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "declaration",
    [
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>',
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!doctype rss SYSTEM "http://127.0.0.1:1/evil.dtd">',
    ],
)
def test_rss_with_entity_declarations_is_refused(tmp_path, declaration):
    feed = tmp_path / "enwiki" / "latest" / "enwiki-latest-pages-articles.xml.bz2-rss.xml"
    feed.parent.mkdir(parents=True)
    feed.write_text(
        f'<?xml version="1.0"?>\n{declaration}\n<rss><channel><item>'
        f"<link>https://dumps.wikimedia.org/enwiki/{DATE}</link><title>&lol2;</title></item></channel></rss>\n"
    )
    # `<!doctype` (lower case) is not XML at all: refused as invalid rather than as a declaration.
    with pytest.raises(DownloadError, match="DOCTYPE/ENTITY declaration refused|not a valid XML document"):
        resolve_latest(str(tmp_path), "en")


def test_truncated_bz2_dump_gives_one_clear_error(mirror, tmp_path):
    source = mirror / "enwiki" / DATE / f"enwiki-{DATE}-pages-articles.xml.bz2"
    cut = tmp_path / "enwiki-cut.xml.bz2"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 3])
    with pytest.raises(DumpFormatError, match=r"enwiki-cut\.xml\.bz2: truncated bz2 stream"):
        extract(cut, tmp_path / "out" / "en.all", processes=1)
    assert not (tmp_path / "out" / "en.all").exists() and list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("defect", ["cut", "unclosed_text"])
def test_malformed_dump_xml_gives_one_clear_error(mirror, tmp_path, defect):
    # WikiExtractor itself exits 0 on both, keeping a prefix of the pages (cut) or swallowing the rest of
    # the dump into one article (unclosed <text>); check_dump turns them into one error.
    xml = bz2.decompress((mirror / "enwiki" / DATE / f"enwiki-{DATE}-pages-articles.xml.bz2").read_bytes())
    lines = xml.decode("utf-8").splitlines(keepends=True)
    if defect == "cut":
        text = "".join(lines[: len(lines) // 2])
        expected = "does not end with </mediawiki>"
    else:
        text = "".join(lines).replace("</text>", "", 1)
        expected = "<text> but .* </text>"
    dump = tmp_path / "bad.xml.bz2"
    dump.write_bytes(bz2.compress(text.encode("utf-8")))
    with pytest.raises(DumpFormatError, match=rf"bad\.xml\.bz2: malformed MediaWiki export XML: .*{expected}"):
        extract(dump, tmp_path / "out" / "en.all", processes=1)
    assert list((tmp_path / "out").iterdir()) == []


def test_check_dump_counts_pages(mirror):
    for name in (f"enwiki-{DATE}-pages-articles.xml.bz2", f"enwiki-{DATE}-pages-articles-multistream.xml.bz2"):
        result = check_dump(mirror / "enwiki" / DATE / name)
        assert result.pages == result.counts["/page"] > 5
    with pytest.raises(DumpFormatError, match="max_xml_bytes"):
        check_dump(mirror / "enwiki" / DATE / f"enwiki-{DATE}-pages-articles.xml.bz2", max_xml_bytes=1000)


def test_corrupt_mirror_is_refused(mirror, tmp_path):
    bad = tmp_path / "bad"
    day = bad / "enwiki" / DATE
    day.mkdir(parents=True)
    for source in (mirror / "enwiki" / DATE).iterdir():
        (day / source.name).write_bytes(source.read_bytes())
    (day / f"enwiki-{DATE}-pages-articles.xml.bz2").write_bytes(bz2.compress(b"<mediawiki>\n</mediawiki>\n"))
    with serve(bad) as server, pytest.raises(ChecksumError, match="sha1"):
        fetch_dump(server.url, "en", DATE, tmp_path / "downloads")
    assert not (tmp_path / "downloads" / f"enwiki-{DATE}-pages-articles.xml.bz2").exists()


def test_missing_dump_and_latest_feed(tmp_path):
    with serve(tmp_path) as server:
        with pytest.raises(DownloadError, match="404"):
            fetch_dump(server.url, "xx", DATE, tmp_path / "downloads")
        with pytest.raises(DownloadError, match="404"):
            resolve_latest(server.url, "xx")


def test_minified_xml_gives_a_clear_error(mirror, tmp_path):
    source = mirror / "enwiki" / DATE / f"enwiki-{DATE}-pages-articles.xml.bz2"
    xml = bz2.decompress(source.read_bytes()).decode("utf-8")
    minified = tmp_path / "minified.xml.bz2"
    minified.write_bytes(bz2.compress("".join(line.strip() for line in xml.splitlines()).encode("utf-8")))
    with pytest.raises(ExtractionError, match="one element per line|own line"):
        extract(minified, tmp_path / "out.all")
    assert not (tmp_path / "out.all").exists()

"""Wikipedia: a demo dump served over HTTP, fetched with SHA-1 verification, extracted by WikiExtractor."""

from __future__ import annotations

import bz2
import re
from pathlib import Path

import pytest

from tests.support.http_server import Fault, serve
from xlm_core.data.demo_mirror import TALK_TEXT, TEMPLATE_DOC, build_wikipedia_dump
from xlm_core.data.download import ChecksumError, DownloadError
from xlm_core.data.wikipedia import ExtractionError, dump_url, extract, fetch_dump, resolve_latest

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
    # Real man-page prose (apropos(1), first in sorted order) with its title line kept.
    assert lines[0] == "Apropos"
    assert "Each manual page has a short description available within it." in text
    # Markup we generated is gone (man pages may quote "[[" literally, so match whole links).
    assert not re.search(r"\[\[[\w .:()-]+(\|[^\]]*)?\]\]|\{\{[\w ]+(\|[^}]*)?\}\}", text)
    for markup in ("<ref", "references", "'''", "&lt;", "&amp;", "wikitable", "Infobox", "Category:"):
        assert markup not in text, markup
    assert "apt.conf(5)" in text  # a link [[apt.conf]](5) kept as its text
    assert TEMPLATE_DOC not in text and TALK_TEXT.format("apropos") not in text
    assert "(command)" not in text and "REDIRECT" not in text
    assert all(line == line.strip() and "  " not in line for line in lines)
    assert not list(out.parent.glob(".*"))  # no temporary files or WikiExtractor directories left


def test_extract_multistream_and_max_articles(mirror, tmp_path):
    fetched = fetch_dump(str(mirror), "en", DATE, tmp_path, multistream=True)
    stats = extract(fetched.path, tmp_path / "en.all", max_articles=2)
    assert stats["articles"] == 2
    assert (tmp_path / "en.all").read_text(encoding="utf-8").startswith("Apropos\n")


def test_missing_sums_file_downloads_unverified(mirror, tmp_path, caplog):
    sums = f"/enwiki/{DATE}/enwiki-{DATE}-sha1sums.txt"
    with serve(mirror, faults={sums: [Fault("status", status=404)]}) as server:
        fetched = fetch_dump(server.url, "en", DATE, tmp_path)
    assert fetched.sha1 is None and fetched.path.is_file()
    assert "without checksum verification" in caplog.text


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

"""Demo mirror: real man-page text as a MediaWiki dump, real gettext catalogs as an OPUS zip."""

from __future__ import annotations

import bz2
import hashlib
import json
import re
import struct
import zipfile
from pathlib import Path

import pytest

from xlm_core.data.demo_mirror import (
    DemoMirrorError,
    build_demo_mirror,
    build_opus_zip,
    build_wikipedia_dump,
    catalog_pairs,
    read_mo,
)

DATE = "20240101"


def _write_mo(path: Path, entries: list[tuple[bytes, bytes]], order: str) -> Path:
    """A minimal compiled catalog (the GNU .mo layout) in the given byte order."""
    entries = sorted(entries)
    count = len(entries)
    originals, translations = 28, 28 + 8 * count
    data_start = 28 + 16 * count
    table_o, table_t, blob = b"", b"", b""
    for msgid, _ in entries:
        table_o += struct.pack(f"{order}2I", len(msgid), data_start + len(blob))
        blob += msgid + b"\x00"
    for _, msgstr in entries:
        table_t += struct.pack(f"{order}2I", len(msgstr), data_start + len(blob))
        blob += msgstr + b"\x00"
    header = struct.pack(f"{order}7I", 0x950412DE, 0, count, originals, translations, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + table_o + table_t + blob)
    return path


ENTRIES = [
    (b"", b"Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2;\n"),
    (b"Save the current file", b"Enregistrer le fichier actuel"),
    (b"menu\x04Open a new  window\nnow", b"Ouvrir une nouvelle\nfen\xc3\xaatre"),
    (b"%d file was deleted\x00%d files were deleted", b"%d fichier supprim\xc3\xa9\x00%d fichiers supprim\xc3\xa9s"),
    (b"Quit", b"Quitter"),
    (b"Same in both languages", b"Same in both languages"),
    (b"Untranslated entry here", b""),
]


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_mo_both_byte_orders(tmp_path, order):
    pairs = read_mo(_write_mo(tmp_path / "x.mo", ENTRIES, order))
    assert ("%d file was deleted", "%d fichier supprimé") in pairs
    assert ("Open a new  window\nnow", "Ouvrir une nouvelle\nfenêtre") in pairs
    assert all(msgid for msgid, _ in pairs) and ("Untranslated entry here", "") not in pairs


def test_catalog_pairs_filters_and_normalises(tmp_path):
    _write_mo(tmp_path / "xx" / "LC_MESSAGES" / "a.mo", ENTRIES, "<")
    _write_mo(tmp_path / "xx" / "LC_MESSAGES" / "b.mo", ENTRIES[:2], ">")  # duplicate pair
    pairs = catalog_pairs("xx", locale_root=tmp_path)
    assert sorted(pairs) == [
        ("%d file was deleted", "%d fichier supprimé"),
        ("Open a new window now", "Ouvrir une nouvelle fenêtre"),
        ("Save the current file", "Enregistrer le fichier actuel"),
    ]


def test_missing_language_names_the_directory(tmp_path):
    with pytest.raises(DemoMirrorError, match=str(tmp_path / "qq" / "LC_MESSAGES")):
        build_opus_zip("en-qq", tmp_path / "out", max_pairs=10, locale_root=tmp_path)
    with pytest.raises(DemoMirrorError, match=str(tmp_path / "qq" / "man")):
        build_wikipedia_dump("qq", DATE, tmp_path / "out", max_pages=3, man_root=tmp_path)
    with pytest.raises(DemoMirrorError, match="pinned wheels .*Django 5.2.8.*Fix:"):
        build_opus_zip("en-qq", tmp_path / "out", max_pairs=10)
    with pytest.raises(DemoMirrorError, match="manpages-qq"):
        build_wikipedia_dump("qq", DATE, tmp_path / "out", max_pages=3)
    with pytest.raises(DemoMirrorError, match="en-<lang>"):
        build_opus_zip("de-fr", tmp_path / "out", max_pairs=10)


def test_dump_layout_and_filtered_pages(tmp_path):
    path = build_wikipedia_dump("en", DATE, tmp_path, max_pages=3)
    day = tmp_path / "enwiki" / DATE
    assert path == day / f"enwiki-{DATE}-pages-articles.xml.bz2"
    xml = bz2.decompress(path.read_bytes()).decode("utf-8")
    lines = xml.splitlines()
    # One element per line, as WikiExtractor's line-based reader requires.
    assert lines[0].startswith('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/"')
    assert "    <dbname>enwiki</dbname>" in lines and lines[-1] == "</mediawiki>"
    assert '      <namespace key="10" case="first-letter">Template</namespace>' in lines
    assert '      <namespace key="828" case="first-letter">Module</namespace>' in lines
    assert sum(line == "    <ns>0</ns>" for line in lines) >= 4
    assert "    <ns>1</ns>" in lines and "    <ns>10</ns>" in lines
    assert any(re.fullmatch(r'    <redirect title=".+" />', line) for line in lines)
    assert "{{Infobox software" in xml and "&lt;ref&gt;Manual page" in xml and "&lt;references /&gt;" in xml
    texts = re.findall(r'<text bytes="(\d+)" sha1="([0-9a-z]{31})" xml:space="preserve">', xml)
    assert len(texts) == xml.count("<page>")
    sums = dict(line.split()[::-1] for line in (day / f"enwiki-{DATE}-sha1sums.txt").read_text().splitlines())
    assert sums[path.name] == hashlib.sha1(path.read_bytes()).hexdigest()
    status = json.loads((day / "dumpstatus.json").read_text())
    entry = status["jobs"]["articlesdump"]["files"][path.name]
    assert entry["size"] == path.stat().st_size and entry["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    rss = tmp_path / "enwiki" / "latest" / "enwiki-latest-pages-articles.xml.bz2-rss.xml"
    assert f"/enwiki/{DATE}" in rss.read_text()
    index = bz2.decompress((day / f"enwiki-{DATE}-pages-articles-multistream-index.txt.bz2").read_bytes())
    offset, page_id, title = index.decode().splitlines()[1].split(":", 2)
    stream = bz2.BZ2Decompressor().decompress(
        (day / f"enwiki-{DATE}-pages-articles-multistream.xml.bz2").read_bytes()[int(offset) :]
    )
    assert f"<title>{title}</title>".encode() in stream and f"<id>{page_id}</id>".encode() in stream


def test_mirror_is_deterministic(tmp_path):
    first = build_demo_mirror(tmp_path / "a", langs=["en", "fr"], pairs=["en-fr"], date=DATE, max_pages=3, max_pairs=50)
    second = build_demo_mirror(
        tmp_path / "b", langs=["en", "fr"], pairs=["en-fr"], date=DATE, max_pages=3, max_pairs=50
    )
    for key in ("dumps", "opus"):
        for name in first[key]:
            assert Path(first[key][name]).read_bytes() == Path(second[key][name]).read_bytes()
    assert first["wikipedia_base_url"] == (tmp_path / "a" / "wikipedia").as_uri()
    # Shared commands come first, so the two languages describe the same tools.
    titles = {
        lang: re.findall(r"<title>([^<:]+)</title>", bz2.decompress(Path(p).read_bytes()).decode())
        for lang, p in first["dumps"].items()
    }
    assert titles["en"][:3] == titles["fr"][:3]
    with zipfile.ZipFile(first["opus"]["en-fr"]) as archive:
        assert archive.read("GNOME.en-fr.en").count(b"\n") == archive.read("GNOME.en-fr.fr").count(b"\n") == 50


def test_variant_locale_directory_is_accepted(tmp_path):
    _write_mo(tmp_path / "zz_CN" / "LC_MESSAGES" / "a.mo", ENTRIES, "<")
    path = build_opus_zip("zz-en", tmp_path / "out", max_pairs=10, locale_root=tmp_path)
    assert path == tmp_path / "out" / "OPUS-GNOME" / "v1" / "moses" / "en-zz.txt.zip"
    with zipfile.ZipFile(path) as archive:
        assert archive.read("GNOME.en-zz.en").count(b"\n") == 3

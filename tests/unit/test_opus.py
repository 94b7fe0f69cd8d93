"""OPUS moses zips: URL layout, the real-shaped demo zip, alignment and hostile archives."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.support.http_server import serve
from xlm_core.data.demo_mirror import build_opus_zip
from xlm_core.data.download import download
from xlm_core.data.opus import OpusFormatError, moses_name, moses_url, read_moses_zip


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def test_moses_url_sorts_the_pair(tmp_path):
    assert moses_url("https://object.pouta.csc.fi", "MultiUN", "v1", "fr-en") == (
        "https://object.pouta.csc.fi/OPUS-MultiUN/v1/moses/en-fr.txt.zip"
    )
    assert moses_url(str(tmp_path), "GNOME", "v1", "en-zh_CN").startswith(tmp_path.as_uri() + "/OPUS-GNOME/")
    assert moses_name("EUbookshop", "v2", "en-de") == "EUbookshop-v2-de-en.txt.zip"
    with pytest.raises(OpusFormatError, match="l1-l2"):
        moses_url("https://x", "GNOME", "v1", "en")


def test_demo_zip_fetched_and_read(tmp_path):
    root = tmp_path / "opus"
    build_opus_zip("fr-en", root, max_pairs=200)
    with serve(root) as server:
        zip_path = download(moses_url(server.url, "GNOME", "v1", "fr-en"), tmp_path / "dl" / "GNOME-v1-en-fr.txt.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert names == ["GNOME.en-fr.en", "GNOME.en-fr.fr", "README", "LICENSE"]
    count = read_moses_zip(zip_path, "fr-en", tmp_path / "fr.txt", tmp_path / "en.txt")
    fr = (tmp_path / "fr.txt").read_text(encoding="utf-8").split("\n")[:-1]
    en = (tmp_path / "en.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert count == len(fr) == len(en) == 200
    assert all(len(line.split()) >= 3 for line in en) and en != fr
    assert len(set(zip(en, fr, strict=True))) == 200


def test_separators_inside_lines_become_spaces(tmp_path):
    zip_path = _zip(
        tmp_path / "c.zip",
        {
            "X.de-en.de": "eins\r zwei\u2028drei\nvier\x0bfünf\n",
            "X.de-en.en": "one two three\nfour five\n",
            "X.de-en.ids": "ignored\n",
            "__MACOSX/._X.de-en.de": "resource fork\n",
            "README": "readme\n",
        },
    )
    assert read_moses_zip(zip_path, "en-de", tmp_path / "en", tmp_path / "de") == 2
    assert (tmp_path / "de").read_text(encoding="utf-8") == "eins  zwei drei\nvier fünf\n"
    assert (tmp_path / "en").read_text(encoding="utf-8") == "one two three\nfour five\n"


def test_mismatched_line_counts_fail_clearly(tmp_path):
    zip_path = _zip(tmp_path / "bad.zip", {"X.en-fr.en": "a\nb\nc\n", "X.en-fr.fr": "a\nb\n"})
    with pytest.raises(OpusFormatError, match=r"X\.en-fr\.en has 3 lines, X\.en-fr\.fr has 2"):
        read_moses_zip(zip_path, "en-fr", tmp_path / "en", tmp_path / "fr")
    assert not (tmp_path / "en").exists() and not (tmp_path / "fr").exists()
    assert list(tmp_path.iterdir()) == [zip_path]


def test_missing_side_and_unsafe_names(tmp_path):
    only_one = _zip(tmp_path / "one.zip", {"X.en-fr.en": "a\n", "README": ""})
    with pytest.raises(OpusFormatError, match=r"ending in '\.en-fr\.fr', found none"):
        read_moses_zip(only_one, "en-fr", tmp_path / "en", tmp_path / "fr")
    evil = _zip(tmp_path / "evil.zip", {"X.en-fr.en": "a\n", "../X.en-fr.fr": "a\n"})
    with pytest.raises(OpusFormatError, match="parent-relative"):
        read_moses_zip(evil, "en-fr", tmp_path / "en", tmp_path / "fr")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(OpusFormatError, match="not a readable zip"):
        read_moses_zip(tmp_path / "junk.zip", "en-fr", tmp_path / "en", tmp_path / "fr")


def test_iitb_parallel_tgz(tmp_path):
    from tests.support.fixtures import IITB_PAIRS, write_iitb_tgz
    from xlm_core.data.iitb import iitb_url, read_iitb_tgz

    assert iitb_url() == "http://www.cfilt.iitb.ac.in/iitb_parallel/iitb_corpus_download/parallel.tgz"
    write_iitb_tgz(tmp_path / "srv" / "parallel.tgz")
    with serve(tmp_path / "srv") as server:
        tgz = download(iitb_url(server.url), tmp_path / "dl" / "parallel.tgz")
    assert read_iitb_tgz(tgz, tmp_path / "en-hi.en", tmp_path / "en-hi.hi") == len(IITB_PAIRS)
    en = (tmp_path / "en-hi.en").read_text(encoding="utf-8").splitlines()
    hi = (tmp_path / "en-hi.hi").read_text(encoding="utf-8").splitlines()
    assert list(zip(en, hi, strict=True)) == IITB_PAIRS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl", "en-hi.en", "en-hi.hi", "srv"]


def test_iitb_misaligned_capped_and_hostile(tmp_path):
    from tests.support.fixtures import write_iitb_tgz, write_tar_with_link
    from xlm_core.data.archives import ArchiveSizeError, UnsafeArchiveError
    from xlm_core.data.iitb import read_iitb_tgz

    out = (tmp_path / "out" / "en", tmp_path / "out" / "hi")
    bad = write_iitb_tgz(tmp_path / "bad.tgz", hi_extra=2)
    with pytest.raises(OpusFormatError, match=r"IITB\.en-hi\.en has 4 lines, IITB\.en-hi\.hi has 6"):
        read_iitb_tgz(bad, *out)
    with pytest.raises(ArchiveSizeError, match="IITB.en-hi"):
        read_iitb_tgz(write_iitb_tgz(tmp_path / "ok.tgz"), *out, max_member_bytes=64)
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        read_iitb_tgz(write_tar_with_link(tmp_path / "link.tgz"), *out)
    assert list((tmp_path / "out").iterdir()) == []


def test_opus_iitb_moses_zip(tmp_path):
    from tests.support.fixtures import IITB_PAIRS, write_zip
    from xlm_core.data.iitb import IITB_OPUS

    assert moses_url("https://object.pouta.csc.fi", *IITB_OPUS).endswith("/OPUS-IITB/v2.0/moses/en-hi.txt.zip")
    zip_path = write_zip(
        tmp_path / "IITB-v2.0-en-hi.txt.zip",
        {
            "IITB.en-hi.en": "".join(f"{e}\n" for e, _ in IITB_PAIRS),
            "IITB.en-hi.hi": "".join(f"{h}\n" for _, h in IITB_PAIRS),
            "README": "IITB v2.0\n",
            "LICENSE": "CC-BY-NC 4.0\n",
        },
    )
    assert read_moses_zip(zip_path, "hi-en", tmp_path / "hi", tmp_path / "en") == len(IITB_PAIRS)
    assert (tmp_path / "hi").read_text(encoding="utf-8").splitlines()[0] == IITB_PAIRS[0][1]

"""XNLI 1.0, XNLI-MT 1.0 and MultiNLI 1.0 readers on zips in the published layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import (
    MULTINLI_DEV,
    XNLI_DEV,
    XNLI_MT_TRAIN,
    XNLI_TEST,
    write_multinli_zip,
    write_xnli_mt_zip,
    write_xnli_zip,
    write_zip,
    xnli_tsv,
)
from tests.support.http_server import serve
from xlm_core.data.archives import ArchiveSizeError
from xlm_core.data.download import download
from xlm_core.data.nli import (
    NLIFormatError,
    multinli_url,
    nli_files,
    read_multinli,
    read_xnli,
    read_xnli_mt_train,
    xnli_mt_url,
    xnli_url,
)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_urls():
    assert xnli_url() == "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip"
    assert xnli_mt_url("https://mirror.example/xnli/") == "https://mirror.example/xnli/XNLI-MT-1.0.zip"
    assert multinli_url() == "https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip"


def test_xnli_served_downloaded_and_read(tmp_path):
    write_xnli_zip(tmp_path / "srv" / "XNLI-1.0.zip")
    with serve(tmp_path / "srv") as server:
        zip_path = download(xnli_url(server.url), tmp_path / "dl" / "XNLI-1.0.zip")
    counts = read_xnli(zip_path, tmp_path / "xnli")
    assert counts == {"en": {"valid": 3, "test": 2}, "fr": {"valid": 3, "test": 2}}
    for lang in ("en", "fr"):
        for split, rows in (("valid", XNLI_DEV[lang]), ("test", XNLI_TEST[lang])):
            s1, s2, label = (_lines(p) for p in nli_files(tmp_path / "xnli", lang, split))
            assert list(zip(s1, s2, label, strict=True)) == rows
    # QUOTE_NONE: a bare double quote stays in the text and does not swallow the tab that follows.
    assert _lines(tmp_path / "xnli" / "en.test.s1")[1] == "He said \"it's fine and walked out."
    assert sorted(p.name for p in (tmp_path / "xnli").iterdir()) == sorted(
        f"{lang}.{split}.{kind}"
        for lang in ("en", "fr")
        for split in ("valid", "test")
        for kind in ("s1", "s2", "label")
    )


def test_xnli_language_filter_and_missing_language(tmp_path):
    zip_path = write_xnli_zip(tmp_path / "XNLI-1.0.zip")
    assert read_xnli(zip_path, tmp_path / "fr", langs=["fr"]) == {"fr": {"valid": 3, "test": 2}}
    with pytest.raises(NLIFormatError, match=r"no XNLI rows for \['sw'\]"):
        read_xnli(zip_path, tmp_path / "sw", langs=["fr", "sw"])
    assert not (tmp_path / "sw").exists() or not list((tmp_path / "sw").iterdir())


def test_xnli_bad_rows_fail_with_location(tmp_path):
    tsv = xnli_tsv(XNLI_DEV).splitlines()
    short = write_zip(
        tmp_path / "short.zip",
        {
            "XNLI-1.0/xnli.dev.tsv": "\n".join([*tsv[:2], tsv[2].rsplit("\t", 3)[0]]) + "\n",
            "XNLI-1.0/xnli.test.tsv": xnli_tsv(XNLI_TEST),
        },
    )
    with pytest.raises(NLIFormatError, match=r"xnli\.dev\.tsv:3: expected 19 tab-separated columns, found 16"):
        read_xnli(short, tmp_path / "out")
    bad_label = write_zip(
        tmp_path / "label.zip",
        {
            "XNLI-1.0/xnli.dev.tsv": xnli_tsv({"en": [("a", "b", "maybe")]}),
            "XNLI-1.0/xnli.test.tsv": xnli_tsv(XNLI_TEST),
        },
    )
    with pytest.raises(NLIFormatError, match=r"xnli\.dev\.tsv:2: label 'maybe'"):
        read_xnli(bad_label, tmp_path / "out")
    no_test = write_zip(tmp_path / "nt.zip", {"XNLI-1.0/xnli.dev.tsv": xnli_tsv(XNLI_DEV)})
    with pytest.raises(NLIFormatError, match="exactly one member named 'xnli.test.tsv', found none"):
        read_xnli(no_test, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_xnli_member_size_cap(tmp_path):
    zip_path = write_xnli_zip(tmp_path / "XNLI-1.0.zip")
    with pytest.raises(ArchiveSizeError, match="xnli.dev.tsv"):
        read_xnli(zip_path, tmp_path / "out", max_member_bytes=500)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_xnli_mt_train(tmp_path):
    zip_path = write_xnli_mt_zip(tmp_path / "XNLI-MT-1.0.zip")
    assert read_xnli_mt_train(zip_path, tmp_path / "mt") == len(XNLI_MT_TRAIN["en"])
    s1, s2, label = (_lines(p) for p in nli_files(tmp_path / "mt", "en", "train"))
    assert s1[0] == "Conceptually cream skimming has two basic dimensions - product and geography ."
    assert label[-1] == "contradiction" and "contradictory" not in label
    assert set(label) == {"entailment", "neutral", "contradiction"} and len(s1) == len(s2) == len(label)
    with pytest.raises(NLIFormatError, match="multinli.train.fr.tsv"):
        read_xnli_mt_train(zip_path, tmp_path / "mt", lang="fr")


def test_multinli_skips_unlabelled_and_macosx(tmp_path):
    zip_path = write_multinli_zip(tmp_path / "multinli_1.0.zip")
    counts = read_multinli(zip_path, tmp_path / "mnli")
    assert counts == {"train": 2, "dev_matched": 2, "dev_mismatched": 2}
    s1, s2, label = (_lines(p) for p in nli_files(tmp_path / "mnli", "en", "dev_matched"))
    assert label == ["neutral", "contradiction"]
    assert s1 == [row[0] for row in MULTINLI_DEV[:2]]
    train_s2 = _lines(tmp_path / "mnli" / "en.train.s2")
    assert train_s2[0] == "Product and geography are what make cream skimming work."  # trailing space stripped
    assert read_multinli(zip_path, tmp_path / "only", splits=["dev_mismatched"]) == {"dev_mismatched": 2}
    with pytest.raises(NLIFormatError, match="split 'dev'"):
        read_multinli(zip_path, tmp_path / "x", splits=["dev"])

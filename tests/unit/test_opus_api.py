"""OPUS API lookups through a local server answering in the API's real JSON shape, and the XNLI-15 list."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.fixtures import XNLI15_CATALOGUE, opus_api_route, opus_row, xnli15_rows
from tests.support.http_server import serve
from xlm_core.config import load_config
from xlm_core.data.download import ChecksumError
from xlm_core.data.opus import (
    OPUS_API_URL,
    XNLI15_PARALLEL,
    OpusLookupError,
    fetch_moses,
    moses_url,
    opus_lookup,
    xnli15_parallel,
)

API = "/opusapi/"


def test_lookup_sorts_the_pair_and_reads_url_and_size(tmp_path):
    with serve(tmp_path, routes={API: opus_api_route(xnli15_rows())}) as server:
        release = opus_lookup(server.url + API, "MultiUN", "v1", "fr-en")
        query = server.hits(API)[0].query
    assert release == ("https://object.pouta.csc.fi/OPUS-MultiUN/v1/moses/en-fr.txt.zip", 1323244 * 1024)
    url, size = release
    assert size == release.size_bytes
    assert query == "corpus=MultiUN&source=en&target=fr&preprocessing=moses&version=v1"
    assert OPUS_API_URL == "https://opus.nlpl.eu/opusapi/"


def test_latest_picks_the_latest_release(tmp_path):
    with serve(tmp_path, routes={API: opus_api_route(xnli15_rows())}) as server:
        assert opus_lookup(server.url + API, "OpenSubtitles", "latest", "tr-en").url.endswith(
            "/OPUS-OpenSubtitles/v2018/moses/en-tr.txt.zip"
        )
        assert opus_lookup(server.url + API, "OpenSubtitles", "v2016", "en-tr").size_bytes == 900000 * 1024


def test_unknown_release_and_bad_answers(tmp_path):
    rows = xnli15_rows()
    with serve(tmp_path, routes={API: opus_api_route(rows), "/html/": lambda q: (200, "text/html", b"<html/>")}) as s:
        with pytest.raises(
            OpusLookupError, match=r"no moses release of MultiUN v9 for en-fr; the API returned nothing"
        ):
            opus_lookup(s.url + API, "MultiUN", "v9", "en-fr")
        with pytest.raises(OpusLookupError, match="not an OPUS API answer"):
            opus_lookup(s.url + "/html/", "MultiUN", "v1", "en-fr")
    twice = [*rows, {**rows[0], "url": rows[0]["url"].replace("v1", "v1b"), "id": 5}]
    with (
        serve(tmp_path, routes={API: opus_api_route(twice)}) as s,
        pytest.raises(OpusLookupError, match="more than one moses release"),
    ):
        opus_lookup(s.url + API, "MultiUN", "v1", "ar-en")


def _mirror(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "srv" / "OPUS-Tanzil" / "v1" / "moses" / "en-sw.txt.zip"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("actual", [8205 * 1024, 8205 * 1024 - 700, 8205 * 1024 + 1000])
def test_fetch_with_kb_size_check_passes(tmp_path, actual):
    source = _mirror(tmp_path, actual)
    with serve(tmp_path / "srv", routes={API: opus_api_route(xnli15_rows())}) as server:
        out = fetch_moses(server.url + API, "Tanzil", "v1", "sw-en", tmp_path / "dl" / "t.zip", base_url=server.url)
        assert [r.path for r in server.requests] == [API, "/OPUS-Tanzil/v1/moses/en-sw.txt.zip"]
    assert Path(out).read_bytes() == source.read_bytes()


@pytest.mark.parametrize("actual", [8205 * 1024 - 2048, 8200 * 1000])
def test_fetch_with_wrong_size_keeps_nothing(tmp_path, actual):
    _mirror(tmp_path, actual)
    with (
        serve(tmp_path / "srv", routes={API: opus_api_route(xnli15_rows())}) as server,
        pytest.raises(ChecksumError, match=r"expected 8401920 ± 1024"),
    ):
        fetch_moses(
            server.url + API, "Tanzil", "v1", "en-sw", tmp_path / "dl" / "t.zip", base_url=server.url, retries=0
        )
    assert not (tmp_path / "dl").exists() or not list((tmp_path / "dl").iterdir())


def test_xnli15_list_matches_the_preset_and_resolves(tmp_path):
    preset = load_config("xlm-mlm-tlm-xnli15-1024")
    assert [(c.corpus, c.version, c.pair) for c in preset.data.parallel] == [tuple(s) for s in XNLI15_PARALLEL]
    assert {s.pair.replace("en", "").strip("-") for s in XNLI15_PARALLEL} == set(preset.data.langs) - {"en"}
    assert all(s.pair == "-".join(sorted(s.pair.split("-"))) for s in XNLI15_PARALLEL)
    listed = xnli15_parallel()
    assert [url for _, url in listed][:3] == [
        "https://object.pouta.csc.fi/OPUS-MultiUN/v1/moses/ar-en.txt.zip",
        "https://object.pouta.csc.fi/OPUS-EUbookshop/v2/moses/bg-en.txt.zip",
        "https://object.pouta.csc.fi/OPUS-EUbookshop/v2/moses/de-en.txt.zip",
    ]
    sizes = {(c, v, p): kb for c, v, p, kb, _ in XNLI15_CATALOGUE}
    with serve(tmp_path, routes={API: opus_api_route(xnli15_rows())}) as server:
        for source, url in listed:
            # Ask with the pair the other way round: the API sorts it.
            l1, l2 = source.pair.split("-")
            release = opus_lookup(server.url + API, source.corpus, source.version, f"{l2}-{l1}")
            assert release.url == url == moses_url("https://object.pouta.csc.fi", *source)
            assert release.size_bytes == sizes[tuple(source)] * 1024


def test_catalogue_rows_have_the_api_shape():
    row = opus_row("MultiUN", "v1", "fr-en", 1323244, 13172019)
    assert list(json.loads(json.dumps(row, sort_keys=True))) == [
        "alignment_pairs",
        "corpus",
        "documents",
        "id",
        "latest",
        "preprocessing",
        "size",
        "source",
        "source_tokens",
        "target",
        "target_tokens",
        "url",
        "version",
    ]

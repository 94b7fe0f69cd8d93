"""Every download is verified: the published NLI zips by their pinned size and SHA-256, the demo's offline
mirror and NLI set by the SHA256SUMS lists they are built with, an unknown file by its Content-Length
(with a warning saying so)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.support.fixtures import write_xnli_zip
from tests.support.http_server import serve
from xlm_core.config import load_config
from xlm_core.data import nli_stages, stages
from xlm_core.data.download import CHECKSUM_LIST, ChecksumError, DownloadError, published_sha256
from xlm_core.data.nli import RELEASES, release_checks

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **overrides: object):
    return load_config(
        REPO / "configs" / "tiny.yaml",
        {
            "experiment.workdir": str(tmp_path / "{name}"),
            "data.demo_max_pages": 5,
            "data.demo_max_pairs": 200,
            **overrides,
        },
    )


def test_the_published_nli_zips_are_pinned_by_name():
    xnli = release_checks("https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip")
    assert xnli == {"size": 17_865_352, "sha256": RELEASES["XNLI-1.0.zip"].sha256}
    assert release_checks("https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip")["size"] == 226_850_426
    assert release_checks("/srv/mirror/XNLI-MT-1.0.zip")["size"] == 466_098_360  # a mirror: the same release
    assert release_checks("https://example.org/other.zip") == {}
    assert all(len(release.sha256) == 64 for release in RELEASES.values())


def test_a_file_posing_as_a_published_zip_is_refused(tmp_path):
    write_xnli_zip(tmp_path / "srv" / "XNLI-1.0.zip")  # not the published file
    cfg = _config(tmp_path)
    with serve(tmp_path / "srv") as server, pytest.raises(ChecksumError, match="expected 17865352"):
        nli_stages.fetch_nli(cfg, server.url + "/XNLI-1.0.zip")
    downloads = cfg.workdir / "xnli" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []


def test_an_unknown_file_is_verified_by_its_content_length_and_says_so(tmp_path, caplog):
    sample = write_xnli_zip(tmp_path / "srv" / "xnli-sample.zip")
    cfg = _config(tmp_path)
    with serve(tmp_path / "srv") as server, caplog.at_level(logging.WARNING):
        path = Path(nli_stages.fetch_nli(cfg, server.url + "/xnli-sample.zip"))
    assert path.read_bytes() == sample.read_bytes()
    assert "no checksum or size is known for this file, so only the server's Content-Length verified it" in caplog.text


def test_the_demo_mirror_publishes_checksums_and_a_changed_zip_is_refused(tmp_path):
    cfg = _config(tmp_path)
    sources = stages.prepare_sources(cfg)
    path = Path(stages.fetch_opus(cfg, 0, sources["opus"]))
    served = next((cfg.workdir / "mirror" / "opus").rglob("*.txt.zip"))
    assert (served.parent / CHECKSUM_LIST).is_file()
    assert published_sha256(served.as_uri()) is not None and path.read_bytes() == served.read_bytes()

    path.unlink()
    served.write_bytes(served.read_bytes() + b"tampered")
    with pytest.raises(ChecksumError, match="sha256 .* expected"):
        stages.fetch_opus(cfg, 0, sources["opus"])
    assert not path.exists()
    (served.parent / CHECKSUM_LIST).unlink()
    with pytest.raises(DownloadError, match="demo mirror lists no SHA-256 for this file"):
        stages.fetch_opus(cfg, 0, sources["opus"])


def test_the_demo_nli_set_is_verified_by_its_checksum_lists(tmp_path):
    cfg = _config(tmp_path, **{"xnli.demo": True, "xnli.demo_train_pairs": 30, "xnli.demo_eval_pairs": 6})
    urls = nli_stages.nli_sources(cfg)
    fetched = Path(nli_stages.fetch_nli(cfg, urls["xnli_url"]))
    assert fetched.name == "XNLI-1.0.zip"  # the published name, yet checked against the demo's own digest
    fetched.unlink()
    served = Path(urls["xnli_url"].removeprefix("file://"))
    shutil.copyfile(REPO / "configs" / "tiny.yaml", served)  # the mirror's file changed behind its list
    with pytest.raises(ChecksumError):
        nli_stages.fetch_nli(cfg, urls["xnli_url"])

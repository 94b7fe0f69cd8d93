"""A cached download task stays cached only while the file it fetched is there unchanged: a dump deleted
to free disk, or a zip changed in place, is fetched (and verified) again on the next run."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect import flow

from tasks.data import fetch_opus, fetch_wikipedia
from tasks.xnli import fetch_nli
from tests.support.fixtures import write_xnli_zip
from xlm_core.config import load_config, to_dict
from xlm_core.data import stages

REPO = Path(__file__).resolve().parents[2]


@flow
def fetch_sources(config: dict, wiki_url: str, opus_url: str, nli_url: str) -> list[str]:
    states = [
        fetch_wikipedia(config, "en", wiki_url, return_state=True),
        fetch_opus(config, 0, opus_url, return_state=True),
        fetch_nli(config, nli_url, return_state=True),
    ]
    return [state.name for state in states]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_deleted_or_changed_download_is_fetched_again(prefect_harness, tmp_path):
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {
            "experiment.workdir": str(tmp_path / "{name}"),
            "data.demo_max_pages": 5,
            "data.demo_max_pairs": 200,
        },
    )
    sources = stages.prepare_sources(cfg)
    nli_zip = write_xnli_zip(tmp_path / "nli-server" / "xnli-sample.zip")  # not a pinned release name
    config, urls = to_dict(cfg), (sources["wikipedia"], sources["opus"], str(nli_zip))
    assert fetch_sources(config, *urls) == ["Completed"] * 3
    assert fetch_sources(config, *urls) == ["Cached"] * 3

    downloads = cfg.workdir / "downloads"
    dump = next(downloads.rglob("*.xml.bz2"))
    moses = next(downloads.rglob("*.txt.zip"))
    fetched_nli = cfg.workdir / "xnli" / "downloads" / "xnli-sample.zip"
    good = {path: _sha256(path) for path in (dump, moses, fetched_nli)}
    for path in good:
        path.unlink()  # as when a dump is deleted to free disk
    assert fetch_sources(config, *urls) == ["Completed"] * 3
    assert {path: _sha256(path) for path in good} == good
    assert fetch_sources(config, *urls) == ["Cached"] * 3

    moses.write_bytes(b"changed in place")
    assert fetch_sources(config, *urls) == ["Cached", "Completed", "Cached"]
    assert _sha256(moses) == good[moses]  # fetched again and verified against the mirror's SHA256SUMS

"""Download tasks are cached across flow runs on (URL, pinned date or version, work directory)."""

from __future__ import annotations

import shutil

import pytest
from prefect import flow

from tasks.data import fetch_opus, fetch_wikipedia
from tests.conftest import REPO
from xlm_core.config import load_config, to_dict
from xlm_core.data import stages


@flow
def fetch_twice(config: dict, wiki_url: str, opus_url: str) -> list[str]:
    states = [fetch_wikipedia(config, "en", wiki_url, return_state=True) for _ in range(2)]
    states += [fetch_opus(config, 0, opus_url, return_state=True) for _ in range(2)]
    return [state.name for state in states]


@pytest.fixture
def mirror(tmp_path):
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"experiment.workdir": str(tmp_path / "{name}"), "data.demo_max_pages": 5, "data.demo_max_pairs": 200},
    )
    return cfg, stages.prepare_sources(cfg)


def test_second_fetch_is_cached_and_a_new_workdir_fetches_again(prefect_harness, mirror):
    cfg, sources = mirror
    config = to_dict(cfg)
    assert fetch_twice(config, sources["wikipedia"], sources["opus"]) == ["Completed", "Cached", "Completed", "Cached"]
    assert fetch_twice(config, sources["wikipedia"], sources["opus"]) == ["Cached"] * 4

    downloads = cfg.workdir / "downloads"
    shutil.rmtree(downloads)
    (cfg.workdir / ".stages" / "id").unlink()  # as when the work directory is deleted and made anew
    assert fetch_twice(config, sources["wikipedia"], sources["opus"])[::2] == ["Completed", "Completed"]
    assert any(downloads.rglob("*.xml.bz2")) and any(downloads.rglob("*.zip"))


def test_latest_is_never_cached(prefect_harness, mirror):
    cfg, sources = mirror
    cfg.data.wikipedia.dump_date = "latest"
    assert stages.source_cache_key(cfg, "wikipedia", "en", sources["wikipedia"]) is None

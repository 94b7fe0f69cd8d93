"""The cleaning stage is content-cached like the others: an unchanged rerun reuses it, and an edited
threshold reruns cleaning and what follows (split, tokenization, ...), never the extraction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from xlm_core.config import load_config
from xlm_core.data import stages

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def cleaned_workdir(tmp_path_factory):
    overrides = {
        "experiment.workdir": str(tmp_path_factory.mktemp("clean-cache") / "{name}"),
        "data.demo_max_pages": 15,
        "data.demo_max_pairs": 400,
        "data.valid_size": 40,
        "data.test_size": 40,
        "bpe.codes": 200,
        "cleaning.enabled": True,
    }
    stages.run_all(load_config(TINY, overrides))
    return overrides


def _mtimes(cfg) -> dict[str, int]:
    root = cfg.workdir
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for sub in ("text", "clean", "split", "tok", "bin")
        for p in (root / sub).rglob("*")
        if p.is_file()
    }


def _recomputed(caplog, run) -> tuple[set[str], set[str]]:
    """(stage labels reused, stage names run) of `run()`, from the stage cache's log lines."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xlm_core"):
        run()
    messages = [r.getMessage() for r in caplog.records]
    reused = {" ".join(m.split()[:2]).rstrip(":") for m in messages if "unchanged inputs, reusing" in m}
    return reused, {m.split()[1] for m in messages if m.startswith("cleaned ")}


def test_unchanged_rerun_reuses_the_cleaning(cleaned_workdir, caplog):
    cfg = load_config(TINY, cleaned_workdir)
    before = _mtimes(cfg)
    reused, cleaned = _recomputed(caplog, lambda: stages.run_all(cfg))
    assert {"clean en", "clean fr", "clean en-fr", "extract en", "split en"} <= reused and not cleaned
    assert _mtimes(cfg) == before
    record = stages.clean_mono(cfg, "en")
    assert record["enabled"] and record["kept"] + record["removed"] == record["lines"] > 0


def test_an_edited_threshold_reruns_cleaning_and_what_follows_only(cleaned_workdir, caplog):
    cfg = load_config(TINY, cleaned_workdir | {"cleaning.wikipedia.lid_threshold": 0.95})
    before = _mtimes(cfg)
    reused, cleaned = _recomputed(caplog, lambda: stages.run_all(cfg))
    after = _mtimes(cfg)
    changed = {path for path in after if after[path] != before.get(path)}
    # extraction and the pair (whose settings did not change) are reused ...
    assert {"extract en", "extract fr", "read-parallel en-fr", "clean en-fr", "split en-fr"} <= reused
    assert not {p for p in changed if p.startswith(("text/", "clean/para/", "split/para/", "tok/para/"))}
    # ... cleaning of both languages ran again, and the stages after it where its output changed
    assert "clean en" not in reused and "clean fr" not in reused
    assert {"clean/mono/fr.all", "split/mono/fr.train", "tok/mono/fr.train"} <= changed
    assert any(p.startswith("bin/") for p in changed)
    record = stages.clean_mono(cfg, "fr")
    strict = record["removed_lid"]
    loose = stages.clean_mono(load_config(TINY, cleaned_workdir), "fr")["removed_lid"]
    assert strict > loose  # the higher threshold removed more; back at 0.5 the first result is recomputed

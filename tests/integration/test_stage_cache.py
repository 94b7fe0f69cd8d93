"""Content-addressed stage reuse: an unchanged rerun recomputes nothing; a change redoes only its dependants."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import REPO
from xlm_core.config import load_config
from xlm_core.data import stages
from xlm_core.stage_cache import Stage, run_stage


@pytest.fixture(scope="module")
def cached_workdir(tmp_path_factory):
    overrides = {
        "experiment.workdir": str(tmp_path_factory.mktemp("cache") / "{name}"),
        "data.demo_max_pages": 20,
        "data.demo_max_pairs": 600,
        "data.valid_size": 50,
        "data.test_size": 50,
        "bpe.codes": 300,
    }
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    stages.run_all(cfg)
    return overrides


def _mtimes(cfg) -> dict[str, int]:
    root = cfg.workdir
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for sub in ("mirror", "text", "split", "tok", "bpe", "bin")
        for p in (root / sub).rglob("*")
        if p.is_file()
    }


def test_unchanged_rerun_reuses_every_stage(cached_workdir, caplog):
    cfg = load_config(REPO / "configs" / "tiny.yaml", cached_workdir)
    before = _mtimes(cfg)
    with caplog.at_level(logging.INFO, logger="xlm_core"):
        stages.run_all(cfg)
    assert _mtimes(cfg) == before  # nothing rewritten
    reused = [r.getMessage() for r in caplog.records if "unchanged inputs, reusing" in r.getMessage()]
    names = {message.split()[0] for message in reused}
    assert names == {
        "demo-mirror",
        "download",
        "filter-pairs",
        "extract",
        "read-parallel",
        "split",
        "tokenize",
        "learn-bpe",
        "apply-bpe",
        "dictionary",
        "binarize",
    }
    # mirror, 2 extractions, 1 pair read, 3 splits, codes, vocabulary, 3 stages per text unit, the
    # downloads and one pair filter per pair split
    plan = stages.plan_data(cfg)
    downloads = sum(message.split()[0] == "download" for message in reused)
    assert downloads >= 3  # 2 dumps and 1 OPUS zip
    per_unit = 3 * len(stages.text_units(cfg))
    assert len(reused) == 1 + 2 + 1 + 3 + 1 + 1 + per_unit + downloads + len(plan["pair_units"])


def test_a_changed_language_setting_redoes_only_what_depends_on_it(cached_workdir, caplog):
    overrides = cached_workdir | {"tokenization.per_lang_lowercase": {"fr": False}}
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    before = _mtimes(cfg)
    with caplog.at_level(logging.INFO, logger="xlm_core"):
        stages.run_all(cfg)
    after = _mtimes(cfg)
    changed = {path for path in after if after[path] != before.get(path)}
    # upstream of tokenization and English tokenization are untouched ...
    assert not {p for p in changed if p.startswith(("mirror/", "text/", "split/"))}
    assert not {p for p in changed if p.startswith("tok/") and ".fr." not in p and not p.startswith("tok/mono/fr")}
    # ... French tokenization is redone, and so is everything after the (jointly learned) BPE codes
    assert {"tok/mono/fr.train", "tok/para/en-fr.fr.train", "bpe/codes"} <= changed
    assert any(p.startswith("bin/") for p in changed)


def test_outputs_touched_or_deleted_are_recomputed(tmp_path):
    out = tmp_path / "out.txt"
    source = tmp_path / "in.txt"
    source.write_text("a\n")
    calls = []

    def compute():
        calls.append(1)
        out.write_text(source.read_text().upper())
        return {"lines": 1}

    stage = Stage("upper", "x", tmp_path, params={"p": 1}, inputs=[source], outputs=[out], code=("xlm_core.io",))
    assert stage.cache_key() == stage.key()  # never run here: its first result may be cached under the key
    assert run_stage(stage, compute) == {"lines": 1}
    assert stage.cache_key() == stage.key()
    assert run_stage(stage, compute) == {"lines": 1} and len(calls) == 1
    out.unlink()
    assert stage.cache_key() is None  # a missing output is never "cached"
    run_stage(stage, compute)
    assert len(calls) == 2
    source.write_text("b\n")  # new input content: new key, recomputed
    run_stage(stage, compute)
    assert len(calls) == 3 and out.read_text() == "B\n"
    other = Stage("upper", "x", tmp_path, params={"p": 2}, inputs=[source], outputs=[out], code=("xlm_core.io",))
    assert other.cache_key() is None  # another config value: not the recorded run


def test_concurrent_keys_of_stages_sharing_an_input_agree(tmp_path):
    """Prefect's thread pool computes the keys of many stages at once; those sharing an input (the
    dictionary of every binarize stage) digest it at the same moment. Every key must come out, equal
    to the key computed alone (a missing key means that stage's result is never cached)."""
    import threading

    shared = tmp_path / "dict.txt"
    shared.write_bytes(b"word 1\n" * 200_000)
    specs = [
        Stage("binarize", f"u{i}", tmp_path / "work", inputs=[shared], outputs=[tmp_path / f"out{i}"])
        for i in range(16)
    ]
    barrier = threading.Barrier(len(specs))
    keys: dict[str, str | None] = {}

    def compute(spec: Stage) -> None:
        barrier.wait()
        keys[spec.label] = spec.cache_key()

    for _ in range(3):  # a fresh memo each round: every thread digests and writes it
        for memo in (tmp_path / "work" / ".stages" / "digests").glob("*.json"):
            memo.unlink()
        shared.touch()
        threads = [threading.Thread(target=compute, args=(spec,)) for spec in specs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert keys == {spec.label: spec.key() for spec in specs}
        assert not list((tmp_path / "work" / ".stages").rglob(".*.tmp-*"))  # no temporaries left

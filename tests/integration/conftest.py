"""Shared fixtures for integration tests: real binarized data from the tiny config."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from xlm_core.config import load_config
from xlm_core.data import stages


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The tiny config's data stages, run directly (no Prefect): real WikiExtractor, fastBPE, binarization."""
    workdir = tmp_path_factory.mktemp("loop") / "{name}"
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"experiment.workdir": str(workdir), "data.demo_max_pages": 30, "data.demo_max_pairs": 1500},
    )
    plan = stages.plan_data(cfg)
    sources = stages.prepare_sources(cfg)
    for lang in plan["mono"]:
        stages.extract_wikipedia(cfg, lang, stages.fetch_wikipedia(cfg, lang, sources["wikipedia"]))
        stages.split_mono(cfg, lang)
    for pair, indices in plan["pair_corpora"].items():
        stages.read_parallel(cfg, pair, [stages.fetch_opus(cfg, i, sources["opus"]) for i in indices])
        stages.split_para(cfg, pair)
    for unit in plan["units"]:
        stages.tokenize_unit(cfg, unit)
    stages.learn_bpe_codes(cfg)
    for unit in plan["units"]:
        stages.apply_bpe_unit(cfg, unit)
    stages.build_dictionary(cfg)
    for unit in plan["units"]:
        stages.binarize_unit(cfg, unit)
    return cfg

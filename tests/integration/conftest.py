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
    stages.run_all(cfg)
    return cfg

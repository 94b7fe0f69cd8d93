"""Config loading: validation errors name the dotted key; overrides; presets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from xlm_core.config import ConfigError, load_config, parse_overrides

TINY = REPO / "configs" / "tiny.yaml"


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("model: {emb_dim: 64", "model: {emb_dimm: 64"))
    with pytest.raises(ConfigError, match=r"model\.emb_dimm: unknown key"):
        load_config(bad)


def test_wrong_type_and_cross_field_errors():
    with pytest.raises(ConfigError, match=r"model\.n_heads"):
        load_config(TINY, {"model.n_heads": "four"})
    with pytest.raises(ConfigError, match="divisible"):
        load_config(TINY, {"model.n_heads": 5})
    with pytest.raises(ConfigError, match="de-en"):
        load_config(TINY, {"objectives.mlm_steps": ["en", "de-en"]})
    with pytest.raises(ConfigError, match="not a section"):
        load_config(TINY, {"model.emb_dim.x": 1})


def test_overrides_parse_yaml_values():
    assert parse_overrides(
        ["model.emb_dim=128", "objectives.mlm_steps=[en, fr]", "train.precision=bf16", "scaling.ray_address=null"]
    ) == {
        "model.emb_dim": 128,
        "objectives.mlm_steps": ["en", "fr"],
        "train.precision": "bf16",
        "scaling.ray_address": None,
    }
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["model.emb_dim"])


def test_workdir_is_absolute_and_derived_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(TINY)
    assert cfg.experiment.workdir == str(tmp_path / "work" / "tiny")
    assert cfg.lang2id == {"en": 0, "fr": 1}
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/work/tiny/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert cfg.tracking_uri == "http://127.0.0.1:5000"
    assert not cfg.causal


@pytest.mark.parametrize(
    "preset,langs,causal",
    [
        ("xlm-clm-enfr-1024", 2, True),
        ("xlm-mlm-en-2048", 1, False),
        ("xlm-mlm-100-1280", 100, False),
        ("xlm-mlm-tlm-xnli15-1024", 15, False),
    ],
)
def test_presets_load_by_name(preset, langs, causal):
    cfg = load_config(preset)
    assert len(cfg.data.langs) == langs and cfg.causal is causal
    assert cfg.scaling.num_workers == 64 and cfg.scaling.use_gpu


def test_xnli15_preset_has_parallel_data_for_all_14_pairs():
    cfg = load_config("xlm-mlm-tlm-xnli15-1024")
    assert len(cfg.data.pairs) == 14 and all("en" in p.split("-") for p in cfg.data.pairs)
    assert cfg.lang2id["en"] == 4


def test_cli_reports_bad_key_with_exit_code_2():
    result = subprocess.run(
        [sys.executable, "-m", "xlm_cli.main", "config", str(TINY), "--set", "train.epochz=3"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "unknown config key train.epochz" in result.stderr


def test_config_reference_is_current():
    """docs/config-reference.md holds the generated reference (scripts/update_readme.py writes it there)."""
    markers = ("<!-- config-reference:start -->", "<!-- config-reference:end -->")
    reference = (REPO / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert all(reference.count(marker) == 1 for marker in markers)
    assert not any(marker in (REPO / "README.md").read_text(encoding="utf-8") for marker in markers)
    result = subprocess.run(
        [sys.executable, "scripts/update_readme.py", "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr

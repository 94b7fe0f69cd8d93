"""The prepare-data flow reports what the pair filter removes, per pair and split: MLflow metrics
`filter-pairs.<split>.<pair>.<count>`, the `stages/filter-pairs.json` artifact, `bin/<split>.<pair>.pairs.json`
and the Prefect table artifact `xlm-pair-filter`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

COUNTS = ("pairs", "removed_empty", "removed_long", "kept")


def test_prepare_data_reports_removed_pairs(prefect_harness, tmp_path):
    from mlflow import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.prepare_data import prepare_data
    from xlm_core.config import load_config
    from xlm_core.paths import WorkLayout

    overrides = {
        "experiment.workdir": str(tmp_path / "{name}"),
        "data.demo_max_pages": 15,
        "data.demo_max_pairs": 400,
        "data.valid_size": 40,
        "data.test_size": 40,
        "bpe.codes": 200,
        "objectives.max_len": 20,  # short enough that some GNOME pairs are removed
        "objectives.eval_max_len": 20,  # the same limit on valid/test (default: the position bound)
    }
    prepared = prepare_data(str(REPO / "configs" / "tiny.yaml"), overrides)
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    filtered = {record["split"]: record for record in prepared["filtered"]}
    assert sorted(filtered) == ["test", "train", "valid"]
    for split, record in filtered.items():
        written = json.loads((WorkLayout(cfg.workdir).root / "bin" / f"{split}.en-fr.pairs.json").read_text())
        assert {k: written[k] for k in COUNTS} == {k: record[k] for k in COUNTS}
        assert record["removed_empty"] + record["removed_long"] + record["kept"] == record["pairs"] > 0
        assert record["max_len"] == 20
    assert filtered["train"]["removed_long"] > 0 and filtered["train"]["kept"] > 0

    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id])
    for split, record in filtered.items():
        for key in COUNTS:
            assert run.data.metrics[f"filter-pairs.{split}.en-fr.{key}"] == record[key], (split, key)
    assert "stages/filter-pairs.json" in {a.path for a in client.list_artifacts(run.info.run_id, "stages")}

    with get_client(sync_client=True) as prefect:
        [artifact] = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["xlm-pair-filter"])), limit=1
        )
    rows = {row["set"]: row for row in json.loads(artifact.data)}
    assert {k: rows["valid.en-fr"][k] for k in COUNTS} == {k: filtered["valid"][k] for k in COUNTS}

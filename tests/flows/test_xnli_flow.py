"""The `xlm-xnli` flow under a Prefect test harness: fixtures over HTTP, Ray Train with 2 CPU workers,
a nested MLflow run with per-language metrics and the table, the Prefect table artifact, the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.http_server import serve
from tests.support.xnli import build_xnli_fixture, xnli_overrides

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]


@pytest.fixture(scope="module")
def flow_run(prefect_harness, ray_session, tmp_path_factory):
    from flows.xnli import xnli
    from xlm_core.config import load_config

    root = tmp_path_factory.mktemp("xnli-flow")
    served, model_dir = build_xnli_fixture(root, train_pairs=240, eval_pairs=12)
    with serve(served) as server:
        overrides = xnli_overrides(root, server.url, epoch_size=160, max_epochs=2)
        result = xnli(str(REPO / "configs" / "tiny.yaml"), overrides, model=str(model_dir))
        exported_ns = (Path(result["export_dir"]) / "model.safetensors").stat().st_mtime_ns
        rerun = xnli(str(REPO / "configs" / "tiny.yaml"), overrides, model=str(model_dir))
    rerun["first_export_mtime_ns"] = exported_ns
    return result, load_config(REPO / "configs" / "tiny.yaml", overrides), rerun


def test_mlflow_child_run_has_per_language_metrics_and_the_table(flow_run):
    from mlflow import MlflowClient

    result, cfg, _ = flow_run
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    run = client.get_run(result["mlflow_xnli_run_id"])
    assert run.data.tags["xlm.stage"] == "xnli" and run.data.tags["mlflow.parentRunId"]
    assert run.info.status == "FINISHED"
    for key in ("xnli_valid_en_acc", "xnli_test_fr_acc", "xnli_valid_avg_acc", "xnli_test_avg_acc"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1], key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "xnli")}
    assert {"xnli/xnli_table.md", "xnli/xnli_table.csv", "xnli/hf_export"} <= artifacts
    table = Path(client.download_artifacts(run.info.run_id, "xnli/xnli_table.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == [
        "en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur", "avg",
    ]  # fmt: skip
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"


def test_prefect_table_artifact_lists_15_languages(flow_run):
    from prefect.artifacts import Artifact

    artifact = Artifact.get("xnli-accuracy")
    assert artifact is not None and artifact.type == "table"
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert sorted(row["language"] for row in rows if row["language"] != "avg") == sorted(LANGS)
    assert all(row["test_acc"] is not None for row in rows)


def test_export_is_a_transformers_classifier(flow_run):
    from transformers import XLMForSequenceClassification

    result, _, _ = flow_run
    model = XLMForSequenceClassification.from_pretrained(result["export_dir"])
    assert model.config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}
    assert len(model.config.lang2id) == 15
    card = (Path(result["export_dir"]) / "README.md").read_text(encoding="utf-8")
    assert "| Accuracy |" in card and "| Paper (XLM MLM+TLM) | 85.0 | 78.7 |" in card


def test_unchanged_rerun_reports_the_same_run_without_duplicate_points(flow_run):
    from mlflow import MlflowClient

    result, cfg, rerun = flow_run
    assert rerun["mlflow_xnli_run_id"] == result["mlflow_xnli_run_id"]
    # The unchanged checkpoint's export is reused, not written again.
    assert (Path(rerun["export_dir"]) / "model.safetensors").stat().st_mtime_ns == rerun["first_export_mtime_ns"]
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    for key in ("best_xnli_valid_avg_acc", "best_xnli_test_en_acc", "xnli_valid_avg_acc"):
        history = client.get_metric_history(result["mlflow_xnli_run_id"], key)
        assert len(history) == len({m.step for m in history}) >= 1, key

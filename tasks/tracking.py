"""MLflow run lifecycle for a pipeline run, owned by the driver (the Prefect flow's process).

The pipeline run is the parent; training creates a nested child run. Runs are tagged with the
Prefect flow run id and URL, so each side links to the other.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from tasks._common import typed
from xlm_core.config import PipelineConfig, flatten
from xlm_core.paths import WorkLayout

__all__ = [
    "client_for",
    "ensure_experiment",
    "finish_pipeline_run",
    "log_params",
    "log_stage_stats",
    "mark_pipeline_run_failed",
    "prefect_tags",
    "publish_summary",
    "start_pipeline_run",
]

PREFECT_RUN_ID = "prefect.flow_run_id"
PREFECT_RUN_URL = "prefect.flow_run_url"


def client_for(cfg: PipelineConfig) -> MlflowClient:
    return MlflowClient(tracking_uri=cfg.tracking_uri)


def ensure_experiment(cfg: PipelineConfig) -> str:
    """Experiment id; a new experiment keeps its artifacts beside the embedded store (absolute path)."""
    client = client_for(cfg)
    existing = client.get_experiment_by_name(cfg.mlflow_experiment)
    if existing is not None:
        return existing.experiment_id
    location = None
    if cfg.tracking_uri.startswith("sqlite:"):
        location = WorkLayout(cfg.workdir).mlflow_artifacts.as_uri()
    return client.create_experiment(cfg.mlflow_experiment, artifact_location=location)


def prefect_tags() -> dict[str, str]:
    tags = {}
    if flow_run.id:
        tags[PREFECT_RUN_ID] = str(flow_run.id)
        tags["prefect.flow_run_name"] = str(flow_run.name)
        if flow_run.ui_url:
            tags[PREFECT_RUN_URL] = str(flow_run.ui_url)
    return tags


def log_params(client: MlflowClient, run_id: str, config: dict[str, Any]) -> None:
    """The flattened config as params (logged once per run) and as a JSON artifact."""
    params = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        client.log_artifact(run_id, str(path))


@task(name="start-mlflow-run")
def start_pipeline_run(config: dict[str, Any]) -> str:
    cfg = typed(config)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    client = client_for(cfg)
    run = client.create_run(
        ensure_experiment(cfg),
        run_name=f"pipeline-{flow_run.name or 'local'}",
        tags=prefect_tags() | {"xlm.stage": "pipeline"},
    )
    log_params(client, run.info.run_id, config)
    return run.info.run_id


@task(name="log-stage-stats")
def log_stage_stats(config: dict[str, Any], run_id: str, stage: str, stats: Any) -> None:
    """Numeric statistics of a stage as metrics, and the full record as a JSON artifact."""
    client = client_for(typed(config))
    records = stats if isinstance(stats, list) else [stats]
    metrics = []
    for record in records:
        if not isinstance(record, dict):
            continue
        label = ".".join(str(record[k]) for k in ("split", "pair", "lang") if record.get(k))
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                name = f"{stage}.{label}.{key}" if label else f"{stage}.{key}"
                metrics.append(mlflow.entities.Metric(name, float(value), 0, 0))
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    client.log_dict(run_id, stats, f"stages/{stage}.json")


@task(name="finish-mlflow-run")
def finish_pipeline_run(config: dict[str, Any], run_id: str, status: str = "FINISHED") -> str:
    cfg = typed(config)
    client_for(cfg).set_terminated(run_id, status=status)
    return f"{cfg.tracking_uri} run {run_id}"


@task(name="publish-summary")
def publish_summary(
    config: dict[str, Any], run_id: str, trained: dict[str, Any], exported: dict[str, Any]
) -> dict[str, Any]:
    """A Prefect artifact with the validation perplexities, the MLflow run and the export."""
    cfg = typed(config)
    metrics = trained.get("metrics") or {}
    rows = [
        {"metric": k, "value": round(float(v), 4)}
        for k, v in sorted(metrics.items())
        if k.startswith(("valid_", "test_")) and k.endswith("_ppl")
    ]
    create_table_artifact(
        key="xlm-perplexities",
        table=rows,
        description=f"MLflow training run {trained.get('run_id')} in {cfg.tracking_uri}",
    )
    summary = {
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
        "mlflow_tracking_uri": cfg.tracking_uri,
        "mlflow_pipeline_run_id": run_id,
        "mlflow_training_run_id": trained.get("run_id"),
        "best_checkpoint": trained.get("best_checkpoint"),
        "registered_model": trained.get("registered_model"),
        "export_dir": exported["export_dir"],
        "max_abs_logit_diff": exported["max_abs_logit_diff"],
        "metrics": {r["metric"]: r["value"] for r in rows},
    }
    create_markdown_artifact(
        key="xlm-run-summary",
        markdown="\n".join(
            ["| item | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary.items() if k != "metrics"]
        ),
    )
    client_for(cfg).log_dict(run_id, summary, "summary.json")
    return summary


def mark_pipeline_run_failed(flow: Any, run: Any, state: Any) -> None:
    """Flow hook: mark this flow run's MLflow runs FAILED so the dashboard does not show them running."""
    from xlm_core.config import load_config

    try:
        params = run.parameters or {}
        cfg = load_config(params["config_path"], params.get("overrides") or {})
        client = client_for(cfg)
        experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
        if experiment is None:
            return
        for found in client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{PREFECT_RUN_ID}` = '{run.id}'"
        ):
            if found.info.status == "RUNNING":
                client.set_terminated(found.info.run_id, status="FAILED")
    except Exception as e:  # a hook must not mask the flow's own failure
        logging.getLogger(__name__).warning("could not mark the MLflow run failed: %s", e)

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
from prefect import get_client, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from tasks._common import typed
from xlm_core.config import PipelineConfig, flatten
from xlm_core.paths import WorkLayout
from xlm_core.stage_cache import content_digest

__all__ = [
    "attach_directory",
    "child_run",
    "client_for",
    "ensure_experiment",
    "finish_pipeline_run",
    "log_params",
    "log_stage_stats",
    "mark_pipeline_run_failed",
    "mlflow_run_url",
    "prefect_tags",
    "publish_data_report",
    "publish_summary",
    "publish_training_report",
    "start_pipeline_run",
    "tag_flow_run",
    "trained_by_run",
]

PREFECT_RUN_ID = "prefect.flow_run_id"
PREFECT_RUN_URL = "prefect.flow_run_url"
MLFLOW_UI = "http://127.0.0.1:5000"  # where `make ui` / `mlflow ui` serve a local store


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


def child_run(config: dict[str, Any], parent_run_id: str, ray_run: str, stage: str) -> tuple[str, bool]:
    """The `stage` run of Ray Train run `ray_run` under `parent_run_id`: created (with the config as
    params) on first use, reused on a retry. Returns the run id and whether it was just created."""
    cfg = typed(config)
    client = client_for(cfg)
    experiment_id = ensure_experiment(cfg)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`xlm.ray_run_name` = '{ray_run}'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id, False
    tags = prefect_tags() | {"mlflow.parentRunId": parent_run_id, "xlm.stage": stage, "xlm.ray_run_name": ray_run}
    run = client.create_run(experiment_id, run_name=stage, tags=tags)
    log_params(client, run.info.run_id, config)
    return run.info.run_id, True


def trained_by_run(cfg: PipelineConfig, ray_run: str) -> str | None:
    """The finished MLflow run that trained Ray Train run `ray_run` (tag `xlm.ray_run_name`), if any."""
    found = client_for(cfg).search_runs(
        [ensure_experiment(cfg)],
        filter_string=f"tags.`xlm.ray_run_name` = '{ray_run}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


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


def attach_directory(cfg: PipelineConfig, local_dir: str, artifact_path: str, run_ids: list[str]) -> None:
    """Show `local_dir` as `artifact_path` on every run of `run_ids`, uploading its content at most once.

    The first run holds the files (it trained what they contain); it gets them only when its tag
    `xlm.digest.<artifact_path>` differs from the directory's content digest, so an unchanged rerun
    uploads nothing. Every other run gets the tag `xlm.link.<artifact_path>` = `runs:/<first>/<path>`
    instead of a copy (an export of a 2048-dim model is several GB).
    """
    if not run_ids:
        return
    client = client_for(cfg)
    holder, *others = run_ids
    digest = content_digest(Path(local_dir), cfg.workdir)
    if client.get_run(holder).data.tags.get(f"xlm.digest.{artifact_path}") != digest:
        client.log_artifacts(holder, local_dir, artifact_path)
        client.set_tag(holder, f"xlm.digest.{artifact_path}", digest)
    for run_id in others:
        client.set_tag(run_id, f"xlm.link.{artifact_path}", f"runs:/{holder}/{artifact_path}")


def mlflow_run_url(cfg: PipelineConfig, run_id: str) -> str:
    """The run's page on the MLflow dashboard (the server's URL, or `mlflow ui`'s default address)."""
    experiment = client_for(cfg).get_run(run_id).info.experiment_id
    base = cfg.tracking_uri if cfg.tracking_uri.startswith(("http://", "https://")) else MLFLOW_UI
    return f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


def tag_flow_run(run_id: str, url: str) -> None:
    """The reverse link: the current Prefect flow run carries the MLflow run id as a tag and a link artifact."""
    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id)
        client.update_flow_run(flow_run.id, tags=sorted({*current.tags, f"mlflow-run:{run_id}"}))
    create_link_artifact(key="mlflow-run", link=url, link_text=f"MLflow run {run_id}")


@task(name="start-mlflow-run", task_run_name="start-mlflow-run-{stage}")
def start_pipeline_run(config: dict[str, Any], stage: str = "pipeline") -> str:
    """The MLflow run of this flow run (`<stage>-<flow run name>`), tagged with the Prefect flow run and back."""
    cfg = typed(config)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    client = client_for(cfg)
    run = client.create_run(
        ensure_experiment(cfg),
        run_name=f"{stage}-{flow_run.name or 'local'}",
        tags=prefect_tags() | {"xlm.stage": stage},
    )
    log_params(client, run.info.run_id, config)
    tag_flow_run(run.info.run_id, mlflow_run_url(cfg, run.info.run_id))
    return run.info.run_id


def _corpus_rows(languages: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for language in languages:
        extract, split = language["extract"], language["split"]
        rows.append(
            {
                "corpus": f"Wikipedia {extract['lang']}",
                "dump": extract.get("dump_date"),
                "articles": extract.get("articles"),
                "lines": split.get("lines"),
                "train": split.get("train"),
                "valid": split.get("valid"),
                "test": split.get("test"),
                "MB": round((language["dump"].get("size") or 0) / 2**20, 1),
            }
        )
    for pair in pairs:
        read, split = pair["read"], pair["split"]
        rows.append(
            {
                "corpus": f"OPUS {read['pair']}",
                "dump": None,
                "articles": None,
                "lines": read.get("pairs"),
                "train": split.get("train"),
                "valid": split.get("valid"),
                "test": split.get("test"),
                "MB": None,
            }
        )
    return rows


@task(name="publish-data-report")
def publish_data_report(
    config: dict[str, Any], run_id: str, languages: list[dict[str, Any]], pairs: list[dict[str, Any]], prepared: Any
) -> None:
    """Prefect artifacts: corpus statistics, and BPE/vocabulary statistics per binarized file."""
    create_table_artifact(
        key="xlm-corpus-stats",
        table=_corpus_rows(languages, pairs),
        description=f"Corpora of experiment {typed(config).experiment.name}: lines per split after extraction.",
    )
    samples = prepared["codes"].get("sample_lines") or {}
    rows = [
        {
            "file": Path(item["prefix"]).name,
            "sentences": item.get("sentences"),
            "tokens": item.get("tokens"),
            "unk_rate_%": round(100 * float(item.get("unk_rate", 0.0)), 4),
        }
        for item in prepared["binarized"]
    ]
    create_table_artifact(
        key="xlm-bpe-vocabulary",
        table=rows,
        description=(
            f"{typed(config).bpe.codes} BPE codes learned on a sample of {sum(samples.values())} lines "
            f"({', '.join(f'{k}: {v}' for k, v in samples.items())}); vocabulary of "
            f"{prepared['dictionary']['size']} entries (MLflow run {run_id})."
        ),
    )


@task(name="publish-training-report")
def publish_training_report(config: dict[str, Any], trained: dict[str, Any]) -> None:
    """Prefect artifacts: validation/test results of the training run, with a link to its MLflow run."""
    cfg = typed(config)
    metrics = trained.get("metrics") or {}
    rows = [
        {"metric": key, "value": round(float(value), 4)}
        for key, value in sorted(metrics.items())
        if key.startswith(("valid_", "test_")) and key.endswith(("_ppl", "_acc"))
    ]
    url = mlflow_run_url(cfg, trained["run_id"])
    create_table_artifact(
        key="xlm-training-results",
        table=rows,
        description=f"Ray Train run {trained.get('run_name')}; MLflow training run: {url}",
    )
    create_link_artifact(key="mlflow-training-run", link=url, link_text=f"MLflow training run {trained['run_id']}")


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
    config: dict[str, Any],
    run_id: str,
    trained: dict[str, Any],
    exported: dict[str, Any],
    finetuned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run summary: a Prefect Markdown artifact and `summary.json` in the MLflow pipeline run."""
    cfg = typed(config)
    metrics = trained.get("metrics") or {}
    summary = {
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
        "mlflow_tracking_uri": cfg.tracking_uri,
        "mlflow_pipeline_run_id": run_id,
        "mlflow_pipeline_run_url": mlflow_run_url(cfg, run_id),
        "mlflow_training_run_id": trained.get("run_id"),
        "best_checkpoint": trained.get("best_checkpoint"),
        "registered_model": trained.get("registered_model"),
        "export_dir": exported["export_dir"],
        "max_abs_logit_diff": exported["max_abs_logit_diff"],
        "training_resumed": trained.get("resumed"),
        "xnli_export_dir": (finetuned or {}).get("export_dir"),
        "mlflow_xnli_run_id": (finetuned or {}).get("mlflow_xnli_run_id"),
        "xnli_accuracy": {
            k: round(float(v), 2) for k, v in ((finetuned or {}).get("metrics") or {}).items() if k.endswith("_acc")
        },
        "metrics": {
            k: round(float(v), 4)
            for k, v in sorted(metrics.items())
            if k.startswith(("valid_", "test_")) and k.endswith("_ppl")
        },
    }
    create_markdown_artifact(
        key="xlm-run-summary",
        markdown="\n".join(
            ["| item | value |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in summary.items() if k not in ("metrics", "xnli_accuracy")]
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

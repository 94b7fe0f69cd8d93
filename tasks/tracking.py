"""MLflow run lifecycle for a pipeline run, owned by the driver (the Prefect flow's process).

The pipeline run is the parent; training creates a nested child run. Runs are tagged with the
Prefect flow run id and URL, so each side links to the other.
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from prefect import get_client, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for

from tasks._common import typed
from xlm_core.config import PipelineConfig, flatten
from xlm_core.data.clean import REASONS as CLEANING_REASONS
from xlm_core.evaluation.report import evidence, is_report_metric, learned_markdown
from xlm_core.io import atomic_open
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
    "prefect_run_url",
    "prefect_tags",
    "publish_data_report",
    "publish_summary",
    "publish_training_report",
    "source_tags",
    "start_pipeline_run",
    "stop_summary",
    "tag_flow_run",
    "trained_by_run",
]

PREFECT_RUN_ID = "prefect.flow_run_id"
PREFECT_RUN_URL = "prefect.flow_run_url"
MLFLOW_UI = "http://127.0.0.1:5000"  # where `make ui` / `mlflow ui` serve a local store
PREFECT_UI = "http://127.0.0.1:4200"  # where `make ui` / `prefect server start` serve the Prefect UI
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


RESUMES_TAG = "xlm.resumes"


def child_run(config: dict[str, Any], parent_run_id: str, ray_run: str, stage: str) -> tuple[str, bool]:
    """The one `stage` run of Ray Train job `ray_run`, across pipeline runs and resumes.

    Created (under `parent_run_id`, with the config as params) on first use. Found again by its tag
    `xlm.ray_run_name` whatever pipeline run asks (a rerun with a raised max_epochs, a retry): that
    run is reopened, its `xlm.resumes` counter goes up by one and `xlm.resumed_by` names the asking
    pipeline run, so a job's metrics stay on one run and one step axis. Returns the run id and
    whether it was just created.
    """
    cfg = typed(config)
    client = client_for(cfg)
    experiment_id = ensure_experiment(cfg)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`xlm.ray_run_name` = '{ray_run}'",
        order_by=["attributes.start_time ASC"],  # the run that started the job (older versions made one per parent)
        max_results=1,
    )
    if found:
        run = found[0]
        resumes = int(run.data.tags.get(RESUMES_TAG, "0")) + 1
        client.set_tag(run.info.run_id, RESUMES_TAG, str(resumes))
        client.set_tag(run.info.run_id, "xlm.resumed_by", parent_run_id)
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
        return run.info.run_id, False
    tags = prefect_tags() | {
        "mlflow.parentRunId": parent_run_id,
        "xlm.stage": stage,
        "xlm.ray_run_name": ray_run,
        RESUMES_TAG: "0",
    }
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


def prefect_run_url() -> str | None:
    """The current flow run's page in the Prefect UI, on the route the UI serves (the one of the "View at"
    log lines; `flow_run.ui_url` builds an older route). Without a UI setting, as under the ephemeral API,
    the local UI's address (`make ui`) is used."""
    if not flow_run.id:
        return None
    return url_for("flow-run", obj_id=flow_run.id, default_base_url=PREFECT_UI)


@functools.lru_cache(maxsize=1)
def source_tags() -> dict[str, str]:
    """What produced the run: the git commit (and whether the tree had local changes), the entry
    point and the command line, under MLflow's own tag names where it has them."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": sys.argv[0], "xlm.command": shlex.join(sys.argv)}
    try:
        git = ["git", "-C", str(_PROJECT_ROOT)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return tags  # not a git checkout (an installed package): no commit to record
    tags["mlflow.source.git.commit"] = commit.stdout.strip()
    tags["xlm.git.dirty"] = str(bool(status.stdout.strip())).lower()
    return tags


def prefect_tags() -> dict[str, str]:
    """Links to the Prefect flow run and the run's source, for every MLflow run the flow creates."""
    tags = dict(source_tags())  # a copy: the cached dict stays as it is
    if flow_run.id:
        tags[PREFECT_RUN_ID] = str(flow_run.id)
        tags["prefect.flow_run_name"] = str(flow_run.name)
        tags[PREFECT_RUN_URL] = prefect_run_url() or ""
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


def _cleaning_columns(cleaned: dict[str, Any] | None) -> dict[str, Any]:
    """What the cleaning stage kept and removed, per filter (None in every column when it was off)."""
    cleaned = cleaned if cleaned and cleaned.get("enabled") else {}
    return {"kept": cleaned.get("kept")} | {f"removed_{r}": cleaned.get(f"removed_{r}") for r in CLEANING_REASONS}


def _corpus_rows(languages: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per corpus: lines extracted (read), kept and removed by each cleaning filter, then split."""
    rows = []
    for language in languages:
        extract, split = language["extract"], language["split"]
        rows.append(
            {
                "corpus": f"Wikipedia {extract['lang']}",
                "dump": extract.get("dump_date"),
                "articles": extract.get("articles"),
                "lines": extract.get("lines"),
                **_cleaning_columns(language.get("clean")),
                "train": split.get("train"),
                "valid": split.get("valid"),
                "test": split.get("test"),
                "valid_articles": split.get("valid_articles"),
                "test_articles": split.get("test_articles"),
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
                **_cleaning_columns(pair.get("clean")),
                "train": split.get("train"),
                "valid": split.get("valid"),
                "test": split.get("test"),
                "valid_articles": None,
                "test_articles": None,
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
        description=(
            f"Corpora of experiment {typed(config).experiment.name}: lines extracted (pairs read), kept and removed "
            "by each cleaning filter (empty when cleaning is off), then lines (and Wikipedia articles) per split."
        ),
    )
    samples = prepared["codes"].get("sample_lines") or {}
    rows = [
        {
            "file": Path(item["prefix"]).name,
            "sentences": item.get("sentences"),
            "tokens": item.get("tokens"),
            "unk_rate_%": round(100 * float(item.get("unk_rate", 0.0)), 4),
            "empty": item.get("empty_sentences"),
            "longest": item.get("longest_sentence"),
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
    _publish_pair_filter(config, prepared.get("filtered") or [])


def _publish_pair_filter(config: dict[str, Any], filtered: list[dict[str, Any]]) -> None:
    """Prefect table: per pair and split, the pairs removed (empty side, side above max_len) and kept."""
    if not filtered:
        return
    columns = ("pairs", "removed_empty", "removed_long", "kept", "longest_side", "longest_kept_side")
    create_table_artifact(
        key="xlm-pair-filter",
        table=[{"set": f"{item['split']}.{item['pair']}"} | {k: item.get(k) for k in columns} for item in filtered],
        description=(
            f"Sentence pairs removed before training and evaluation, on every split: an empty side, or a side "
            f"longer than objectives.max_len={typed(config).objectives.max_len} BPE tokens."
        ),
    )


def stop_summary(stop: dict[str, Any] | None) -> str:
    """One sentence on how training ended, from the loop's stop record (MLflow tags `xlm.stop.*`)."""
    if not stop:
        return "Training end not recorded."
    how = "Stopped early" if stop.get("early") else "Finished"
    metric = f" on {stop['metric']}" if stop.get("early") and stop.get("metric") else ""
    return f"{how}{metric} after epoch {stop.get('epoch')}: {stop.get('reason')}."


@task(name="publish-training-report")
def publish_training_report(config: dict[str, Any], trained: dict[str, Any]) -> None:
    """Prefect artifacts: validation/test results of the training run, how it ended (as the MLflow
    tags `xlm.stop.*` say), with a link to its MLflow run."""
    cfg = typed(config)
    metrics = trained.get("metrics") or {}
    rows = [
        {"metric": key, "value": round(float(value), 4)}
        for key, value in sorted(metrics.items())
        if is_report_metric(key) or key.startswith("stopping_")
    ]
    url = mlflow_run_url(cfg, trained["run_id"])
    create_table_artifact(
        key="xlm-training-results",
        table=rows,
        description=f"Ray Train run {trained.get('run_name')}. {stop_summary(trained.get('stop'))} "
        f"MLflow training run: {url}",
    )
    create_link_artifact(key="mlflow-training-run", link=url, link_text=f"MLflow training run {trained['run_id']}")
    if learned := learned_markdown(metrics):
        create_markdown_artifact(key="xlm-what-the-model-learned", markdown=learned)


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
    # Values a stage resolved at run time (e.g. the Wikipedia dump date behind `latest`) are params.
    params = [
        mlflow.entities.Param(key, str(value))
        for record in records
        if isinstance(record, dict)
        for key, value in (record.get("mlflow_params") or {}).items()
    ]
    if params:
        client.log_batch(run_id, params=params)
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
    """The run summary: a Prefect Markdown artifact, `summary.json` in the MLflow pipeline run and the same
    file in the work directory (`WorkLayout.summary`)."""
    cfg = typed(config)
    metrics = trained.get("metrics") or {}
    summary = {
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
        "mlflow_tracking_uri": cfg.tracking_uri,
        "mlflow_pipeline_run_id": run_id,
        "mlflow_pipeline_run_url": mlflow_run_url(cfg, run_id),
        "mlflow_training_run_id": trained.get("run_id"),
        "best_checkpoint": trained.get("best_checkpoint"),
        "registered_model": exported.get("registered_model"),  # registered by the export flow's log step
        "export_dir": exported["export_dir"],
        "max_abs_logit_diff": exported["max_abs_logit_diff"],
        "training_resumed": trained.get("resumed"),
        "xnli_export_dir": (finetuned or {}).get("export_dir"),
        "mlflow_xnli_run_id": (finetuned or {}).get("mlflow_xnli_run_id"),
        "xnli_accuracy": {
            k: round(float(v), 2) for k, v in ((finetuned or {}).get("metrics") or {}).items() if k.endswith("_acc")
        },
        "metrics": {k: round(float(v), 4) for k, v in sorted(metrics.items()) if is_report_metric(k)},
        # What the model learned on held-out data, against its targets (see `evidence`).
        "learned": evidence(metrics, (finetuned or {}).get("metrics")),
        "summary_file": str(WorkLayout(cfg.workdir).summary),
    }
    create_markdown_artifact(
        key="xlm-run-summary",
        markdown="\n".join(
            ["| item | value |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in summary.items() if k not in ("metrics", "xnli_accuracy")]
        ),
    )
    client_for(cfg).log_dict(run_id, summary, "summary.json")
    with atomic_open(summary["summary_file"]) as f:  # for scripts: work/<experiment>/summary.json
        json.dump(summary, f, indent=2, sort_keys=True)
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

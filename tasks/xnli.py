"""Prefect tasks for XNLI fine-tuning: one `xlm_core` call each.

Data stages return small records (paths, counts); the fine-tuning task owns its nested MLflow run
(`xnli`, tag `xlm.stage=xnli`), which Ray Train's rank 0 logs into.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from tasks._common import cached_stage, retry_transient, typed
from tasks.progress import TrainingProgress
from tasks.tracking import attach_directory, child_run, client_for, trained_by_run
from xlm_core.config.transfer import DownloadConfig
from xlm_core.data import nli_stages
from xlm_core.evaluation.xnli import MODE_DESCRIPTIONS, table_csv, table_markdown, table_rows
from xlm_core.train.finetune import SELECTION_METRIC, export_finetuned, finetune_config, model_vocabulary
from xlm_core.train.ray_launcher import best_pretraining_checkpoint, finetune_run_name, finished_run, launch_finetune

__all__ = [
    "export_classifier",
    "fetch_nli",
    "finetune_xnli",
    "model_vocab",
    "nli_sources",
    "prepare_nli_unit",
    "pretraining_checkpoint",
    "publish_xnli_table",
    "read_nli",
]


def _stage(stage: str, *arg_names: str) -> dict[str, Any]:
    return cached_stage(nli_stages.cache_key, stage, *arg_names)


@task(name="xnli-sources", **_stage("xnli-demo-set"))
def nli_sources(config: dict[str, Any]) -> dict[str, str | None]:
    """The zips `xnli.mode` reads: `xnli_url`, `multinli_url`, `xnli_mt_url` (None: not needed)."""
    return nli_stages.nli_sources(typed(config))


def _fetch_key(context, parameters) -> str | None:  # noqa: ANN001 - a Prefect cache_key_fn
    return nli_stages.fetch_cache_key(typed(parameters["config"]), parameters["url"])


@task(
    name="xnli-fetch",
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_condition_fn=retry_transient,
    timeout_seconds=DownloadConfig().task_timeout_s,  # a backstop: the library bounds each download itself
    cache_key_fn=_fetch_key,  # the download stage's key: none once the zip was deleted or changed
    persist_result=True,
)
def fetch_nli(config: dict[str, Any], url: str | None) -> str | None:
    return nli_stages.fetch_nli(typed(config), url)


@task(name="xnli-pretraining-checkpoint")
def pretraining_checkpoint(config: dict[str, Any]) -> str | None:
    return best_pretraining_checkpoint(typed(config))


@task(name="xnli-model-vocabulary")
def model_vocab(config: dict[str, Any], model: str | None, checkpoint_dir: str | None) -> dict[str, Any]:
    return model_vocabulary(typed(config), model=model, checkpoint_dir=checkpoint_dir)


@task(name="xnli-read", **_stage("xnli-read", "xnli_zip", "multinli_zip", "langs", "xnli_mt_zip"))
def read_nli(
    config: dict[str, Any], xnli_zip: str | None, multinli_zip: str | None, langs: list[str], xnli_mt_zip: str | None
) -> dict[str, Any]:
    return nli_stages.read_nli(typed(config), xnli_zip, multinli_zip, langs, xnli_mt_zip)


@task(
    name="xnli-prepare",
    task_run_name="xnli-prepare-{unit[lang]}-{unit[split]}",
    **_stage("xnli-prepare", "unit", "vocab"),
)
def prepare_nli_unit(config: dict[str, Any], unit: dict[str, str], vocab: dict[str, Any]) -> dict[str, Any]:
    return nli_stages.prepare_nli_unit(typed(config), unit, vocab)


@task(name="xnli-finetune", task_run_name="xnli-finetune-ray-train")
def finetune_xnli(config: dict[str, Any], vocab: dict[str, Any], parent_run_id: str) -> dict[str, Any]:
    """Fine-tune on Ray Train in the nested MLflow run `xnli`; returns the run id and the outcome.

    The run uses `xnli.num_workers` workers (else `scaling.num_workers`), checked to divide the global
    `xnli.batch_size` before any worker starts."""
    cfg = finetune_config(typed(config))
    data_dir = str(nli_stages.nli_bin_dir(vocab))
    name = finetune_run_name(cfg, vocab["model"], data_dir)
    done = finished_run(cfg, name=name, max_epochs=cfg.xnli.max_epochs, validation_metrics=[SELECTION_METRIC])
    trained_by = trained_by_run(cfg, name) if done else None
    if done and trained_by:  # the whole schedule is in the checkpoints: report it, start no workers
        return {"run_id": trained_by, "resumed": "finished", **asdict(done)}
    run_id, _ = child_run(config, parent_run_id, name, "xnli")
    client = client_for(cfg)
    try:
        outcome = launch_finetune(
            cfg,
            model_path=vocab["model"],
            data_dir=data_dir,
            langs=vocab["langs"],
            run_id=run_id,
            tracking_uri=cfg.tracking_uri,
            on_progress=TrainingProgress("XNLI fine-tuning", "xnli-progress"),
        )
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    return {"run_id": run_id, **asdict(outcome)}


@task(name="xnli-export")
def export_classifier(config: dict[str, Any], checkpoint_dir: str, run_ids: list[str]) -> dict[str, Any]:
    """Export the selected epoch as `XLMForSequenceClassification` (reused for an unchanged checkpoint),
    held by the first MLflow run (the fine-tuning run; uploaded only when changed), linked from the others."""
    cfg = typed(config)
    exported = export_finetuned(checkpoint_dir, cfg.workdir / "export-xnli", root=cfg.workdir)
    attach_directory(cfg, exported["export_dir"], "xnli/hf_export", run_ids)
    return exported


@task(name="xnli-publish")
def publish_xnli_table(config: dict[str, Any], exported: dict[str, Any], run_ids: list[str]) -> list[dict[str, Any]]:
    """The 15-language table (selected epoch, next to the paper) as a Prefect table artifact and as
    Markdown/CSV artifacts in MLflow; the selected epoch's accuracies also as `best_*` metrics."""
    cfg = typed(config)
    metrics, epoch, mode = exported["metrics"], exported["epoch"], cfg.xnli.mode
    rows = table_rows(metrics, mode)
    create_table_artifact(
        key="xnli-accuracy",
        table=rows,
        description=f"XNLI accuracy (%), mode {mode} ({MODE_DESCRIPTIONS[mode]}), at epoch {epoch} (best average "
        "valid accuracy); paper: XLM MLM+TLM test accuracy in the same mode",
    )
    client = client_for(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "xnli_table.md").write_text(table_markdown(metrics, mode), encoding="utf-8")
        (Path(tmp) / "xnli_table.csv").write_text(table_csv(metrics, mode), encoding="utf-8")
        for run_id in run_ids:
            client.log_artifacts(run_id, tmp, "xnli")
            # A rerun reports the same finished fine-tuning run: log only what it does not hold yet,
            # so the metric histories gain no duplicate points.
            logged = client.get_run(run_id).data.metrics
            for key, value in metrics.items():
                name = f"best_{key}"  # best_xnli_test_fr_acc: at the selected epoch
                if key.startswith("xnli_") and key.endswith("_acc") and logged.get(name) != float(value):
                    client.log_metric(run_id, name, float(value), step=int(epoch))
    return rows

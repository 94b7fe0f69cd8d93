"""Pretraining flow: one Ray Train job tracked as a nested MLflow run (resumed, never skipped)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.config import resolve_config
from tasks.tracking import finish_pipeline_run, mark_pipeline_run_failed, publish_training_report, start_pipeline_run
from tasks.train import pretrain as pretrain_task


@flow(
    name="xlm-pretrain", log_prints=True, on_failure=[mark_pipeline_run_failed], on_crashed=[mark_pipeline_run_failed]
)
def pretrain(config_path: str, overrides: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Train on the prepared data; a standalone run opens (and closes) its own MLflow pipeline run."""
    config = resolve_config(config_path, overrides)
    own_run = run_id is None
    run_id = run_id or start_pipeline_run(config, "pretrain")
    trained = pretrain_task(config, run_id)
    publish_training_report(config, trained)
    if own_run:
        finish_pipeline_run(config, run_id)
    return trained

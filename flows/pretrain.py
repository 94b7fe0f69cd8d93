"""Pretraining flow: one Ray Train job tracked as a nested MLflow run."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.train import pretrain as pretrain_task


@flow(name="xlm-pretrain", log_prints=True)
def pretrain(config: dict[str, Any], run_id: str) -> dict[str, Any]:
    return pretrain_task(config, run_id)

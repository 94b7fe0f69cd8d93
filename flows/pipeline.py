"""The master flow: data preparation -> Ray Train pretraining -> Hugging Face export -> XNLI."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.export import export
from flows.prepare_data import prepare_data
from flows.pretrain import pretrain
from flows.xnli import xnli_from_config
from tasks.config import resolve_config
from tasks.tracking import finish_pipeline_run, mark_pipeline_run_failed, publish_summary, start_pipeline_run


@flow(
    name="xlm-pipeline", log_prints=True, on_failure=[mark_pipeline_run_failed], on_crashed=[mark_pipeline_run_failed]
)
def xlm_pipeline(config_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    config = resolve_config(config_path, overrides)
    run_id = start_pipeline_run(config)
    prepared = prepare_data(config_path, overrides, run_id)
    trained = pretrain(config_path, overrides, run_id, wait_for=[prepared])
    exported = export(config, trained["best_checkpoint"], [trained["run_id"], run_id])
    finetuned = xnli_from_config(config, trained["best_checkpoint"], run_id) if config["xnli"]["enabled"] else None
    summary = publish_summary(config, run_id, trained, exported, finetuned)
    finish_pipeline_run(config, run_id)
    return summary


if __name__ == "__main__":
    xlm_pipeline("configs/demo.yaml")

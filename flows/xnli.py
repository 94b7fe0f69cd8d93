"""XNLI fine-tuning flow: prepare XNLI/MultiNLI/XNLI-MT with the model's own text processing, fine-tune
on Ray Train (English, or the translations in translate-train), evaluate 15 languages every epoch
(their English translations in translate-test), export the selected epoch.

`xnli` is deployable on its own (config path + overrides; it opens its own MLflow pipeline run
unless given one); `xnli_from_config` is what the master pipeline calls with its resolved config,
its best pretraining checkpoint and its MLflow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from tasks.config import resolve_config
from tasks.tracking import finish_pipeline_run, mark_pipeline_run_failed, start_pipeline_run
from tasks.xnli import (
    export_classifier,
    fetch_nli,
    finetune_xnli,
    model_vocab,
    nli_sources,
    prepare_nli_unit,
    pretraining_checkpoint,
    publish_xnli_table,
    read_nli,
)


@flow(name="xlm-xnli-finetune", log_prints=True)
def xnli_from_config(
    config: dict[str, Any], checkpoint_dir: str | None, run_id: str, model: str | None = None
) -> dict[str, Any]:
    """Fine-tune `model`, else `xnli.model`, else `checkpoint_dir`; log into a child of MLflow run `run_id`."""
    sources = nli_sources(config)  # the zips xnli.mode reads; None for the others, which fetch skips
    xnli_zip = fetch_nli(config, sources["xnli_url"])
    multinli_zip = fetch_nli(config, sources["multinli_url"])
    xnli_mt_zip = fetch_nli(config, sources["xnli_mt_url"])
    vocab = model_vocab(config, model, checkpoint_dir)
    text = read_nli(config, xnli_zip, multinli_zip, vocab["langs"], xnli_mt_zip)
    prepared = prepare_nli_unit.map(unmapped(config), text["units"], unmapped(vocab))
    trained = finetune_xnli(config, vocab, run_id, wait_for=[prepared])
    run_ids = [trained["run_id"], run_id]
    exported = export_classifier(config, trained["best_checkpoint"], run_ids)
    table = publish_xnli_table(config, exported, run_ids)
    finish_pipeline_run(config, trained["run_id"])
    return {
        "mlflow_xnli_run_id": trained["run_id"],
        "best_checkpoint": trained["best_checkpoint"],
        "export_dir": exported["export_dir"],
        "epoch": exported["epoch"],
        "metrics": exported["metrics"],
        "table": table,
    }


@flow(name="xlm-xnli", log_prints=True, on_failure=[mark_pipeline_run_failed], on_crashed=[mark_pipeline_run_failed])
def xnli(
    config_path: str, overrides: dict[str, Any] | None = None, model: str | None = None, run_id: str | None = None
) -> dict[str, Any]:
    config = resolve_config(config_path, overrides)
    pipeline_run_id = run_id or start_pipeline_run(config)
    result = xnli_from_config(config, pretraining_checkpoint(config), pipeline_run_id, model)
    if run_id is None:
        finish_pipeline_run(config, pipeline_run_id)
    return result


if __name__ == "__main__":
    xnli("configs/demo.yaml", {"xnli.enabled": True, "xnli.demo": True})

"""Export the best checkpoint to a Hugging Face directory and check it loads in transformers.

Both steps are cached on the checkpoint's content (an unchanged rerun reuses the export). The export
is uploaded to the training run only when its content changed; other runs link to it. The log step
also registers it in the model registry (`tasks.registry`).
"""

from __future__ import annotations

from typing import Any

from prefect import task

from tasks._common import typed
from tasks.registry import register_export
from tasks.tracking import attach_directory
from xlm_core.export.cached import cached_export, cached_verify, export_stage, verify_stage
from xlm_core.paths import WorkLayout

__all__ = ["export_model", "log_export", "verify_export"]


def _export_key(context, parameters) -> str | None:  # noqa: ANN001 - a Prefect cache_key_fn
    cfg = typed(parameters["config"])
    layout = WorkLayout(cfg.workdir)
    return export_stage(parameters["checkpoint_dir"], layout.export, root=cfg.workdir).cache_key()


def _verify_key(context, parameters) -> str | None:  # noqa: ANN001 - a Prefect cache_key_fn
    cfg = typed(parameters["config"])
    stage = verify_stage(
        parameters["export_dir"], parameters["checkpoint_dir"], lang=cfg.data.langs[0], root=cfg.workdir
    )
    return stage.cache_key()


@task(name="export-hf", cache_key_fn=_export_key, persist_result=True)
def export_model(config: dict[str, Any], checkpoint_dir: str) -> str:
    cfg = typed(config)
    return cached_export(checkpoint_dir, WorkLayout(cfg.workdir).export, root=cfg.workdir)


@task(name="verify-export-transformers", cache_key_fn=_verify_key, persist_result=True)
def verify_export(config: dict[str, Any], export_dir: str, checkpoint_dir: str) -> float:
    cfg = typed(config)
    return cached_verify(export_dir, checkpoint_dir, lang=cfg.data.langs[0], root=cfg.workdir)


@task(name="log-export")
def log_export(config: dict[str, Any], export_dir: str, run_ids: list[str]) -> str | None:
    """Attach the export to the MLflow runs: the first (the training run) holds `hf_export`, uploaded
    only when its content changed; the others (the pipeline run) link to it (`attach_directory`).
    Then register it as the training run's model (`tasks.registry`, alias `best`; an unchanged export
    is not registered again). Returns `models:/<name>@best`, or None (registration disabled, no runs)."""
    cfg = typed(config)
    attach_directory(cfg, export_dir, "hf_export", run_ids)
    return register_export(cfg, export_dir, run_ids[0]) if run_ids else None

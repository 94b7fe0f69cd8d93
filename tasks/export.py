"""Export the best checkpoint to a Hugging Face directory and check it loads in transformers."""

from __future__ import annotations

from typing import Any

from prefect import task

from tasks._common import typed
from tasks.tracking import client_for
from xlm_core.export.from_checkpoint import export_checkpoint, verify_checkpoint_export
from xlm_core.paths import WorkLayout

__all__ = ["export_model", "verify_export"]


@task(name="export-hf")
def export_model(config: dict[str, Any], checkpoint_dir: str, run_ids: list[str] | None = None) -> str:
    """Export the checkpoint and attach the directory to the given MLflow runs (pipeline and training)."""
    cfg = typed(config)
    out = export_checkpoint(checkpoint_dir, WorkLayout(cfg.workdir).export)
    for run_id in run_ids or []:
        client_for(cfg).log_artifacts(run_id, str(out), "hf_export")
    return str(out)


@task(name="verify-export-transformers")
def verify_export(config: dict[str, Any], export_dir: str, checkpoint_dir: str) -> float:
    return verify_checkpoint_export(export_dir, checkpoint_dir, lang=typed(config).data.langs[0])

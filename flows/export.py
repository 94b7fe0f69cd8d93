"""Export flow: Hugging Face directory from the best checkpoint, checked with transformers."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.export import export_model, log_export, verify_export


@flow(name="xlm-export", log_prints=True)
def export(config: dict[str, Any], checkpoint_dir: str, run_ids: list[str] | None = None) -> dict[str, Any]:
    """Export `checkpoint_dir` for transformers and check its logits; the first of `run_ids` (the
    training run) holds the export as `hf_export`, the others link to it, and the export is registered
    as the training run's model (`registered_model`: `models:/<name>@best`, or None)."""
    export_dir = export_model(config, checkpoint_dir)
    max_diff = verify_export(config, export_dir, checkpoint_dir)
    registered = log_export(config, export_dir, run_ids or [])
    return {"export_dir": export_dir, "max_abs_logit_diff": max_diff, "registered_model": registered}

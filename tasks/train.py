"""The pretraining task: one MLflow child run, one Ray Train job (resumed, never skipped).

The trained model is registered after its export (`tasks.export.log_export`, `tasks.registry`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task

from tasks._common import typed
from tasks.progress import TrainingProgress
from tasks.tracking import child_run, client_for, trained_by_run
from xlm_core.paths import WorkLayout
from xlm_core.train.ray_launcher import finished_run, launch, ray_run_name

__all__ = ["pretrain"]


def _child_run(config: dict[str, Any], parent_run_id: str) -> str:
    """The `pretrain` run of this config's Ray run; a new one also gets the vocabulary and BPE codes."""
    cfg = typed(config)
    run_id, created = child_run(config, parent_run_id, ray_run_name(cfg), "pretrain")
    if created:
        layout = WorkLayout(cfg.workdir)
        for path in (layout.dictionary, layout.codes):
            client_for(cfg).log_artifact(run_id, str(path), "vocabulary")
    return run_id


@task(name="pretrain", task_run_name="pretrain-ray-train")
def pretrain(config: dict[str, Any], parent_run_id: str) -> dict[str, Any]:
    """Launch (or resume) the Ray Train run of this config. A run whose checkpoints already hold the
    whole schedule is not relaunched: its outcome and the MLflow run that trained it are returned."""
    cfg = typed(config)
    done = finished_run(cfg)
    trained_by = trained_by_run(cfg, done.run_name) if done else None
    if done and trained_by:
        client_for(cfg).set_tag(parent_run_id, "xlm.training_run", trained_by)
        return {"run_id": trained_by, "resumed": "finished", **asdict(done)}
    run_id = _child_run(config, parent_run_id)
    client = client_for(cfg)
    try:
        progress = TrainingProgress("pretraining", "pretraining-progress")
        outcome = launch(cfg, run_id=run_id, tracking_uri=cfg.tracking_uri, on_progress=progress)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.log_artifacts(run_id, outcome.best_checkpoint, "best_checkpoint")
    client.set_terminated(run_id, status="FINISHED")
    client.set_tag(parent_run_id, "xlm.training_run", run_id)
    return {"run_id": run_id, "resumed": None, **asdict(outcome)}

"""The pretraining task: one MLflow child run, one Ray Train job (resumed, never skipped)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import version
from typing import Any

import mlflow
from prefect import task

from tasks._common import typed
from tasks.tracking import child_run, client_for, trained_by_run
from xlm_core.export.from_checkpoint import model_from_checkpoint
from xlm_core.paths import WorkLayout
from xlm_core.train.ray_launcher import finished_run, launch, ray_run_name

__all__ = ["pretrain", "register_best_model"]


def _child_run(config: dict[str, Any], parent_run_id: str) -> str:
    """The `pretrain` run of this config's Ray run; a new one also gets the vocabulary and BPE codes."""
    cfg = typed(config)
    run_id, created = child_run(config, parent_run_id, ray_run_name(cfg), "pretrain")
    if created:
        layout = WorkLayout(cfg.workdir)
        for path in (layout.dictionary, layout.codes):
            client_for(cfg).log_artifact(run_id, str(path), "vocabulary")
    return run_id


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (needed by `log_model`) for one block, without leaving the process-wide
    tracking URI (and the MLFLOW_TRACKING_URI variable it sets) pointing at this run's store."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri mirrors the URI into this variable
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None restores MLflow's default and unsets the variable


def register_best_model(config: dict[str, Any], run_id: str, checkpoint_dir: str) -> str | None:
    """Log the best model to the training run and register it (alias `best`) in the model registry."""
    cfg = typed(config)
    name = cfg.experiment.name if cfg.tracking.registered_model is None else cfg.tracking.registered_model
    if not name:
        return None
    model, _, _, _ = model_from_checkpoint(checkpoint_dir)
    with _tracking_uri(cfg.tracking_uri), mlflow.start_run(run_id=run_id, nested=True):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=name,
            serialization_format="pickle",
            pip_requirements=[f"torch=={version('torch')}", f"xlm-pipeline=={version('xlm-pipeline')}"],
        )
    client_for(cfg).set_registered_model_alias(name, "best", str(info.registered_model_version))
    return f"models:/{name}@best"


def _registered(config: dict[str, Any], run_id: str) -> str | None:
    """`models:/<name>@best` when the registry's `best` version comes from `run_id`."""
    cfg = typed(config)
    name = cfg.experiment.name if cfg.tracking.registered_model is None else cfg.tracking.registered_model
    if not name:
        return None
    try:
        version = client_for(cfg).get_model_version_by_alias(name, "best")
    except mlflow.exceptions.MlflowException:
        return None
    return f"models:/{name}@best" if version.run_id == run_id else None


@task(name="pretrain", task_run_name="pretrain-ray-train")
def pretrain(config: dict[str, Any], parent_run_id: str) -> dict[str, Any]:
    """Launch (or resume) the Ray Train run of this config. A run whose checkpoints already hold the
    whole schedule is not relaunched: its outcome and the MLflow run that trained it are returned."""
    cfg = typed(config)
    done = finished_run(cfg)
    trained_by = trained_by_run(cfg, done.run_name) if done else None
    if done and trained_by:
        client_for(cfg).set_tag(parent_run_id, "xlm.training_run", trained_by)
        registered = _registered(config, trained_by) or register_best_model(config, trained_by, done.best_checkpoint)
        return {"run_id": trained_by, "registered_model": registered, "resumed": "finished", **asdict(done)}
    run_id = _child_run(config, parent_run_id)
    client = client_for(cfg)
    try:
        outcome = launch(cfg, run_id=run_id, tracking_uri=cfg.tracking_uri)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.log_artifacts(run_id, outcome.best_checkpoint, "best_checkpoint")
    registered = register_best_model(config, run_id, outcome.best_checkpoint)
    client.set_terminated(run_id, status="FINISHED")
    client.set_tag(parent_run_id, "xlm.training_run", run_id)
    return {"run_id": run_id, "registered_model": registered, "resumed": None, **asdict(outcome)}

"""One MLflow run per training job: a job resumed by a second pipeline run (raised max_epochs) keeps
logging into the run that started it, on one step axis (the global update count)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def test_job_resumed_in_a_second_pipeline_run_keeps_one_mlflow_run(prepared, prefect_harness, ray_session, tmp_path):
    from prefect.artifacts import Artifact

    from flows.pretrain import pretrain

    overrides = {
        "experiment.workdir": str(prepared.workdir),
        "data.demo_max_pages": prepared.data.demo_max_pages,
        "data.demo_max_pairs": prepared.data.demo_max_pairs,
        "train.steps_per_epoch": 10,
        "train.max_epochs": 1,
        "checkpoint.storage_path": str(tmp_path / "ray"),
        "tracking.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.system_metrics": False,
        "tracking.registered_model": "",
    }
    first = pretrain(str(TINY), overrides)
    second = pretrain(str(TINY), overrides | {"train.max_epochs": 2})

    client = MlflowClient(tracking_uri=overrides["tracking.tracking_uri"])
    assert second["run_id"] == first["run_id"]
    [experiment] = [e for e in client.search_experiments() if e.name == "tiny"]
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("xlm.ray_run_name") == first["run_name"]]
    assert [r.info.run_id for r in jobs] == [first["run_id"]]  # no second training run
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["xlm.resumes"] == "1"
    parents = [r for r in runs if "xlm.ray_run_name" not in r.data.tags]  # the two pipeline runs
    assert len(parents) == 2 and {p.data.tags["xlm.training_run"] for p in parents} == {first["run_id"]}
    assert run.data.tags["xlm.resumed_by"] in {p.info.run_id for p in parents}
    assert run.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}  # the pipeline run that started it
    # Continuous metrics on one step axis: an evaluation per epoch at updates 10 and 20, windows between.
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "valid_mlm_ppl")) == [10, 20]
    assert sorted(m.value for m in client.get_metric_history(run.info.run_id, "epoch")) == [0.0, 1.0]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "lr")) == [10, 20]
    assert run.data.tags["xlm.stop.early"] == "false" and run.data.tags["xlm.stop.epoch"] == "1"
    assert second["stop"]["reason"] == "reached train.max_epochs=2"
    report = Artifact.get("xlm-training-results")
    assert report is not None and "Finished after epoch 1: reached train.max_epochs=2." in report.description

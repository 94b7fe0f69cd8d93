"""The master flow on the tiny config against the real services: Prefect server and MLflow server,
both storing into PostgreSQL. Each side records the other's run id."""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def served_pipeline(servers, ray_session, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import xlm_pipeline

    workdir = tmp_path_factory.mktemp("served") / "{name}"
    overrides = {"experiment.workdir": str(workdir), "tracking.tracking_uri": servers.mlflow.url}
    with temporary_settings(updates={PREFECT_API_URL: servers.prefect.url}):
        summary = xlm_pipeline(str(REPO / "configs" / "tiny.yaml"), overrides)
    return summary


def test_prefect_server_has_the_completed_flow_run(served_pipeline, prefect_api):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(served_pipeline["prefect_flow_run_id"])
        flow = client.read_flow(flow_run.flow_id)
    assert flow.name == "xlm-pipeline"
    assert flow_run.state_name == "Completed"
    assert flow_run.parameters["config_path"].endswith("configs/tiny.yaml")


def test_mlflow_server_has_the_pipeline_run_tagged_with_the_flow_run(served_pipeline, servers):
    from mlflow import MlflowClient

    flow_run_id = str(served_pipeline["prefect_flow_run_id"])
    assert served_pipeline["mlflow_tracking_uri"] == servers.mlflow.url
    client = MlflowClient(tracking_uri=servers.mlflow.url)
    pipeline = client.get_run(served_pipeline["mlflow_pipeline_run_id"])
    assert pipeline.info.status == "FINISHED"
    assert pipeline.data.tags["prefect.flow_run_id"] == flow_run_id
    assert flow_run_id in pipeline.data.tags["prefect.flow_run_url"]
    found = client.search_runs(
        [pipeline.info.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'"
    )
    assert pipeline.info.run_id in {run.info.run_id for run in found}
    training = client.get_run(served_pipeline["mlflow_training_run_id"])
    assert training.data.tags["mlflow.parentRunId"] == pipeline.info.run_id
    assert client.get_metric_history(training.info.run_id, "valid_mlm_ppl")
    # Artifacts went through the server's proxy into its artifact destination.
    assert pipeline.info.artifact_uri.startswith("mlflow-artifacts:")
    assert any(p.is_file() for p in (servers.root / "mlflow" / "artifacts").rglob("*"))


def test_both_servers_stored_the_runs_in_postgresql(served_pipeline, servers):
    mlflow_rows = _query(
        servers.postgres.url("mlflow"),
        "SELECT status FROM runs WHERE run_uuid = %s",
        served_pipeline["mlflow_pipeline_run_id"],
    )
    assert mlflow_rows == [("FINISHED",)]
    prefect_rows = _query(
        servers.postgres.url("prefect"),
        "SELECT state_type FROM flow_run WHERE id = %s",
        str(served_pipeline["prefect_flow_run_id"]),
    )
    assert prefect_rows == [("COMPLETED",)]


def _query(url: str, sql: str, *params) -> list[tuple]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()

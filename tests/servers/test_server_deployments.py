"""prefect.yaml against a real Prefect server on PostgreSQL: every deployment registers with its
parameters and schedules, and a schedule turns into a run that a process worker completes."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.conftest import REPO
from tests.support.servers import VENV_BIN, Service, start_process, stop_process

pytestmark = pytest.mark.servers

POOL = "xlm-process"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SCHEDULE_LEAD_S = 12


def _prefect(servers, *args: str, timeout_s: float = 180) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "prefect"), *args],
        cwd=REPO,
        env=servers.prefect_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def deployed(servers):
    """The work pool and every deployment of prefect.yaml, registered through the CLI."""
    _prefect(servers, "work-pool", "create", POOL, "--type", "process")
    _prefect(servers, "--no-prompt", "deploy", "--all")
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def _schedule_view(schedule) -> dict:
    """A deployment schedule in prefect.yaml's terms, read back from the API."""
    return {
        "cron": schedule.schedule.cron,
        "timezone": schedule.schedule.timezone,
        "active": schedule.active,
        "slug": schedule.slug,
        "parameters": schedule.parameters,
    }


def test_every_deployment_registers_with_parameters_and_schedules(deployed, prefect_api):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        registered = {(d.entrypoint, d.name): d for d in client.read_deployments()}
        pool = client.read_work_pool(POOL)
    assert pool.type == "process"
    assert len(registered) == len(deployed["deployments"])
    for spec in deployed["deployments"]:
        deployment = registered[(spec["entrypoint"], spec["name"])]
        label = f"{spec['entrypoint']} {spec['name']}"
        assert deployment.parameters == spec["parameters"], label
        assert deployment.work_pool_name == POOL, label
        assert deployment.work_queue_name == spec["work_pool"]["work_queue_name"], label
        assert set(deployment.tags) == set(spec["tags"]), label
        assert deployment.job_variables == spec["work_pool"].get("job_variables", {}), label
        # The pull step keeps its placeholder: the worker's environment names the checkout.
        assert deployment.pull_steps == deployed["pull"], label
        limit = deployment.global_concurrency_limit
        assert (limit.limit if limit else None) == spec.get("concurrency_limit"), label
        expected = [
            {"cron": s["cron"], "timezone": s["timezone"], "active": s["active"], "slug": s["slug"],
             "parameters": s.get("parameters", {})}
            for s in spec.get("schedules", [])
        ]  # fmt: skip
        got = sorted((_schedule_view(s) for s in deployment.schedules), key=lambda s: s["slug"])
        assert got == sorted(expected, key=lambda s: s["slug"]), label
        # Flow signatures come from the code: every parameter is one the flow accepts.
        assert set(spec["parameters"]) <= set(deployment.parameter_openapi_schema["properties"]), label


def test_a_scheduled_run_executes_on_a_process_worker(deployed, servers, prefect_api, tmp_path, track_service):
    """A short interval schedule on the per-language deployment: the server's scheduler creates the
    run, a `prefect worker` picks it up, the pull step enters the checkout, and the flow prepares
    English from the tiny config's offline mirror."""
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.client.schemas.schedules import IntervalSchedule

    workdir = tmp_path / "work" / "{name}"
    parameters = {
        "config_path": "configs/tiny.yaml",
        "lang": "en",
        "overrides": {"experiment.workdir": str(workdir), "tracking.tracking_uri": servers.mlflow.url},
    }
    env = servers.prefect_env() | {"XLM_PROJECT_DIR": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    log_path = tmp_path / "worker.log"
    argv = [str(VENV_BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
    worker = start_process("prefect worker", argv, log_path=log_path, env=env, cwd=tmp_path)
    track_service(Service("prefect worker", "", worker, log_path))
    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("xlm-prepare-language/demo")
            # One run, due SCHEDULE_LEAD_S from now (the next would be an hour later). The lead must
            # cover the scheduler's loop even on a loaded machine: once the due time has passed, the
            # scheduler's first date would be the next hour's.
            anchor = datetime.now(UTC) + timedelta(seconds=SCHEDULE_LEAD_S)
            schedule = IntervalSchedule(interval=timedelta(hours=1), anchor_date=anchor)
            (created,) = client.create_deployment_schedules(
                deployment.id,
                [DeploymentScheduleCreate(schedule=schedule, active=True, max_scheduled_runs=1,
                                          parameters=parameters, slug="test-soon")],
            )  # fmt: skip
            try:
                runs_filter = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
                run = _wait_for_final_run(client, runs_filter, timeout_s=300)
            finally:
                client.delete_deployment_schedule(deployment.id, created.id)
    finally:
        stop_process(worker)
    assert run.state_name == "Completed", (run.state_name, run.state.message if run.state else None)
    assert run.auto_scheduled and abs((run.expected_start_time - anchor).total_seconds()) < 1
    assert run.parameters["lang"] == "en" and run.parameters["overrides"] == parameters["overrides"]
    split = sorted(p.name for p in (tmp_path / "work" / "tiny").rglob("*") if p.is_file() and "split" in p.parts)
    assert split, "the flow run wrote no train/valid/test split"


def _wait_for_final_run(client, runs_filter, *, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    runs = []
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(flow_run_filter=runs_filter)
        final = [r for r in runs if r.state_type is not None and r.state_type.value in FINAL_STATES]
        if final:
            return final[0]
        time.sleep(1)
    states = [(r.name, r.state_name, str(r.expected_start_time)) for r in runs]
    pytest.fail(f"no scheduled run of the deployment finished within {timeout_s:.0f} s; runs: {states}")

"""Real services for the server tests: one PostgreSQL cluster, one `prefect server start` and one
`mlflow server` per session (both backed by the cluster), all on 127.0.0.1.

The servers start side by side on first use and are killed, as process groups, at the end of the
session. When a test fails, the tail of every service's log is attached to its report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import (
    PostgresCluster,
    Service,
    ServiceError,
    mlflow_server,
    postgres_cluster,
    prefect_environment,
    prefect_server,
)

# The scheduler service turns deployment schedules into runs every 60 s by default; the
# scheduled-run test waits for it, so it loops faster here.
SCHEDULER_LOOP_S = 2.0

_RUNNING: list[Service] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _RUNNING:
        for service in _RUNNING:
            report.sections.append((f"{service.name} log ({service.log_path})", service.log_tail()))


@dataclass(frozen=True)
class Servers:
    postgres: PostgresCluster
    prefect: Service
    mlflow: Service
    root: Path

    def prefect_env(self) -> dict[str, str]:
        """Environment for Prefect CLI commands and workers talking to the test server."""
        return prefect_environment(self.prefect.url, self.root / "client-home")


@contextlib.contextmanager
def _tracked(service: Service) -> Iterator[Service]:
    _RUNNING.append(service)
    try:
        yield service
    finally:
        _RUNNING.remove(service)


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Iterator[Servers]:
    # Logs, homes and MLflow artifacts; pytest keeps the last few base temp dirs for inspection.
    root = tmp_path_factory.mktemp("servers")
    error = None
    with contextlib.ExitStack() as stack:
        try:
            pg = stack.enter_context(postgres_cluster(root, databases=("prefect", "mlflow")))
            stack.enter_context(_tracked(pg.service))
            prefect = stack.enter_context(
                prefect_server(root / "prefect", pg.url("prefect", driver="asyncpg"), scheduler_loop_s=SCHEDULER_LOOP_S)
            )
            stack.enter_context(_tracked(prefect))
            tracking = stack.enter_context(mlflow_server(root / "mlflow", pg.url("mlflow")))
            stack.enter_context(_tracked(tracking))
            # Both servers started above and come up side by side.
            prefect.wait_ready(timeout_s=240)
            tracking.wait_ready(timeout_s=240)
        except ServiceError as e:
            error = str(e)
        if error is not None:
            pytest.fail(error, pytrace=False)
        yield Servers(pg, prefect, tracking, root)


@pytest.fixture
def prefect_api(servers) -> Iterator[str]:
    """Point this process's Prefect client (flows, `get_client`) at the test server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: servers.prefect.url}):
        yield servers.prefect.url


@pytest.fixture
def track_service():
    """Attach an extra process's log (a worker) to failure reports while the test runs."""
    added: list[Service] = []

    def track(service: Service) -> Service:
        _RUNNING.append(service)
        added.append(service)
        return service

    yield track
    for service in added:
        _RUNNING.remove(service)

"""Session-wide test settings: isolated Prefect home, quiet offline servers, one Ray instance."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Test modules import this file again as `tests.conftest`: both imports share one home.
_HOME = Path(os.environ.get("XLM_TESTS_HOME") or tempfile.mkdtemp(prefix="xlm-tests-"))
os.environ["XLM_TESTS_HOME"] = str(_HOME)
os.environ.update(
    {
        "PREFECT_HOME": str(_HOME / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "DO_NOT_TRACK": "1",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray Train polls workers every 2 s by default; each report waits for a poll.
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parent.parent


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's Prefect home (its SQLite database and stored results)."""
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API (SQLite) for every flow test in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance started once (as the pipeline starts one) and shut down at the end of the session."""
    import ray

    from xlm_core.config import load_config
    from xlm_core.train.ray_launcher import ensure_ray

    ensure_ray(load_config(REPO / "configs" / "tiny.yaml"))
    yield ray
    ray.shutdown()

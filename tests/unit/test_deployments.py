"""prefect.yaml: every deployment's entrypoint is a flow that accepts its parameters and config."""

from __future__ import annotations

import importlib
import inspect

import yaml

from tests.conftest import REPO
from xlm_core.config import load_config


def test_deployments_point_at_flows_with_valid_parameters():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert hasattr(flow, "fn"), f"{deployment['name']}: {name} is not a Prefect flow"
        signature = inspect.signature(flow.fn)
        params = deployment.get("parameters", {})
        assert set(params) <= set(signature.parameters), deployment["name"]
        load_config(REPO / params["config_path"], params.get("overrides") or {})
        for schedule in deployment.get("schedules", []):
            assert len(schedule["cron"].split()) == 5

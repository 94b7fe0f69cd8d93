"""prefect.yaml: every deployment's entrypoint is a flow that accepts its parameters and config.

Registration against a real server, and a scheduled run, are in tests/servers."""

from __future__ import annotations

import importlib
import inspect

import yaml

from tests.conftest import REPO
from xlm_core.config import load_config

SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
FLOWS = {
    "flows/pipeline.py:xlm_pipeline",
    "flows/prepare_data.py:prepare_data",
    "flows/prepare_data.py:prepare_language",
    "flows/prepare_data.py:prepare_pair",
    "flows/pretrain.py:pretrain",
    "flows/xnli.py:xnli",
}


def _flow(entrypoint: str):
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def test_every_flow_has_a_deployment_on_the_process_pool():
    assert {d["entrypoint"] for d in SPEC["deployments"]} == FLOWS
    names = [(d["entrypoint"], d["name"]) for d in SPEC["deployments"]]
    assert len(names) == len(set(names))
    for deployment in SPEC["deployments"]:
        assert deployment["work_pool"]["name"] == "xlm-process", deployment["name"]
    # Flow runs start in the worker's checkout, which the worker's environment names.
    assert SPEC["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $XLM_PROJECT_DIR }}"}}
    ]


def test_deployments_point_at_flows_with_valid_parameters():
    for deployment in SPEC["deployments"]:
        flow = _flow(deployment["entrypoint"])
        label = f"{deployment['entrypoint']} {deployment['name']}"
        assert hasattr(flow, "fn"), f"{label}: not a Prefect flow"
        signature = inspect.signature(flow.fn)
        required = {name for name, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
        params = deployment.get("parameters", {})
        assert required <= set(params) <= set(signature.parameters), label
        runs = [params] + [params | s.get("parameters", {}) for s in deployment.get("schedules", [])]
        for run in runs:
            assert set(run) <= set(signature.parameters), label
            load_config(REPO / run["config_path"], run.get("overrides") or {})


def test_schedules_are_monthly_utc_crons_and_big_presets_start_inactive():
    scheduled = 0
    for deployment in SPEC["deployments"]:
        for schedule in deployment.get("schedules", []):
            scheduled += 1
            minute, hour, day, month, weekday = schedule["cron"].split()
            assert (month, weekday) == ("*", "*") and day.isdigit() and 1 <= int(day) <= 28, schedule
            assert schedule["timezone"] == "UTC" and schedule["slug"], schedule
            if "presets/" in deployment["parameters"]["config_path"]:
                assert schedule["active"] is False, (deployment["name"], schedule["slug"])
    assert scheduled
    languages = {
        s["parameters"]["lang"]
        for d in SPEC["deployments"]
        if d["entrypoint"].endswith(":prepare_language")
        for s in d.get("schedules", [])
    }
    xnli15 = load_config(REPO / "configs/presets/xlm-mlm-tlm-xnli15-1024.yaml")
    assert languages == set(xnli15.data.langs)

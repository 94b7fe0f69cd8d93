"""`scaling.data_task_runner: ray`: the joint data stages run as Ray tasks (prefect-ray's RayTaskRunner)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_data_stages_fan_out_over_ray(prefect_harness, ray_session, tmp_path):
    from ray.util.state import list_tasks

    from flows.prepare_data import prepare_data
    from xlm_core.config import load_config
    from xlm_core.data import stages
    from xlm_core.data.binarize import load_binarized

    overrides = {
        "experiment.workdir": str(tmp_path / "{name}"),
        "data.demo_max_pages": 15,
        "data.demo_max_pairs": 400,
        "data.valid_size": 40,
        "data.test_size": 40,
        "bpe.codes": 200,
        "scaling.data_task_runner": "ray",
    }
    prepared = prepare_data(str(REPO / "configs" / "tiny.yaml"), overrides)

    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    units = stages.text_units(cfg)
    assert len(prepared["binarized"]) == len(units)
    for record in prepared["binarized"]:
        assert len(load_binarized(record["prefix"])) == record["sentences"] > 0
    address = ray_session.get_runtime_context().gcs_address  # this session's cluster, not another one here
    finished = list_tasks(address=address, filters=[("state", "=", "FINISHED")], limit=10_000)
    ran = [t for t in finished if t.name in {"tokenize", "binarize"}]
    names = [t.name for t in ran]
    # every text unit was tokenized and binarized by a Ray worker, not a thread of the flow's process
    assert names.count("tokenize") >= len(units) and names.count("binarize") >= len(units)
    assert ray_session.is_initialized()  # the runner borrowed the session's Ray, it did not shut it down

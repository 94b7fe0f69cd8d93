"""Languages are prepared concurrently: each its own `xlm-prepare-language` flow run, started by a task of
`xlm-prepare-corpora`, `scaling.data_concurrency` at a time; the cleaning counts reach MLflow and the
Prefect corpus table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.wiki_mirror import DATE, three_language_mirror

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
LANGS = ["de", "en", "fr"]


def _runs(since: datetime) -> tuple[dict, dict]:
    """The `prepare-<lang>` flow runs and the `prepare-language-<lang>` task runs started since `since`."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterStartTime,
    )

    with get_client(sync_client=True) as client:
        flows = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["xlm-prepare-language"])),
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since)),
        )
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(any_=[f"prepare-language-{lang}" for lang in LANGS]),
                start_time=TaskRunFilterStartTime(after_=since),
            )
        )
    return {run.name: run for run in flows}, {run.name: run for run in tasks}


def test_three_languages_are_prepared_at_once(prefect_harness, tmp_path):
    from mlflow import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.prepare_data import prepare_data
    from xlm_core.config import load_config

    base_url = three_language_mirror(tmp_path / "mirror", max_pages=60)
    overrides = {
        "experiment.workdir": str(tmp_path / "{name}"),
        "data.langs": LANGS,
        "data.demo_mirror": False,
        "data.parallel": [],
        "data.wikipedia.base_url": base_url,
        "data.wikipedia.dump_date": DATE,
        "data.valid_size": 20,
        "data.test_size": 20,
        "objectives.mlm_steps": LANGS,
        "bpe.codes": 200,
        "cleaning.enabled": True,
        "scaling.data_concurrency": 3,
    }
    since = datetime.now(UTC)
    prepared = prepare_data(str(TINY), overrides)
    assert {Path(r["prefix"]).name for r in prepared["binarized"]} == {
        f"{s}.{lang}" for s in ("train", "valid", "test") for lang in LANGS
    }

    flow_runs, task_runs = _runs(since)
    assert sorted(flow_runs) == [f"prepare-{lang}" for lang in LANGS] and len(task_runs) == len(LANGS)
    assert all(run.state.is_completed() for run in [*flow_runs.values(), *task_runs.values()])
    # The per-language task runs all run at once (each lasts until its flow run ends) ...
    starts, ends = [r.start_time for r in task_runs.values()], [r.end_time for r in task_runs.values()]
    assert max(starts) < min(ends), f"the language task runs did not overlap: {starts} / {ends}"
    # ... and each flow run lies inside its task run. (The flow runs themselves need not overlap here:
    # Prefect takes about a second to start each one, about as long as a tiny language's whole flow.)
    for lang in LANGS:
        flow_run, task_run = flow_runs[f"prepare-{lang}"], task_runs[f"prepare-language-{lang}"]
        assert task_run.start_time <= flow_run.start_time <= flow_run.end_time <= task_run.end_time, lang

    cfg = load_config(TINY, overrides)
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id])
    for lang in LANGS:
        metrics = {
            k.removeprefix(f"clean.{lang}."): v for k, v in run.data.metrics.items() if k.startswith(f"clean.{lang}.")
        }
        assert metrics["kept"] + metrics["removed"] == metrics["lines"] > 0
        assert metrics["removed_duplicate"] + metrics["removed_lid"] <= metrics["removed"]
    with get_client(sync_client=True) as prefect:
        [artifact] = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["xlm-corpus-stats"])),
            sort="CREATED_DESC",
            limit=1,
        )
    rows = {row["corpus"]: row for row in json.loads(artifact.data)}
    for lang in LANGS:
        row = rows[f"Wikipedia {lang}"]
        assert row["kept"] == row["train"] + row["valid"] + row["test"] and row["lines"] >= row["kept"]
        assert row["valid_articles"] >= 1 and row["removed_duplicate"] is not None

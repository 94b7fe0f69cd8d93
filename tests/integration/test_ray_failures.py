"""Ray Train failure policy and progress: an error of the training function fails the run once with
one message (no retries), inputs are checked before any worker starts, and rank 0's progress
events reach the driver; in a Prefect task they become task logs and a progress artifact."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from xlm_core.paths import WorkLayout
from xlm_core.train.ray_launcher import TrainingFailedError, launch, ray_run_name

pytestmark = pytest.mark.slow


def _train_worker_actors() -> int:
    from ray.util.state import list_actors

    return len(
        list_actors(filters=[("class_name", "=", "RayTrainWorker")], limit=10_000, raise_on_missing_output=False)
    )


def test_deterministic_error_in_the_training_function_fails_once(prepared, ray_session, tmp_path):
    """A token id past the vocabulary in the training data raises IndexError in the embeddings on
    the first update: with max_failures=2 the run still stops after one attempt, and the message
    names the phase and the fix."""
    import numpy as np

    cfg = prepared.model_copy(deep=True)
    workdir = tmp_path / "work"
    shutil.copytree(prepared.workdir / "bin", workdir / "bin")
    cfg.experiment.workdir = str(workdir)
    tokens = np.load(workdir / "bin" / "train.en.tokens.npy", mmap_mode="r+")
    tokens[:] = np.iinfo(tokens.dtype).max  # every id beyond the table: a corrupt file, as a bug would write
    tokens.flush()
    del tokens
    cfg.scaling.max_failures = 2
    cfg.tracking.system_metrics = False
    cfg.train.unigram_baseline = False  # it reads the train counts first and would stop there (its own message)
    cfg.checkpoint.storage_path = str(tmp_path / "ray")
    before = _train_worker_actors()

    with pytest.raises(TrainingFailedError) as info:
        launch(cfg, run_id=None, tracking_uri=None)

    message = str(info.value)
    assert "\n" not in message
    assert "pretraining failed during training update" in message
    assert "IndexError: index out of range in self" in message
    assert "re-run binarize" in message  # the fix
    report = WorkLayout(cfg.workdir).error_report(ray_run_name(cfg))
    assert str(report) in message and "Traceback" in report.read_text(encoding="utf-8")
    assert _train_worker_actors() - before == cfg.scaling.num_workers, "the worker group was restarted"


def test_a_bad_config_inside_the_worker_fails_once(prepared, ray_session, tmp_path):
    """Positions below bptt, set on the validated object (as a bug would): the workers' own config
    check raises at start-up, which is not retried either."""
    cfg = prepared.model_copy(deep=True)
    cfg.model.max_position_embeddings = 16
    cfg.scaling.max_failures = 2
    cfg.tracking.system_metrics = False
    cfg.checkpoint.storage_path = str(tmp_path / "ray")
    before = _train_worker_actors()
    with pytest.raises(TrainingFailedError, match="during worker start-up .*objectives.bptt"):
        launch(cfg, run_id=None, tracking_uri=None)
    assert _train_worker_actors() - before == cfg.scaling.num_workers


def test_missing_binarized_data_is_reported_before_ray_starts(prepared, tmp_path):
    cfg = prepared.model_copy(deep=True)
    workdir = tmp_path / "work"
    shutil.copytree(prepared.workdir / "bin", workdir / "bin")
    cfg.experiment.workdir = str(workdir)
    missing = workdir / "bin" / "valid.en-fr.fr.stats.json"
    missing.unlink()
    with pytest.raises(ValueError, match="pretraining inputs are not ready") as info:
        launch(cfg, run_id=None, tracking_uri=None)
    assert str(missing) in str(info.value) and "data preparation" in str(info.value)


def test_dictionary_changed_after_binarization_is_reported(prepared, tmp_path):
    cfg = prepared.model_copy(deep=True)
    workdir = tmp_path / "work"
    shutil.copytree(prepared.workdir / "bin", workdir / "bin")
    cfg.experiment.workdir = str(workdir)
    dictionary = workdir / "bin" / "dict.txt"
    dictionary.write_text(dictionary.read_text(encoding="utf-8") + "extraword 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="the dictionary changed after binarization"):
        launch(cfg, run_id=None, tracking_uri=None)


def test_prefect_api_holds_training_progress_logs_and_artifact(prepared, ray_session, prefect_harness, tmp_path):
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId

    from tasks.tracking import start_pipeline_run
    from tasks.train import pretrain
    from xlm_core.config import to_dict

    cfg = prepared.model_copy(deep=True)
    cfg.train.steps_per_epoch, cfg.train.max_epochs, cfg.train.log_every = 10, 2, 5
    cfg.tracking.system_metrics = False
    cfg.tracking.registered_model = ""
    cfg.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.checkpoint.storage_path = str(tmp_path / "ray")
    config = to_dict(cfg)

    @flow(name="tiny-pretrain-progress")
    def tiny_pretrain() -> str:
        from prefect.runtime import flow_run

        pretrain(config, start_pipeline_run(config))
        return str(flow_run.id)

    flow_run_id = tiny_pretrain()
    last = "pretraining update 20/20 (100%), epoch 2/2 evaluated"
    deadline = time.monotonic() + 30  # Prefect ships logs in the background: the last ones may still be on their way
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            lines = [log.message for log in logs]
            if any(last in line for line in lines) or time.monotonic() > deadline:
                break
            time.sleep(1)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pretraining-progress"]))
        )
    assert any("pretraining update 5/20 (25%)" in line and "tok/s" in line and "ETA" in line for line in lines), lines
    assert any(last in line for line in lines), lines
    assert any("tok/s" in line and "en_mlm_loss=" in line for line in lines), lines
    assert artifacts and artifacts[0].data == 100.0
    assert "valid_mlm_ppl" in (artifacts[0].description or "")
    assert Path(cfg.checkpoint.storage_path, ray_run_name(cfg)).is_dir()

"""Ray Train with 2 CPU workers: a killed worker recovers from the last checkpoint, and a run stopped
and resumed equals an uninterrupted one."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from xlm_core.checkpoint import read_progress
from xlm_core.train.ray_launcher import launch, ray_run_name

pytestmark = pytest.mark.slow


def _train_workers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "RayTrainWorker" in cmdline:
            found.append(proc)
    return found


def _kill_a_worker_after_first_checkpoint(run_dir: Path, killed: list[int], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(run_dir.glob("checkpoint_*")):
            workers = _train_workers()
            if workers:
                victim = workers[-1]
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim.pid)
                return
        time.sleep(0.2)


def test_killed_worker_resumes_from_last_checkpoint(prepared, ray_session, tmp_path):
    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs = 4
    cfg.train.steps_per_epoch = 40
    cfg.scaling.max_failures = 2
    cfg.checkpoint.storage_path = str(tmp_path / "ray")
    cfg.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(cfg.tracking_uri)
    experiment = client.create_experiment("fault", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id

    killed: list[int] = []
    watcher = threading.Thread(
        target=_kill_a_worker_after_first_checkpoint, args=(tmp_path / "ray" / ray_run_name(cfg), killed)
    )
    watcher.start()
    outcome = launch(cfg, run_id=run_id, tracking_uri=cfg.tracking_uri)
    watcher.join()

    assert killed, "no Ray Train worker was found to kill"
    assert outcome.metrics["epoch"] == cfg.train.max_epochs - 1
    history = client.get_metric_history(run_id, "valid_mlm_ppl")
    # one point per epoch (none repeated after the restart), at the global update count
    assert sorted(m.step for m in history) == [40 * (e + 1) for e in range(cfg.train.max_epochs)]
    from xlm_core.checkpoint import load_checkpoint

    state, _ = load_checkpoint(Path(outcome.latest_checkpoint))
    assert state["train_state"]["update"] == cfg.train.max_epochs * cfg.train.steps_per_epoch
    assert Path(outcome.best_checkpoints["valid_mlm_ppl"]).is_dir()


def test_interrupted_run_resumed_by_name_equals_uninterrupted_run(prepared, ray_session, tmp_path):
    """Stopping after one epoch and re-running the same setup (same Ray run name) continues exactly."""
    cfg = prepared.model_copy(deep=True)
    cfg.train.steps_per_epoch = 20
    cfg.train.max_epochs = 2
    cfg.tracking.system_metrics = False

    cfg.checkpoint.storage_path = str(tmp_path / "straight")
    straight = launch(cfg, run_id=None, tracking_uri=None)

    cfg.checkpoint.storage_path = str(tmp_path / "interrupted")
    first = cfg.model_copy(deep=True)
    first.train.max_epochs = 1
    launch(first, run_id=None, tracking_uri=None)
    resumed = launch(cfg, run_id=None, tracking_uri=None)

    assert ray_run_name(first) == ray_run_name(cfg)
    assert resumed.metrics["epoch"] == straight.metrics["epoch"] == 1
    for key, value in straight.metrics.items():
        if key.startswith(("valid_", "test_")):
            assert resumed.metrics[key] == pytest.approx(value, rel=1e-5), key


def test_worker_killed_mid_epoch_resumes_from_the_mid_epoch_checkpoint(prepared, ray_session, tmp_path):
    """Checkpoints every 7 updates (20 per epoch) go through Ray Train's report: a worker killed after
    the first one restarts from the latest mid-epoch checkpoint, and the run ends as an uninterrupted
    one without mid-epoch checkpoints, with one MLflow point per epoch and per logging window."""
    cfg = prepared.model_copy(deep=True)
    cfg.train.steps_per_epoch, cfg.train.max_epochs = 20, 2
    cfg.tracking.system_metrics = False
    cfg.checkpoint.storage_path = str(tmp_path / "straight")
    straight = launch(cfg, run_id=None, tracking_uri=None)

    chunked = cfg.model_copy(deep=True)
    chunked.checkpoint.every_updates = 7
    chunked.checkpoint.num_to_keep = 2
    chunked.scaling.max_failures = 2
    chunked.checkpoint.storage_path = str(tmp_path / "killed")
    chunked.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(chunked.tracking_uri)
    experiment = client.create_experiment("mid", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    killed: list[int] = []
    watcher = threading.Thread(
        target=_kill_a_worker_after_first_checkpoint, args=(tmp_path / "killed" / ray_run_name(chunked), killed)
    )
    watcher.start()
    outcome = launch(chunked, run_id=run_id, tracking_uri=chunked.tracking_uri)
    watcher.join()

    assert killed, "no Ray Train worker was found to kill"
    assert ray_run_name(chunked) == ray_run_name(cfg)  # checkpoint settings do not change what is trained
    for key, value in straight.metrics.items():
        if key.startswith(("valid_", "test_")):
            assert outcome.metrics[key] == pytest.approx(value, rel=1e-5), key
    assert sorted(m.step for m in client.get_metric_history(run_id, "valid_mlm_ppl")) == [20, 40]
    windows = [m.step for m in client.get_metric_history(run_id, "lr")]
    assert sorted(windows) == sorted(set(windows))  # windows redone after the restart are not logged twice
    kept = [p for p in (tmp_path / "killed" / ray_run_name(chunked)).glob("checkpoint_*") if p.is_dir()]
    assert len(kept) == 2  # the latest num_to_keep, mid-epoch ones included
    assert Path(outcome.best_checkpoints["valid_mlm_ppl"]).is_dir()  # the best copy survives the retention


def test_stopping_criterion_stops_all_workers_at_the_right_evaluation(prepared, ray_session, tmp_path):
    """`valid_mlm_ppl` without `_` means higher is better; perplexity falls every epoch, so with patience
    2 the criterion fires, as the original's `decrease_counts > decrease_counts_max`, at the fourth
    evaluation (three in a row without a new best), and both workers stop there. The MLflow run says
    when, on which metric and why."""
    cfg = prepared.model_copy(deep=True)
    cfg.train.steps_per_epoch = 20
    cfg.train.max_epochs = 8
    cfg.train.stopping_criterion = "valid_mlm_ppl,2"
    cfg.tracking.system_metrics = False
    cfg.checkpoint.storage_path = str(tmp_path / "ray")
    cfg.checkpoint.save_periodic = 2  # the original's --save_periodic: epochs 0 and 2 kept apart
    cfg.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(cfg.tracking_uri)
    experiment = client.create_experiment("stop", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id

    outcome = launch(cfg, run_id=run_id, tracking_uri=cfg.tracking_uri)

    history = sorted(client.get_metric_history(run_id, "valid_mlm_ppl"), key=lambda m: m.step)
    values = [m.value for m in history]
    assert values == sorted(values, reverse=True), "perplexity should fall every epoch for this test to hold"
    assert [m.step for m in history] == [20, 40, 60, 80]  # epochs 0-3, at the global update count
    from xlm_core.checkpoint import load_checkpoint

    state, _ = load_checkpoint(Path(outcome.latest_checkpoint))
    assert state["train_state"]["stopped"] and state["train_state"]["stopping"]["bad_evals"] == 3
    assert state["train_state"]["update"] == 4 * cfg.train.steps_per_epoch
    bad = sorted(client.get_metric_history(run_id, "stopping_bad_evals"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in bad] == [(20, 0.0), (40, 1.0), (60, 2.0), (80, 3.0)]
    best = client.get_metric_history(run_id, "stopping_best")
    assert {m.value for m in best} == {values[0]}  # the first (highest) perplexity stays the best
    tags = client.get_run(run_id).data.tags
    assert tags["xlm.stop.early"] == "true" and tags["xlm.stop.metric"] == "valid_mlm_ppl"
    assert tags["xlm.stop.epoch"] == "3"
    assert "3 evaluations in a row" in tags["xlm.stop.reason"] and "patience 2" in tags["xlm.stop.reason"]
    assert outcome.stop == {"early": True, "metric": "valid_mlm_ppl", "epoch": 3, "reason": tags["xlm.stop.reason"]}
    run_dir = tmp_path / "ray" / ray_run_name(cfg)
    assert sorted(p.name for p in run_dir.glob("periodic-*")) == ["periodic-0", "periodic-2"]
    assert read_progress(run_dir / "periodic-2")["epoch"] == 3  # the checkpoint written after epoch 2


def test_runs_on_an_existing_cluster_by_address(prepared, tmp_path):
    """`scaling.ray_address` joins a cluster started separately (`ray start --head`) instead of a local one."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp_dir = Path(tempfile.mkdtemp(prefix="xr-", dir="/tmp"))  # Ray's socket paths must stay < 108 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        cfg = prepared.model_copy(deep=True)
        cfg.train.steps_per_epoch, cfg.train.max_epochs = 10, 1
        cfg.tracking.system_metrics = False
        cfg.scaling.ray_address = f"127.0.0.1:{port}"
        cfg.checkpoint.storage_path = str(tmp_path / "storage")
        (tmp_path / "cfg.json").write_text(json.dumps(cfg.model_dump(mode="json")))
        driver = (
            "import json, sys; import ray; from xlm_core.config import config_from_dict; "
            "from xlm_core.train.ray_launcher import launch; "
            "outcome = launch(config_from_dict(json.load(open(sys.argv[1]))), run_id=None, tracking_uri=None); "
            "print('GCS', ray.get_runtime_context().gcs_address, 'EPOCH', outcome.metrics['epoch'])"
        )
        result = subprocess.run(
            [sys.executable, "-c", driver, str(tmp_path / "cfg.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f":{port} EPOCH 0.0" in result.stdout
    finally:
        # Stop only this head's processes (`ray stop` would also stop the session's own Ray).
        for proc in psutil.process_iter(["cmdline"]):
            if str(temp_dir) in " ".join(proc.info["cmdline"] or []):
                proc.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)

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
    assert sorted(m.step for m in history) == list(range(cfg.train.max_epochs))
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


def test_stopping_criterion_stops_all_workers_at_the_right_evaluation(prepared, ray_session, tmp_path):
    """`valid_mlm_ppl` without `_` means higher is better; perplexity falls every epoch, so with patience
    2 the criterion fires at the third evaluation, and both workers stop there."""
    cfg = prepared.model_copy(deep=True)
    cfg.train.steps_per_epoch = 20
    cfg.train.max_epochs = 8
    cfg.train.stopping_criterion = "valid_mlm_ppl,2"
    cfg.tracking.system_metrics = False
    cfg.checkpoint.storage_path = str(tmp_path / "ray")
    cfg.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(cfg.tracking_uri)
    experiment = client.create_experiment("stop", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id

    outcome = launch(cfg, run_id=run_id, tracking_uri=cfg.tracking_uri)

    history = sorted(client.get_metric_history(run_id, "valid_mlm_ppl"), key=lambda m: m.step)
    values = [m.value for m in history]
    assert values == sorted(values, reverse=True), "perplexity should fall every epoch for this test to hold"
    assert [m.step for m in history] == [0, 1, 2]
    from xlm_core.checkpoint import load_checkpoint

    state, _ = load_checkpoint(Path(outcome.latest_checkpoint))
    assert state["train_state"]["stopped"] and state["train_state"]["stopping"]["bad_evals"] == 2
    assert state["train_state"]["update"] == 3 * cfg.train.steps_per_epoch


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

"""Metric loggers: a protocol with a no-op default and a lazily imported MLflow backend.

Only rank 0 gets a real logger; the task that owns the MLflow run passes its id to the workers,
so a restarted worker group keeps logging into the same run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

__all__ = ["MLflowLogger", "MetricLogger", "NullLogger"]

logger = logging.getLogger(__name__)


class MetricLogger(Protocol):
    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None: ...

    def close(self) -> None: ...


class NullLogger:
    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        pass

    def close(self) -> None:
        pass


class MLflowLogger:
    """Logs into an existing MLflow run (created by the driver) through the client API."""

    def __init__(
        self, *, tracking_uri: str, run_id: str, system_metrics: bool = False, system_metrics_interval_s: float = 10.0
    ) -> None:
        import mlflow  # lazy: workers that do not log never import it

        self._mlflow = mlflow
        self.run_id = run_id
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        # Epochs already in the run, by the value of their `epoch` metric (a restarted worker group
        # may redo the epoch it was in when it failed): their evaluation is not logged a second time.
        # Likewise the training windows (step = update, marked by `lr`) redone after a restart.
        self._logged_epochs = {int(m.value) for m in self._client.get_metric_history(run_id, "epoch")}
        self._logged_windows = {int(m.step) for m in self._client.get_metric_history(run_id, "lr")}
        self._system_monitor: Any = None
        if system_metrics:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self._system_monitor = SystemMetricsMonitor(
                    run_id,
                    tracking_uri=tracking_uri,
                    resume_logging=True,
                    sampling_interval=system_metrics_interval_s,
                )
                self._system_monitor.start()
            except Exception as e:  # system metrics are best effort; training must not die for them
                logger.warning("MLflow system metrics unavailable: %s", e)

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        import time

        from mlflow.entities import Metric

        if "epoch" in metrics:
            epoch = int(metrics["epoch"])
            if epoch in self._logged_epochs:
                logger.info("epoch %d is already logged in MLflow run %s; not logging it again", epoch, self.run_id)
                return
            self._logged_epochs.add(epoch)
        elif "lr" in metrics:
            if step in self._logged_windows:
                return
            self._logged_windows.add(step)
        now = int(time.time() * 1000)
        batch = [Metric(key=k, value=float(v), timestamp=now, step=step) for k, v in metrics.items()]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        self._client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def close(self) -> None:
        if self._system_monitor is not None:
            self._system_monitor.finish()

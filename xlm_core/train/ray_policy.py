"""How a Ray Train run treats failures and progress (imported only by `ray_launcher`).

Failures. Ray Train restarts the worker group up to `scaling.max_failures` times on any error.
That is right for a worker process or a node that dies, and wrong for an error of the training
function itself (a bad batch, a shape error, a missing file): it repeats on every attempt, so each
retry only adds minutes and another traceback. The worker wraps such errors in
`DeterministicTrainingError`; `FailFast` (a callback on the controller) sees it among the worker
errors before the controller's failure policy decides, and `FailFastConfig` then reports no retries
left for that run. A worker that died or stopped answering (its process, or the whole node, was lost)
is never treated as deterministic: the run restarts from its last checkpoint, counted against
`scaling.max_failures`, even when the surviving workers' errors look like errors of the code.

Progress. Rank 0 puts small progress events on a Ray queue; the driver drains it on a thread and
hands each event to a callback (the Prefect task logs it), so progress reaches the orchestrator
on a cluster as well as on one machine.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

import ray
import ray.train
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError
from ray.util.queue import Empty, Full, Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = [
    "DeterministicTrainingError",
    "FailFast",
    "FailFastConfig",
    "ProgressRelay",
    "is_transient",
    "put_progress",
    "worker_lost",
]

logger = logging.getLogger(__name__)

# Controller-side lines users cannot act on: on a busy machine the controller's 5-second request
# to Ray's autoscaling coordinator times out and logs a warning with a traceback, then succeeds on
# its next attempt. This module is imported in the controller process when it unpickles `FailFast`.
_QUIET_CONTROLLER_LOGGERS = ("ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client",)
for _name in _QUIET_CONTROLLER_LOGGERS:
    logging.getLogger(_name).setLevel(logging.ERROR)

# Runs (by Ray Train run name) in which a deterministic error was seen, per controller process.
_FAILED_FOR_GOOD: set[str] = set()

# Messages of errors that come from the network or a peer, not from the training code.
_TRANSIENT_MARKERS = ("connection reset", "connection closed", "connection refused", "broken pipe", "timed out")


class DeterministicTrainingError(RuntimeError):
    """An error raised by the training function itself; retrying would raise it again."""

    def __init__(self, summary: str, *, rank: int, phase: str, traceback_text: str) -> None:
        super().__init__(summary)
        self.summary, self.rank, self.phase, self.traceback_text = summary, rank, phase, traceback_text

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only fields survive the trip to the controller
        return (_rebuild, (self.summary, self.rank, self.phase, self.traceback_text))


def _rebuild(summary: str, rank: int, phase: str, traceback_text: str) -> DeterministicTrainingError:
    return DeterministicTrainingError(summary, rank=rank, phase=phase, traceback_text=traceback_text)


def is_transient(error: BaseException) -> bool:
    """Errors that a restart can cure: collective/network failures (a peer died) and Ray's own."""
    import torch.distributed

    if isinstance(error, (ray.exceptions.RayError, ConnectionError, TimeoutError, torch.distributed.DistError)):
        return True
    text = str(error).lower()
    return isinstance(error, (RuntimeError, OSError)) and any(marker in text for marker in _TRANSIENT_MARKERS)


class FailFastConfig(ray.train.FailureConfig):
    """Ray Train's failure settings, with `max_failures` read as 0 once `FailFast` has seen a
    deterministic error in run `run_name` (both objects live in the controller process)."""

    run_name: str = ""

    @property
    def max_failures(self) -> int:  # type: ignore[override]
        return 0 if self.run_name in _FAILED_FOR_GOOD else self._max_failures

    @max_failures.setter
    def max_failures(self, value: int) -> None:
        self._max_failures = value


def worker_lost(error: BaseException) -> bool:
    """Whether a worker's error says the worker itself is gone (process or node lost), not that its code raised.

    Ray Train 2.60 reports a dead worker as the failed health check that found it dead
    (`WorkerHealthCheckFailedError` wrapping a `RayActorError`), or one that hangs past
    `RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S` (`WorkerHealthCheckTimeoutError`)."""
    if isinstance(error, WorkerHealthCheckTimeoutError):
        return True
    if isinstance(error, WorkerHealthCheckFailedError):
        error = error.health_check_failure
    return isinstance(error, ray.exceptions.RayActorError)


class FailFast(ray.train.UserCallback):
    """Marks run `run_name` as failed for good when a worker raised `DeterministicTrainingError` and
    no worker was lost. Ray calls `after_exception` before its failure policy makes the decision."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        errors = list(worker_exceptions.values())
        if any(worker_lost(e) for e in errors):
            return
        if any(isinstance(e, DeterministicTrainingError) for e in errors):
            _FAILED_FOR_GOOD.add(self.run_name)


class ProgressRelay:
    """A queue from rank 0 to `callback` in the driver, drained on a daemon thread that carries the
    caller's context (so a Prefect task's logger and artifacts work inside `callback`)."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        # Pinned to the driver's node, as Ray Train pins its controller: with Ray's default placement
        # the queue may land on a worker node, and losing that node would end the relay mid-run.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(maxsize=10_000, actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self._callback = callback
        self._stop = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._drain,), name="xlm-progress", daemon=True)

    def __enter__(self) -> ProgressRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        ray.kill(self.queue.actor)

    def _drain(self) -> None:
        while True:
            try:
                event = self.queue.get(block=True, timeout=1.0)
            except Empty:
                if self._stop.is_set():
                    return
                continue
            except Exception:  # the queue actor is gone (Ray shut down): nothing more to relay
                return
            try:
                self._callback(event)
            except Exception:  # progress display must never break training
                logger.exception("progress callback failed")


def put_progress(queue: Queue | None, event: dict[str, Any]) -> None:
    """Rank 0's side: never blocks and never fails training (a full or lost queue drops the event)."""
    if queue is None:
        return
    with contextlib.suppress(Full, ray.exceptions.RayError):
        queue.put_nowait(event)

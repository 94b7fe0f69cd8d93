"""Task runners for the data flows: threads in the flow's process, or Ray (prefect-ray) on a cluster.

`data_task_runner` runs the joint stages (tokenize ... binarize); `source_task_runner` runs the
per-language / per-pair preparation, at most `scaling.data_concurrency` at once.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks._common import typed
from xlm_core.train.ray_launcher import ensure_ray

__all__ = ["data_task_runner", "source_task_runner"]


def data_task_runner(config: dict[str, Any]) -> TaskRunner:
    """The runner named by `scaling.data_task_runner`.

    With `ray`, the flow's process joins the cluster of `scaling.ray_address` (or starts the same quiet
    local instance that training uses) before the runner enters, so the runner borrows that connection
    and leaves it open for the training job instead of shutting Ray down at the end of the flow.
    """
    cfg = typed(config)
    if cfg.scaling.data_task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.scaling.data_threads)
    from prefect_ray import RayTaskRunner

    ensure_ray(cfg)
    return RayTaskRunner(address=cfg.scaling.ray_address)


def source_task_runner(config: dict[str, Any]) -> TaskRunner:
    """The runner of the per-language and per-pair preparation: `scaling.data_concurrency` threads, or with
    `scaling.data_task_runner: ray` Ray tasks, of which at most `data_concurrency` are in flight."""
    cfg = typed(config)
    limit = cfg.scaling.data_concurrency
    if cfg.scaling.data_task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=limit)
    ensure_ray(cfg)
    return _bounded_ray_runner()(limit, address=cfg.scaling.ray_address)


@functools.cache
def _bounded_ray_runner() -> type[TaskRunner]:
    """prefect-ray's runner with a bound on the tasks in flight (it has none of its own): `submit` waits for
    a free slot, and a slot is freed when its task's Ray object is ready."""
    from prefect_ray import RayTaskRunner

    class BoundedRayTaskRunner(RayTaskRunner):
        def __init__(self, limit: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.limit = limit
            self._slots = threading.BoundedSemaphore(limit)

        # The flow holding this runner travels to Ray workers in the run context: no lock in its state.
        def __getstate__(self) -> dict[str, Any]:
            return {k: v for k, v in self.__dict__.items() if k != "_slots"}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)
            self._slots = threading.BoundedSemaphore(self.limit)

        def duplicate(self) -> BoundedRayTaskRunner:
            return type(self)(self.limit, address=self.address, init_kwargs=self.init_kwargs)

        def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None) -> Any:
            self._slots.acquire()
            try:
                future = super().submit(task, parameters, wait_for, dependencies)
            except BaseException:
                self._slots.release()
                raise
            future.add_done_callback(lambda _: self._slots.release())
            return future

    return BoundedRayTaskRunner

"""Task runners for the data flows: threads in the flow's process, or Ray (prefect-ray) on a cluster."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks._common import typed
from xlm_core.train.ray_launcher import ensure_ray

__all__ = ["data_task_runner"]


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

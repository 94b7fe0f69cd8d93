"""Helpers shared by the task modules: typed config from the flow's primitive parameters, the retry
condition of downloads and the cache options of deterministic stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xlm_core.config import PipelineConfig, config_from_dict
from xlm_core.data.download import TransientDownloadError

__all__ = ["cached_stage", "retry_transient", "typed"]


def typed(config: dict[str, Any]) -> PipelineConfig:
    return config_from_dict(config, source="flow parameters")


def retry_transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    """Retry only transient network failures (timeouts, 5xx, resets), never bad input or local errors."""
    try:
        state.result()
    except TransientDownloadError:
        return True
    except Exception:
        return False
    return False


def cached_stage(cache_key: Callable[..., str | None], stage: str, *arg_names: str) -> dict[str, Any]:
    """Task options caching a deterministic stage on its content address: `cache_key(stage, cfg, *args)`
    (`xlm_core.stage_cache`), with `args` the task parameters named in `arg_names`; results persisted."""

    def key(context, parameters) -> str | None:  # noqa: ANN001 - a Prefect cache_key_fn
        return cache_key(stage, typed(parameters["config"]), *(parameters[name] for name in arg_names))

    return {"cache_key_fn": key, "persist_result": True}

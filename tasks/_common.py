"""Helpers shared by the task modules: typed config from the flow's primitive parameters."""

from __future__ import annotations

from typing import Any

from xlm_core.config import PipelineConfig, config_from_dict
from xlm_core.data.download import TransientDownloadError

__all__ = ["retry_transient", "typed"]


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

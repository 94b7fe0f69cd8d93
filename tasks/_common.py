"""Helpers shared by the task modules: typed config from the flow's primitive parameters."""

from __future__ import annotations

from typing import Any

from xlm_core.config import PipelineConfig, config_from_dict

__all__ = ["typed"]


def typed(config: dict[str, Any]) -> PipelineConfig:
    return config_from_dict(config, source="flow parameters")

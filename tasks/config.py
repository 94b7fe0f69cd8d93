"""Resolve and validate the experiment config once, at the start of a flow."""

from __future__ import annotations

from typing import Any

from prefect import task

from xlm_core.config import load_config, to_dict

__all__ = ["resolve_config"]


@task(name="resolve-config")
def resolve_config(config_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return to_dict(load_config(config_path, overrides or {}))

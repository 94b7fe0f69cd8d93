"""Resolve and validate the experiment config once, at the start of a flow.

Deliberately not a Prefect task: a task's result passed to every other task would be drawn as an
arrow from it to each of them, and the flow-run graph would show nothing of what feeds what. The
config is a parameter of the run (logged to MLflow as params), not a step of it.
"""

from __future__ import annotations

from typing import Any

from xlm_core.config import load_config, to_dict
from xlm_core.names import check_lang, check_pair

# `check_lang`/`check_pair` validate a language or pair given as a flow parameter (a deployment run
# can pass anything) before it becomes part of a path.
__all__ = ["check_lang", "check_pair", "resolve_config"]


def resolve_config(config_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return to_dict(load_config(config_path, overrides or {}))

"""Best validation metrics and the stopping criterion (the original's `save_best_model` / `end_epoch`).

`train.stopping_criterion: metric,patience` follows the original exactly: an evaluation that beats
the best value resets the count of evaluations without improvement, any other one adds one, and
training stops once that count exceeds the patience (`decrease_counts > decrease_counts_max`),
i.e. at the (patience + 1)-th evaluation in a row without a new best.
"""

from __future__ import annotations

import logging
from typing import Any

from xlm_core.config import PipelineConfig

__all__ = ["new_train_state", "stop_record", "stop_tags", "stopping_metrics", "update_selection"]

logger = logging.getLogger(__name__)


def new_train_state() -> dict[str, Any]:
    """Counters, best validation values and the stopping criterion's state (saved in checkpoints)."""
    return {"update": 0, "epoch": 0, "best": {}, "stopping": {"best": None, "bad_evals": 0}, "stopped": False}


def _improved(value: float, best: float | None, lower_is_better: bool) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better else value > best


def _criterion(cfg: PipelineConfig) -> tuple[str, bool, int] | None:
    """(metric key, lower is better, patience) of `train.stopping_criterion`, or None."""
    if cfg.train.stopping_criterion is None:
        return None
    name, patience = cfg.train.stopping_criterion.split(",")
    return name.strip().lstrip("_"), name.strip().startswith("_"), int(patience)


def update_selection(cfg: PipelineConfig, metrics: dict[str, float], state: dict[str, Any]) -> bool:
    """Track best validation metrics and the stopping criterion; return True when training should stop."""
    for name in cfg.train.validation_metrics:
        key, lower = name.lstrip("_"), name.startswith("_")
        if key not in metrics:
            logger.warning("validation metric %s was not computed; known: %s", key, sorted(metrics))
            continue
        improved = _improved(metrics[key], state["best"].get(key), lower)
        if improved:
            state["best"][key] = metrics[key]
        state.setdefault("improved", {})[key] = improved
    criterion = _criterion(cfg)
    if criterion is None:
        return False
    key, lower, patience = criterion
    if key not in metrics:
        raise ValueError(
            f"train.stopping_criterion: metric {key!r} is not computed; known: {sorted(metrics)}; "
            "name one of these (a leading `_` when lower is better)"
        )
    stop = state["stopping"]
    if _improved(metrics[key], stop["best"], lower):
        stop["best"], stop["bad_evals"] = metrics[key], 0
    else:
        stop["bad_evals"] += 1
    logger.info(
        "stopping criterion %s: best %.4f, %d evaluations in a row without improvement (stops above %d)",
        key,
        stop["best"],
        stop["bad_evals"],
        patience,
    )
    return stop["bad_evals"] > patience


def stopping_metrics(cfg: PipelineConfig, state: dict[str, Any]) -> dict[str, float]:
    """`stopping_best` and `stopping_bad_evals` after an evaluation (none without a criterion)."""
    if _criterion(cfg) is None or state["stopping"]["best"] is None:
        return {}
    return {
        "stopping_best": float(state["stopping"]["best"]),
        "stopping_bad_evals": float(state["stopping"]["bad_evals"]),
    }


def stop_record(cfg: PipelineConfig, state: dict[str, Any], epoch: int) -> dict[str, Any]:
    """Why training ended after `epoch` (0-based): the stopping criterion, or `train.max_epochs`."""
    criterion = _criterion(cfg)
    if state["stopped"] and criterion is not None:
        key, lower, patience = criterion
        bad = state["stopping"]["bad_evals"]
        reason = (
            f"{key} did not improve on its best value {state['stopping']['best']:.6g} ({'lower' if lower else 'higher'}"
            f" is better) for {bad} evaluations in a row, more than the patience {patience} of "
            f"train.stopping_criterion"
        )
        return {"early": True, "metric": key, "epoch": epoch, "reason": reason}
    return {
        "early": False,
        "metric": criterion[0] if criterion else None,
        "epoch": epoch,
        "reason": f"reached train.max_epochs={cfg.train.max_epochs}",
    }


def stop_tags(record: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of a stop record: `xlm.stop.early`, `.epoch`, `.reason` and `.metric` (when a criterion is set)."""
    tags = {
        "xlm.stop.early": str(bool(record["early"])).lower(),
        "xlm.stop.epoch": str(record["epoch"]),
        "xlm.stop.reason": record["reason"],
    }
    if record.get("metric"):
        tags["xlm.stop.metric"] = str(record["metric"])
    return tags

"""Full-state training checkpoints: writing them (every rank's sampler and RNG states), restoring them,
and when to take one inside an epoch (`checkpoint.every_updates` / `checkpoint.every_minutes`).

A checkpoint taken at any update holds everything the next update depends on: weights, optimizer,
scheduler, grad scaler, the train state (update and epoch counters, the position inside the epoch
with its partial logging window, best values and the stopping criterion), each rank's data-sampler
position and RNG states (Python, numpy, torch, CUDA and the masking generator). The step schedule is
a function of the update counter (`schedule.py`), so resuming at update u runs exactly what an
uninterrupted run would have run from u on.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from xlm_core.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from xlm_core.config import PipelineConfig
from xlm_core.model import XLMArchitecture
from xlm_core.paths import WorkLayout
from xlm_core.train.distributed import all_gather_objects, broadcast_flag
from xlm_core.train.sets import StepData

__all__ = ["MidEpochPolicy", "new_epoch_progress", "resume_source", "restore_training", "write_checkpoint"]

logger = logging.getLogger(__name__)


def new_epoch_progress() -> dict[str, Any]:
    """Where training is inside the current epoch: updates done, the open logging window's sums,
    tokens and training seconds so far (saved with the train state, so a mid-epoch resume continues them)."""
    return {"updates": 0, "window": {}, "tokens": 0, "seconds": 0.0}


def resume_source(cfg: PipelineConfig, restore_dir: Path | None) -> Path | None:
    """The launcher's checkpoint (a Ray restart or a rerun of the same run) else `train.resume_from`."""
    if restore_dir is not None:
        return restore_dir
    if cfg.train.resume_from is None:
        return None
    path = Path(cfg.train.resume_from)
    if not (path / "state.pt").is_file():
        raise ValueError(
            f"train.resume_from: {path} is not a training checkpoint directory (no state.pt); pass an epoch or "
            "mid-epoch checkpoint of a pretraining run (e.g. <storage>/<run>/checkpoint_...)"
        )
    return path


def restore_training(
    directory: Path,
    trainables: dict[str, Any],
    samplers: list[StepData],
    generator: torch.Generator,
    rank: int,
    world: int,
) -> dict[str, Any]:
    """Load model, optimizer, scheduler, scaler, this rank's sampler and RNG states; return the train state."""
    saved, _ = load_checkpoint(directory)
    for key, obj in trainables.items():
        try:
            obj.load_state_dict(saved[key])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"train.resume_from / restore: {directory} does not fit this run's {key} ({error}); resume from a "
                "checkpoint of the same model and optimizer settings"
            ) from error
    state = saved["train_state"]
    if len(saved["ranks"]) == world:
        per_rank = saved["ranks"][rank]
        for sampler, sampler_state in zip(samplers, per_rank["data"], strict=True):
            sampler.load_state_dict(sampler_state)
        restore_rng_state(per_rank["rng"], generator)
    else:
        logger.warning("world size changed (%d -> %d): data samplers restart", len(saved["ranks"]), world)
    progress = state.get("progress") or {}
    logger.info(
        "resumed from %s at epoch %d, update %d (%d updates into the epoch)",
        directory,
        state["epoch"],
        state["update"],
        progress.get("updates", 0),
    )
    return state


def write_checkpoint(
    name: str,
    trainables: dict[str, Any],
    state: dict[str, Any],
    arch: XLMArchitecture,
    cfg_dict: dict[str, Any],
    layout: WorkLayout,
    samplers: list[StepData],
    generator: torch.Generator,
    rank: int,
) -> Path | None:
    """Gather every rank's sampler and RNG states; rank 0 writes the checkpoint directory (others: None)."""
    ranks = all_gather_objects(
        {"data": [sampler.state_dict() for sampler in samplers], "rng": capture_rng_state(generator)}
    )
    if rank != 0:
        return None
    directory = Path(tempfile.mkdtemp(prefix="xlm-ckpt-")) / name
    saved = {key: obj.state_dict() for key, obj in trainables.items()}
    saved |= {"train_state": state, "ranks": ranks, "arch": asdict(arch)}
    return save_checkpoint(directory, saved, cfg_dict, extra_files=[layout.dictionary, layout.codes])


class MidEpochPolicy:
    """Whether to checkpoint after an update inside an epoch: every `every_updates` updates (counted
    over the whole run) and/or once `every_minutes` have passed since the last checkpoint by rank
    0's clock (broadcast, so every rank checkpoints at the same update)."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.every_updates = cfg.checkpoint.every_updates
        self.every_seconds = None if cfg.checkpoint.every_minutes is None else 60.0 * cfg.checkpoint.every_minutes
        self.last = time.monotonic()

    def due(self, update: int) -> bool:
        due = self.every_updates is not None and update % self.every_updates == 0
        if self.every_seconds is not None:
            due = broadcast_flag(due or time.monotonic() - self.last >= self.every_seconds)
        return due

    def taken(self) -> None:
        """A checkpoint (mid-epoch or end of epoch) was just written."""
        self.last = time.monotonic()

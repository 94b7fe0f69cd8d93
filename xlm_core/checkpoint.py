"""Self-describing training checkpoints, written atomically and loaded without unpickling code.

A checkpoint directory holds `state.pt` (model, optimizer, scheduler, grad scaler, train state,
per-rank data-sampler and RNG states), `config.json` (the resolved experiment config) and the
vocabulary (`dict.txt`) and BPE `codes`, so it can be exported or evaluated on its own.
Everything in `state.pt` is tensors and plain Python values, so it loads with `weights_only=True`.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlm_core.io import atomic_open, atomic_path

__all__ = ["capture_rng_state", "load_checkpoint", "read_progress", "restore_rng_state", "save_checkpoint"]

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, numpy, torch (and `generator`'s) RNG states as plain lists and numbers.

    Plain values survive both `torch.save(..., weights_only=True)` round trips and pickling across
    ranks (`all_gather_object` cannot carry tensors reliably).
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if generator is not None:
        state["generator"] = generator.get_state().tolist()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if generator is not None and "generator" in state:
        generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


def save_checkpoint(
    directory: Path, state: dict[str, Any], config: dict[str, Any], extra_files: list[Path] | None = None
) -> Path:
    """Write `state`, `config` and copies of `extra_files` (vocabulary, BPE codes) into `directory`."""
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        torch.save(state, tmp / STATE_FILE)
        with atomic_open(tmp / CONFIG_FILE) as handle:
            json.dump(config, handle, indent=2, sort_keys=True)
        if "train_state" in state:  # readable without loading the weights (e.g. "is this run finished?")
            with atomic_open(tmp / PROGRESS_FILE) as handle:
                json.dump(state["train_state"], handle, indent=1, sort_keys=True, default=str)
        for path in extra_files or []:
            shutil.copyfile(path, tmp / path.name)
    return directory


def read_progress(directory: Path) -> dict[str, Any] | None:
    """The train state (epoch, update, stopped, ...) saved beside the weights; None for older checkpoints."""
    try:
        return json.loads((Path(directory) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return `(state, config)` from a checkpoint directory."""
    directory = Path(directory)
    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise FileNotFoundError(f"{directory} is not a training checkpoint: {STATE_FILE} is missing")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    return state, config

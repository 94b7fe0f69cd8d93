"""Self-describing training checkpoints, written atomically and loaded without unpickling code.

A checkpoint directory holds `state.pt` (model, optimizer, scheduler, grad scaler, train state,
per-rank data-sampler and RNG states), `config.json` (the resolved experiment config) and the
vocabulary (`dict.txt`) and BPE `codes`, so it can be exported or evaluated on its own.
Everything in `state.pt` is tensors and plain Python values, so it loads with `weights_only=True`.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlm_core.io import atomic_open, atomic_path

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "read_progress",
    "restore_rng_state",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"
_FIX = "pass a checkpoint directory written by training (state.pt + config.json), e.g. the previous epoch's"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, unreadable, corrupt or not one of this pipeline's; names the file."""


def error_summary(error: BaseException, lines: int = 1) -> str:
    """The first `lines` lines of an exception's message (or its type), short enough for a one-line error."""
    text = " ".join(line.strip() for line in str(error).strip().splitlines()[:lines]) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


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
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # Dropout on a GPU draws from the CUDA generators: an exact resume restores them too.
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if generator is not None and "generator" in state:
        generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
        else:
            logger.warning(
                "CUDA RNG states saved for %d devices, %d visible: not restored",
                len(state["cuda"]),
                torch.cuda.device_count(),
            )


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
    """Return `(state, config)` from a checkpoint directory; CheckpointError names the file at fault."""
    directory = Path(directory)
    state_path, config_path = directory / STATE_FILE, directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory; {_FIX}")
    if not state_path.is_file():
        raise CheckpointError(f"{directory} is not a training checkpoint: {STATE_FILE} is missing; {_FIX}")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise CheckpointError(f"{state_path}: cannot read it ({error.strerror or error_summary(error)})") from error
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError ... for a damaged file
        raise CheckpointError(
            f"{state_path}: not a readable PyTorch checkpoint, truncated or corrupt ({error_summary(error)}); {_FIX}"
        ) from error
    if not isinstance(state, dict) or not {"model", "arch"} <= state.keys():
        raise CheckpointError(f"{state_path}: not a checkpoint of this pipeline (no model and arch entries); {_FIX}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CheckpointError(f"{directory} is not a training checkpoint: {CONFIG_FILE} is missing; {_FIX}") from error
    except (OSError, ValueError) as error:  # ValueError: bad JSON or UTF-8
        raise CheckpointError(f"{config_path}: not a readable JSON config ({error_summary(error)}); {_FIX}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected the experiment config (a JSON object); {_FIX}")
    return state, config

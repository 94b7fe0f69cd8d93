"""Checks run by the driver before any Ray worker starts: what would otherwise fail inside every
worker, minutes later, is reported at once with the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

from xlm_core.config import PipelineConfig
from xlm_core.data.binarize import binarized_paths
from xlm_core.data.dictionary import Dictionary
from xlm_core.objectives.inputs import parse_steps
from xlm_core.paths import WorkLayout

__all__ = ["check_finetuning_inputs", "check_pretraining_inputs"]

_PREPARE = "run the data preparation first (`xlm run CONFIG`, or the xlm-prepare-data flow)"


def check_pretraining_inputs(cfg: PipelineConfig) -> None:
    """Every binarized set that pretraining reads exists and was indexed with the current dictionary.

    Raises:
        ValueError: naming each missing or inconsistent file and how to rebuild it.
    """
    layout = WorkLayout(cfg.workdir)
    if not layout.dictionary.is_file():
        raise ValueError(f"pretraining needs the dictionary {layout.dictionary}, which does not exist; {_PREPARE}")
    vocab_size = len(Dictionary.read(layout.dictionary))
    problems = []
    for step in parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps):
        pair = "-".join(sorted([step.lang1, step.lang2])) if step.lang2 else None
        for split in ("train", "valid", "test"):
            for lang in (step.lang1, step.lang2) if step.lang2 else (step.lang1,):
                stats_path = binarized_paths(layout.binarized(split, lang, pair))["stats"]
                problems += _check_set(stats_path, vocab_size, layout.dictionary)
    if problems:
        shown = "; ".join(dict.fromkeys(problems))
        raise ValueError(f"pretraining inputs are not ready: {shown}")


def _check_set(stats_path: Path, vocab_size: int, dictionary: Path) -> list[str]:
    if not stats_path.is_file():
        return [f"{stats_path} is missing ({_PREPARE})"]
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"{stats_path} is unreadable ({e}); delete it and re-run the binarize stage"]
    if stats.get("vocab_size") != vocab_size:
        return [
            f"{stats_path} was binarized with a vocabulary of {stats.get('vocab_size')} entries but {dictionary} "
            f"has {vocab_size}: the dictionary changed after binarization; re-run the binarize stage"
        ]
    return []


def check_finetuning_inputs(model_path: str, data_dir: str) -> None:
    """The pretrained model and the prepared XNLI data exist."""
    problems = []
    if not Path(model_path).exists():
        problems.append(f"the pretrained model {model_path} does not exist (pretrain first, or set xnli.model)")
    if not Path(data_dir).is_dir():
        problems.append(f"the prepared XNLI data {data_dir} does not exist (run the XNLI data stages first)")
    if problems:
        raise ValueError("XNLI fine-tuning inputs are not ready: " + "; ".join(problems))

"""Validation/test perplexities of the pretraining sets, during training and for a saved checkpoint.

`evaluate_checkpoint` is the original's `--eval_only`: a checkpoint scored on the configured valid
and test sets with the same masking, batches and metric names as the evaluation after each epoch
(`xlm evaluate --config CONFIG [--checkpoint DIR]`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from xlm_core.config import PipelineConfig
from xlm_core.data.dictionary import Dictionary
from xlm_core.evaluation.perplexity import finalize, lm_sums
from xlm_core.export.from_checkpoint import model_from_checkpoint
from xlm_core.objectives.inputs import StepSpec, parse_steps
from xlm_core.paths import WorkLayout
from xlm_core.train.distributed import all_reduce_sums
from xlm_core.train.sets import build_datasets

__all__ = ["evaluate_checkpoint", "evaluate_sets", "load_eval_sets"]

logger = logging.getLogger(__name__)


def load_eval_sets(cfg: PipelineConfig, layout: WorkLayout, steps: list[StepSpec]) -> dict[str, dict[StepSpec, Any]]:
    """The valid and test sets of every step, unsharded (each rank scores its share of the batches)."""
    return {split: build_datasets(cfg, layout, steps, split, 0, 1) for split in ("valid", "test")}


def evaluate_sets(
    model: torch.nn.Module,
    cfg: PipelineConfig,
    eval_sets: dict[str, dict[StepSpec, Any]],
    lang2id: dict[str, int],
    vocab_size: int,
    rank: int,
    world: int,
    device: torch.device,
) -> dict[str, float]:
    """`{split}_{step}_{mlm|clm}_{ppl|acc}` and the averages, summed over the ranks' shares."""
    sums: dict[str, float] = {}
    steps = list(next(iter(eval_sets.values())))
    for split, sets in eval_sets.items():
        for step, dataset in sets.items():
            batches = dataset.eval_batches(cfg.objectives.batch_size)
            sums.update(
                lm_sums(
                    model,
                    step,
                    batches,
                    split=split,
                    lang2id=lang2id,
                    vocab_size=vocab_size,
                    word_pred=cfg.objectives.word_pred,
                    rank=rank,
                    world_size=world,
                    max_batches=cfg.train.eval_max_batches,
                    device=device,
                )
            )
    return finalize(all_reduce_sums(sums), steps)


def evaluate_checkpoint(
    cfg: PipelineConfig, checkpoint_dir: str | Path, device: torch.device | None = None
) -> dict[str, float]:
    """Score a pretraining checkpoint on `cfg`'s valid and test sets (one process).

    Raises:
        ValueError: the checkpoint is unreadable (`CheckpointError`), or its vocabulary or languages
            are not those of `cfg`'s prepared data.
    """
    device = device or torch.device("cpu")
    layout = WorkLayout(cfg.workdir)
    model, arch, train_state, _ = model_from_checkpoint(checkpoint_dir)
    dico = Dictionary.read(layout.dictionary)
    saved_dict = Path(checkpoint_dir) / "dict.txt"
    if saved_dict.is_file() and Dictionary.read(saved_dict) != dico:
        raise ValueError(
            f"--checkpoint {checkpoint_dir}: its vocabulary differs from {layout.dictionary} (the data of this "
            "config); pass a checkpoint trained on this data, or the config it was trained with"
        )
    if arch.vocab_size != len(dico):
        raise ValueError(
            f"--checkpoint {checkpoint_dir}: {arch.vocab_size} vocabulary entries, but {layout.dictionary} has "
            f"{len(dico)}; pass a checkpoint trained on this config's data"
        )
    if arch.has_lang_embeddings and arch.n_langs != len(cfg.lang2id):
        raise ValueError(
            f"--checkpoint {checkpoint_dir}: {arch.n_langs} languages, data.langs has {len(cfg.lang2id)}; "
            "pass the config the checkpoint was trained with"
        )
    steps = parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps)
    eval_sets = load_eval_sets(cfg, layout, steps)
    model.to(device)
    metrics = evaluate_sets(model, cfg, eval_sets, cfg.lang2id, len(dico), 0, 1, device)
    logger.info(
        "evaluated %s (epoch %s, update %s): %s",
        checkpoint_dir,
        train_state.get("epoch"),
        train_state.get("update"),
        {k: round(v, 3) for k, v in metrics.items() if k.endswith("_ppl")},
    )
    return metrics

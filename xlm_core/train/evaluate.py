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
from xlm_core.evaluation.alignment import probe_parallel_sets
from xlm_core.evaluation.perplexity import finalize, lm_sums
from xlm_core.evaluation.unigram import unigram_baselines
from xlm_core.export.from_checkpoint import model_from_checkpoint
from xlm_core.objectives.inputs import StepSpec, parse_steps
from xlm_core.paths import WorkLayout
from xlm_core.train.distributed import all_reduce_sums
from xlm_core.train.sets import build_datasets

__all__ = ["baseline_metrics", "evaluate_checkpoint", "evaluate_sets", "load_eval_sets", "probe_metrics"]

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
    return finalize(all_reduce_sums(sums), steps) | probe_metrics(model, cfg, lang2id, device)


def probe_metrics(
    model: torch.nn.Module, cfg: PipelineConfig, lang2id: dict[str, int], device: torch.device
) -> dict[str, float]:
    """The alignment probe on the parallel valid/test sets (`train.probe_pairs` pairs each; {} when 0).
    Every rank computes the same figures (same weights, same seeded pairs), so no reduction is needed."""
    if not cfg.train.probe_pairs or not cfg.data.pairs:
        return {}
    return probe_parallel_sets(
        model,
        cfg.workdir,
        cfg.data.pairs,
        lang2id,
        causal=cfg.causal,
        max_pairs=cfg.train.probe_pairs,
        layer=cfg.train.probe_layer,
        word_pred=cfg.objectives.word_pred,
        seed=cfg.experiment.seed,
        batch_size=cfg.objectives.batch_size,
        device=device,
    )


def baseline_metrics(
    cfg: PipelineConfig, eval_sets: dict[str, dict[StepSpec, Any]], lang2id: dict[str, int], vocab_size: int
) -> dict[str, float]:
    """`{split}_{step}_unigram_ppl` of every evaluation set, on the batches `evaluate_sets` scores ({} when
    `train.unigram_baseline` is off)."""
    if not cfg.train.unigram_baseline:
        return {}
    return unigram_baselines(
        cfg.workdir,
        eval_sets,
        lang2id=lang2id,
        vocab_size=vocab_size,
        batch_size=cfg.objectives.batch_size,
        word_pred=cfg.objectives.word_pred,
        max_batches=cfg.train.eval_max_batches,
    )


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
    metrics |= baseline_metrics(cfg, eval_sets, cfg.lang2id, len(dico))
    logger.info(
        "evaluated %s (epoch %s, update %s): %s",
        checkpoint_dir,
        train_state.get("epoch"),
        train_state.get("update"),
        {k: round(v, 3) for k, v in metrics.items() if k.endswith("_ppl")},
    )
    return metrics

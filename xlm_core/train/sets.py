"""The pretraining data sets of a config: one stream (monolingual step) or pair set (pair step) per step."""

from __future__ import annotations

from xlm_core.config import PipelineConfig
from xlm_core.config.limits import pair_max_len
from xlm_core.data.binarize import load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset
from xlm_core.objectives.inputs import StepSpec
from xlm_core.paths import WorkLayout

__all__ = ["StepData", "build_datasets", "data_metrics", "train_sizes"]

StepData = StreamDataset | ParallelDataset


def build_datasets(
    cfg: PipelineConfig, layout: WorkLayout, steps: list[StepSpec], split: str, rank: int, world: int
) -> dict[StepSpec, StepData]:
    """Step -> its `split` set, sharded for `rank` of `world` (evaluation passes 0, 1)."""
    obj = cfg.objectives
    result: dict[StepSpec, StepData] = {}
    for step in steps:
        seed = cfg.experiment.seed + 1000 * len(result)
        if step.lang2 is None:
            bset = load_binarized(layout.binarized(split, step.lang1))
            result[step] = StreamDataset(
                bset, batch_size=obj.batch_size, bptt=obj.bptt, rank=rank, world_size=world, seed=seed
            )
        else:
            pair = "-".join(sorted([step.lang1, step.lang2]))
            set1 = load_binarized(layout.binarized(split, step.lang1, pair))
            set2 = load_binarized(layout.binarized(split, step.lang2, pair))
            result[step] = ParallelDataset(
                set1,
                set2,
                # -1, the original's default: batches of batch_size pairs
                tokens_per_batch=None if obj.tokens_per_batch == -1 else obj.tokens_per_batch,
                batch_size=obj.batch_size,
                max_len=pair_max_len(cfg.model, obj, split),
                rank=rank,
                world_size=world,
                seed=seed,
            )
    return result


def train_sizes(train_sets: dict[StepSpec, StepData]) -> dict[StepSpec, int]:
    """Sentences (streams) or kept pairs of the whole training set of each step: the same on every rank."""
    return {s: len(ds.bset) if isinstance(ds, StreamDataset) else ds.num_train_pairs for s, ds in train_sets.items()}


def data_metrics(sets: dict[str, dict[StepSpec, StepData]]) -> dict[str, float]:
    """What the pair filter removed from each pair split, e.g. `data_valid_en_fr_removed_long`."""
    metrics: dict[str, float] = {}
    for split, by_step in sets.items():
        for step, dataset in by_step.items():
            if isinstance(dataset, ParallelDataset):
                metrics |= dataset.counts.metrics(f"data_{split}_" + "_".join(sorted([step.lang1, step.lang2 or ""])))
    return metrics

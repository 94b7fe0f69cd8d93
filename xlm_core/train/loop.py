"""The pretraining loop: restore, step, evaluate, checkpoint, log — independent of the launcher.

Ray Train (`ray_launcher.py`) calls `train()` inside every worker with hooks for reporting; a
single process can call it directly. Every rank runs the same schedule of steps, so language
sampling, evaluation and stopping decisions agree across workers.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from xlm_core.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from xlm_core.config import PipelineConfig, to_dict
from xlm_core.data.binarize import load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset, sampling_probs
from xlm_core.data.dictionary import Dictionary
from xlm_core.evaluation.perplexity import finalize, lm_sums
from xlm_core.export.importer import load_pretrained
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel
from xlm_core.objectives.inputs import StepSpec, parse_steps
from xlm_core.paths import WorkLayout
from xlm_core.train.distributed import all_gather_objects, all_reduce_sums, broadcast_flag, rank_and_world
from xlm_core.train.metrics import MetricLogger, NullLogger
from xlm_core.train.optim import build_optimizer
from xlm_core.train.step import train_step

__all__ = ["TrainHooks", "build_model", "new_train_state", "train", "update_selection"]

logger = logging.getLogger(__name__)


@dataclass
class TrainHooks:
    """What the launcher provides: where to resume from, how to report, where to log.

    `report(metrics, checkpoint_dir)` gets each epoch's checkpoint in a temporary directory that is
    deleted once it returns: it persists the checkpoint (Ray Train uploads it to storage) or copies
    what it wants to keep.
    """

    restore_dir: Path | None = None
    report: Callable[[dict[str, float], Path | None], None] = lambda metrics, checkpoint: None
    metric_logger: MetricLogger = field(default_factory=NullLogger)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def emit(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        """`report`, then delete the temporary checkpoint directory (a checkpoint per epoch adds up)."""
        try:
            self.report(metrics, checkpoint_dir)
        finally:
            if checkpoint_dir is not None:
                shutil.rmtree(checkpoint_dir.parent, ignore_errors=True)


def build_model(cfg: PipelineConfig, vocab_size: int) -> tuple[XLMWithLMHeadModel, XLMArchitecture]:
    arch = XLMArchitecture.from_config(cfg.model, vocab_size=vocab_size, n_langs=len(cfg.data.langs))
    torch.manual_seed(cfg.experiment.seed)  # identical initial weights on every rank
    return XLMWithLMHeadModel(arch), arch


def _datasets(
    cfg: PipelineConfig, layout: WorkLayout, steps: list[StepSpec], split: str, rank: int, world: int
) -> dict[StepSpec, StreamDataset | ParallelDataset]:
    obj = cfg.objectives
    result: dict[StepSpec, StreamDataset | ParallelDataset] = {}
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
                tokens_per_batch=obj.tokens_per_batch,
                batch_size=obj.batch_size,
                max_len=obj.max_len,
                rank=rank,
                world_size=world,
                seed=seed,
            )
    return result


def _step_schedule(cfg: PipelineConfig, steps: list[StepSpec], sizes: dict[StepSpec, int]) -> Callable[[int], StepSpec]:
    """Update number -> step: round robin, or sampled with q ~ p^alpha (same on every rank)."""
    alpha = cfg.objectives.lg_sampling_factor
    if alpha <= 0:
        return lambda update: steps[update % len(steps)]
    probs = sampling_probs({s.name + s.objective: sizes[s] for s in steps}, alpha)
    weights = np.array([probs[s.name + s.objective] for s in steps])

    def pick(update: int) -> StepSpec:
        rng = np.random.default_rng([cfg.experiment.seed, update])
        return steps[int(rng.choice(len(steps), p=weights))]

    return pick


def _evaluate(
    model: torch.nn.Module,
    cfg: PipelineConfig,
    eval_sets: dict[str, dict[StepSpec, Any]],
    lang2id: dict[str, int],
    vocab_size: int,
    rank: int,
    world: int,
    device: torch.device,
) -> dict[str, float]:
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


def _improved(value: float, best: float | None, lower_is_better: bool) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better else value > best


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
    if cfg.train.stopping_criterion is None:
        return False
    name, patience = cfg.train.stopping_criterion.split(",")
    key, lower = name.strip().lstrip("_"), name.strip().startswith("_")
    if key not in metrics:
        raise ValueError(f"train.stopping_criterion: metric {key!r} is not computed; known: {sorted(metrics)}")
    stop = state["stopping"]
    if _improved(metrics[key], stop["best"], lower):
        stop["best"], stop["bad_evals"] = metrics[key], 0
    else:
        stop["bad_evals"] += 1
    logger.info(
        "stopping criterion %s: best %.4f, %d/%s evaluations without improvement",
        key,
        stop["best"],
        stop["bad_evals"],
        patience,
    )
    return stop["bad_evals"] >= int(patience)


def _init_from_pretrained(
    model: XLMWithLMHeadModel, arch: XLMArchitecture, words: list[str], cfg: PipelineConfig
) -> None:
    """Copy pretrained weights into `model` after checking they describe the same model and vocabulary."""
    source = cfg.model.init_from
    pretrained, pretrained_arch, meta = load_pretrained(source)
    if meta["words"] != list(words):
        raise ValueError(
            f"model.init_from: {source} has a different vocabulary ({len(meta['words'])} entries) from this run's "
            f"dictionary ({len(words)}); preprocess with the pretrained model's BPE codes and vocabulary"
        )
    if dict(meta["lang2id"] or {}) != cfg.lang2id and arch.has_lang_embeddings:
        raise ValueError(f"model.init_from: {source} has languages {meta['lang2id']}, this run {cfg.lang2id}")
    shapes = ("emb_dim", "n_layers", "n_heads", "n_langs", "max_position_embeddings", "use_lang_emb")
    different = {
        k: (getattr(pretrained_arch, k), getattr(arch, k))
        for k in shapes
        if getattr(pretrained_arch, k) != getattr(arch, k)
    }
    if different:
        raise ValueError(f"model.init_from: {source} differs from the model section: {different} (pretrained, run)")
    model.load_state_dict(pretrained.state_dict())
    logger.info("initialised from %s (%s)", source, meta["format"])


def new_train_state() -> dict[str, Any]:
    """Counters, best validation values and the stopping criterion's state (saved in checkpoints)."""
    return {"update": 0, "epoch": 0, "best": {}, "stopping": {"best": None, "bad_evals": 0}, "stopped": False}


def train(cfg: PipelineConfig, hooks: TrainHooks | None = None) -> dict[str, Any]:
    """Run (or resume) pretraining; returns the final train state and last metrics."""
    hooks = hooks or TrainHooks()
    rank, world = rank_and_world()
    device = hooks.device
    torch.set_num_threads(cfg.scaling.torch_threads)
    layout = WorkLayout(cfg.workdir)
    dico = Dictionary.read(layout.dictionary)
    lang2id = cfg.lang2id
    steps = parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps)

    model, arch = build_model(cfg, len(dico))
    if cfg.model.init_from and hooks.restore_dir is None:
        _init_from_pretrained(model, arch, dico.words, cfg)
    model.to(device)
    optimizer, scheduler = build_optimizer(list(model.parameters()), cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
    train_sets = _datasets(cfg, layout, steps, "train", rank, world)
    eval_sets = {split: _datasets(cfg, layout, steps, split, 0, 1) for split in ("valid", "test")}
    state = new_train_state()
    generator = torch.Generator().manual_seed(cfg.experiment.seed * 1000 + rank)
    random.seed(cfg.experiment.seed + rank)
    np.random.seed(cfg.experiment.seed + rank)

    trainables = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    if hooks.restore_dir is not None:
        state = _restore(hooks.restore_dir, trainables, [train_sets[s] for s in steps], generator, rank, world)

    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        # Compiles forward/backward; checkpoints keep saving `model`, whose state-dict keys stay unprefixed.
        ddp_model = torch.compile(ddp_model)
    iterators: dict[StepSpec, Iterator[Any]] = {step: iter(ds) for step, ds in train_sets.items()}
    # sizes identical on every rank, so every rank samples the same step at each update
    schedule = _step_schedule(
        cfg,
        steps,
        {s: len(ds.bset) if isinstance(ds, StreamDataset) else ds.num_train_pairs for s, ds in train_sets.items()},
    )
    metrics: dict[str, float] = dict(state.get("last_metrics", {}))
    cfg_dict = to_dict(cfg)
    ran_epochs = 0

    while state["epoch"] < cfg.train.max_epochs and not state["stopped"]:
        epoch = state["epoch"]
        epoch_start = time.monotonic()
        ddp_model.train()
        window: dict[str, float] = {}
        window_start = time.monotonic()
        epoch_tokens = 0
        for _ in range(cfg.train.steps_per_epoch):
            step = schedule(state["update"])
            result = train_step(
                ddp_model,
                optimizer,
                scheduler,
                scaler,
                step,
                iterators[step],
                cfg=cfg,
                lang2id=lang2id,
                vocab_size=len(dico),
                generator=generator,
                device=device,
            )
            state["update"] += 1
            stem = f"train_{step.metric_stem}"
            window[f"{stem}_loss/sum"] = window.get(f"{stem}_loss/sum", 0.0) + result.loss
            window[f"{stem}_loss/n"] = window.get(f"{stem}_loss/n", 0.0) + 1
            window["tokens"] = window.get("tokens", 0.0) + result.num_tokens
            epoch_tokens += result.num_tokens
            window["grad_norm/sum"] = window.get("grad_norm/sum", 0.0) + result.grad_norm
            window["updates"] = window.get("updates", 0.0) + 1
            if state["update"] % cfg.train.log_every == 0:
                _log_window(hooks, window, window_start, state["update"], scheduler, steps, world)
                window, window_start = {}, time.monotonic()

        train_seconds = time.monotonic() - epoch_start
        tokens_per_s = all_reduce_sums({"t": epoch_tokens / max(train_seconds, 1e-9)})["t"]
        metrics = _evaluate(model, cfg, eval_sets, lang2id, len(dico), rank, world, device)
        metrics["epoch"] = float(epoch)
        metrics["train_tokens_per_s"] = tokens_per_s  # all workers, training steps only (no evaluation)
        stop = broadcast_flag(update_selection(cfg, metrics, state))
        state["stopped"] = stop
        state["epoch"] = epoch + 1
        state["train_seconds"] = state.get("train_seconds", 0.0) + time.monotonic() - epoch_start
        ran_epochs += 1
        for key, value in state["best"].items():
            metrics[f"best_{key}"] = value
        state["last_metrics"] = dict(metrics)
        if rank == 0:
            shown = {k: round(v, 3) for k, v in metrics.items() if k.endswith("_ppl") and k.startswith("valid")}
            logger.info("epoch %d done (update %d): %s", epoch, state["update"], shown)

        checkpoint_dir = _checkpoint(
            f"epoch-{epoch:05d}",
            trainables,
            state,
            arch,
            cfg_dict,
            layout,
            [train_sets[s] for s in steps],
            generator,
            rank,
        )
        # `improved_<metric>` tells the launcher which best-checkpoint copies this report replaces.
        flags = {f"improved_{k}": float(v) for k, v in state.get("improved", {}).items()}
        hooks.emit(metrics | flags, checkpoint_dir)
        if rank == 0:
            # Logged once the checkpoint is committed: an epoch redone after a failure is not logged twice.
            hooks.metric_logger.log_metrics(metrics, step=epoch)
        if stop:
            logger.info("stopping criterion met after epoch %d", epoch)
    if ran_epochs == 0 and hooks.restore_dir is not None:
        # A finished run restarted: report its final checkpoint again so the launcher sees a result.
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = Path(tempfile.mkdtemp(prefix="xlm-ckpt-")) / "final"
            shutil.copytree(hooks.restore_dir, checkpoint_dir)
        logger.info("nothing left to train (epoch %d, stopped=%s)", state["epoch"], state["stopped"])
        hooks.emit(metrics, checkpoint_dir)
    return {"state": state, "metrics": metrics}


def _restore(
    directory: Path,
    trainables: dict[str, Any],
    samplers: list[StreamDataset | ParallelDataset],
    generator: torch.Generator,
    rank: int,
    world: int,
) -> dict[str, Any]:
    """Load model, optimizer, scheduler, scaler, this rank's sampler and RNG states; return the train state."""
    saved, _ = load_checkpoint(directory)
    for key, obj in trainables.items():
        obj.load_state_dict(saved[key])
    state = saved["train_state"]
    if len(saved["ranks"]) == world:
        per_rank = saved["ranks"][rank]
        for sampler, sampler_state in zip(samplers, per_rank["data"], strict=True):
            sampler.load_state_dict(sampler_state)
        restore_rng_state(per_rank["rng"], generator)
    else:
        logger.warning("world size changed (%d -> %d): data samplers restart", len(saved["ranks"]), world)
    logger.info("resumed from %s at epoch %d, update %d", directory, state["epoch"], state["update"])
    return state


def _checkpoint(
    name: str,
    trainables: dict[str, Any],
    state: dict[str, Any],
    arch: XLMArchitecture,
    cfg_dict: dict[str, Any],
    layout: WorkLayout,
    samplers: list[StreamDataset | ParallelDataset],
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


def _log_window(
    hooks: TrainHooks,
    window: dict[str, float],
    start: float,
    update: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    steps: list[StepSpec],
    world: int,
) -> None:
    # every rank takes part in the reduction; only rank 0's logger writes
    keys = [f"train_{s.metric_stem}_loss/{x}" for s in steps for x in ("sum", "n")]
    full = {k: window.get(k, 0.0) for k in keys} | {
        k: window.get(k, 0.0) for k in ("tokens", "grad_norm/sum", "updates")
    }
    total = all_reduce_sums(full)
    elapsed = max(time.monotonic() - start, 1e-9)
    metrics = {
        "lr": scheduler.get_last_lr()[0],
        "tokens_per_s": total["tokens"] / elapsed,
        "grad_norm": total["grad_norm/sum"] / max(total["updates"], 1),
    }
    for s in steps:
        n = total[f"train_{s.metric_stem}_loss/n"]
        if n:
            metrics[f"train_{s.metric_stem}_loss"] = total[f"train_{s.metric_stem}_loss/sum"] / n
    hooks.metric_logger.log_metrics(metrics, step=update)
    losses = " ".join(f"{k[6:-5]}={v:.3f}" for k, v in metrics.items() if k.startswith("train_"))
    logger.info(
        "update %d: %s lr=%.2e %.0f tok/s grad_norm=%.2f",
        update,
        losses,
        metrics["lr"],
        metrics["tokens_per_s"],
        metrics["grad_norm"],
    )
    if not math.isfinite(metrics["grad_norm"]):
        logger.warning("non-finite gradient norm at update %d", update)

"""The pretraining loop: restore, step, evaluate, checkpoint, log — independent of the launcher.

Ray Train (`ray_launcher.py`) calls `train()` inside every worker with hooks for reporting; a
single process can call it directly. Every rank runs the same schedule of steps (`schedule.py`), so
language sampling, evaluation and stopping decisions (`selection.py`) agree across workers.
Checkpoints (`resume.py`) hold the full state at the end of each epoch and, with
`checkpoint.every_updates` / `every_minutes`, inside it; resuming from any of them continues exactly.
Metrics share one step axis, the global update count: training windows and evaluations alike.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from xlm_core.config import PipelineConfig, to_dict
from xlm_core.data.dictionary import Dictionary
from xlm_core.export.importer import load_pretrained
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel
from xlm_core.objectives import mask_scores_from_counts
from xlm_core.objectives.inputs import StepSpec, parse_steps
from xlm_core.paths import WorkLayout
from xlm_core.train.distributed import all_reduce_sums, broadcast_flag, rank_and_world
from xlm_core.train.evaluate import baseline_metrics, evaluate_sets, load_eval_sets
from xlm_core.train.metrics import MetricLogger, NullLogger
from xlm_core.train.optim import build_optimizer
from xlm_core.train.precision import effective_precision
from xlm_core.train.resume import MidEpochPolicy, new_epoch_progress, restore_training, resume_source, write_checkpoint
from xlm_core.train.schedule import build_schedule, updates_per_epoch
from xlm_core.train.selection import new_train_state, stop_record, stop_tags, stopping_metrics, update_selection
from xlm_core.train.sets import build_datasets, data_metrics, train_sizes
from xlm_core.train.step import StepResult, train_step

__all__ = ["TrainHooks", "build_model", "new_train_state", "progress_event", "train", "update_selection"]

logger = logging.getLogger(__name__)


@dataclass
class TrainHooks:
    """What the launcher provides: where to resume from, how to report, where to log.

    `report(metrics, checkpoint_dir)` gets each checkpoint (every epoch's, and the mid-epoch ones) in
    a temporary directory that is deleted once it returns: it persists the checkpoint (Ray Train
    uploads it to storage) or copies what it wants to keep. `progress(event)` gets rank 0's progress
    events (see `progress_event`). The loop keeps `phase` up to date ("loading data", "training
    update 151", ...) so an error can say where it happened.
    """

    restore_dir: Path | None = None
    report: Callable[[dict[str, float], Path | None], None] = lambda metrics, checkpoint: None
    metric_logger: MetricLogger = field(default_factory=NullLogger)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: Callable[[dict[str, Any]], None] = lambda event: None
    phase: str = "starting"
    last_window: dict[str, float] = field(default_factory=dict)  # the latest logged training window

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


def _masking(cfg: PipelineConfig, dico: Dictionary, precision: str, device: torch.device) -> dict[str, Any]:
    """`train_step`'s masking options: the `sample_alpha` scores from the dictionary's counts (the
    original's `mask_scores`), and the fp16 rounding of the target count (default: on for half
    precision on a GPU, as the original rounds under --fp16)."""
    obj = cfg.objectives
    scores_V = mask_scores_from_counts(dico.counts, obj.sample_alpha) if obj.sample_alpha > 0 else None
    round_to_8 = obj.round_targets_to_8
    if round_to_8 is None:
        round_to_8 = precision in ("fp16", "bf16") and device.type == "cuda"
    if scores_V is not None:
        logger.info("MLM targets drawn with probability ~ count^-%s (objectives.sample_alpha)", obj.sample_alpha)
    return {"mask_scores_V": scores_V, "round_targets_to_8": round_to_8}


def _set_tags(metric_logger: MetricLogger, tags: dict[str, str]) -> None:
    """Tags through the logger; a custom logger without `set_tags` (older protocol) is skipped."""
    setter = getattr(metric_logger, "set_tags", None)
    if setter is not None:
        setter(tags)


def train(cfg: PipelineConfig, hooks: TrainHooks | None = None) -> dict[str, Any]:
    """Run (or resume) pretraining; returns the final train state and last metrics."""
    hooks = hooks or TrainHooks()
    hooks.phase = "loading the dictionary and data"
    rank, world = rank_and_world()
    device = hooks.device
    torch.set_num_threads(cfg.scaling.torch_threads)
    layout = WorkLayout(cfg.workdir)
    dico = Dictionary.read(layout.dictionary)
    lang2id = cfg.lang2id
    steps = parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps)
    restore_dir = resume_source(cfg, hooks.restore_dir)

    model, arch = build_model(cfg, len(dico))
    if cfg.model.init_from and restore_dir is None:
        _init_from_pretrained(model, arch, dico.words, cfg)
    model.to(device)
    optimizer, scheduler = build_optimizer(list(model.parameters()), cfg.optim)
    precision = effective_precision(cfg.train.precision, device)  # fp32 where the CPU would emulate bf16/fp16
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    masking = _masking(cfg, dico, precision, device)
    train_sets = build_datasets(cfg, layout, steps, "train", rank, world)
    eval_sets = load_eval_sets(cfg, layout, steps)
    hooks.phase = "unigram baselines of the valid/test sets"
    baselines = baseline_metrics(cfg, eval_sets, lang2id, len(dico))  # fixed: logged beside every evaluation
    state = new_train_state()
    generator = torch.Generator().manual_seed(cfg.experiment.seed * 1000 + rank)
    random.seed(cfg.experiment.seed + rank)
    np.random.seed(cfg.experiment.seed + rank)

    trainables = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    samplers = [train_sets[s] for s in steps]
    if restore_dir is not None:
        state = restore_training(restore_dir, trainables, samplers, generator, rank, world)
    removed = data_metrics({"train": train_sets, **eval_sets})
    if rank == 0 and removed and state["update"] == 0:  # once per run, not again on each resume
        hooks.metric_logger.log_metrics(removed, step=0)

    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        # Compiles forward/backward; checkpoints keep saving `model`, whose state-dict keys stay unprefixed.
        ddp_model = torch.compile(ddp_model)
    iterators: dict[StepSpec, Iterator[Any]] = {step: iter(ds) for step, ds in train_sets.items()}
    schedule = build_schedule(cfg, steps, train_sizes(train_sets))  # sizes identical on every rank
    per_epoch = updates_per_epoch(cfg, schedule)
    policy = MidEpochPolicy(cfg)
    metrics: dict[str, float] = dict(state.get("last_metrics", {}))
    cfg_dict = to_dict(cfg)
    ran_epochs = 0

    def checkpoint(name: str) -> Path | None:
        directory = write_checkpoint(name, trainables, state, arch, cfg_dict, layout, samplers, generator, rank)
        policy.taken()
        return directory

    while state["epoch"] < cfg.train.max_epochs and not state["stopped"]:
        epoch = state["epoch"]
        state.pop("stop", None)  # a finished run resumed with more epochs: its end is no longer the end
        progress = state.setdefault("progress", new_epoch_progress())
        ddp_model.train()
        segment_start = window_start = time.monotonic()
        while progress["updates"] < per_epoch:
            step = schedule.step_at(state["update"])
            hooks.phase = f"training update {state['update'] + 1} (step {step.metric_stem}, epoch {epoch})"
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
                precision=precision,
                **masking,
            )
            state["update"] += 1
            progress["updates"] += 1
            progress["tokens"] += result.num_tokens
            _add_to_window(progress["window"], step, result)
            if state["update"] % cfg.train.log_every == 0:
                _log_window(hooks, progress["window"], window_start, state["update"], scheduler, steps, world)
                hooks.progress(progress_event(cfg, "update", state, epoch, hooks.last_window, per_epoch))
                progress["window"], window_start = {}, time.monotonic()
            if progress["updates"] < per_epoch and policy.due(state["update"]):
                progress["seconds"] += time.monotonic() - segment_start
                hooks.phase = f"checkpoint at update {state['update']} (epoch {epoch})"
                directory = checkpoint(f"update-{state['update']:09d}")
                hooks.emit({"update": float(state["update"]), "epoch_updates": float(progress["updates"])}, directory)
                segment_start = time.monotonic()

        train_seconds = progress["seconds"] + time.monotonic() - segment_start
        tokens_per_s = all_reduce_sums({"t": progress["tokens"] / max(train_seconds, 1e-9)})["t"]
        hooks.phase = f"validation and test after epoch {epoch} (update {state['update']})"
        eval_start = time.monotonic()
        metrics = evaluate_sets(model, cfg, eval_sets, lang2id, len(dico), rank, world, device) | baselines
        metrics["epoch"] = float(epoch)
        metrics["train_tokens_per_s"] = tokens_per_s  # all workers, training steps only (no evaluation)
        stop = broadcast_flag(update_selection(cfg, metrics, state))
        metrics |= stopping_metrics(cfg, state)
        state["stopped"] = stop
        state["epoch"] = epoch + 1
        state["progress"] = new_epoch_progress()
        state["train_seconds"] = state.get("train_seconds", 0.0) + train_seconds + time.monotonic() - eval_start
        ran_epochs += 1
        for key, value in state["best"].items():
            metrics[f"best_{key}"] = value
        state["last_metrics"] = dict(metrics)
        finished = stop or state["epoch"] >= cfg.train.max_epochs
        if finished:
            state["stop"] = stop_record(cfg, state, epoch)
        if rank == 0:
            shown = {k: round(v, 3) for k, v in metrics.items() if k.endswith("_ppl") and k.startswith("valid")}
            logger.info("epoch %d done (update %d): %s", epoch, state["update"], shown)

        checkpoint_dir = checkpoint(f"epoch-{epoch:05d}")
        # `improved_<metric>` tells the launcher which best-checkpoint copies this report replaces,
        # `periodic` that it keeps this one as periodic-<epoch> (the original's --save_periodic).
        flags = {f"improved_{k}": float(v) for k, v in state.get("improved", {}).items()}
        every = cfg.checkpoint.save_periodic
        if every > 0 and epoch % every == 0:
            flags["periodic"] = 1.0
        hooks.emit(metrics | flags, checkpoint_dir)
        if rank == 0:
            # Logged once the checkpoint is committed: an epoch redone after a failure is not logged twice.
            hooks.metric_logger.log_metrics(metrics, step=state["update"])
            if finished:
                _set_tags(hooks.metric_logger, stop_tags(state["stop"]))
        hooks.progress(progress_event(cfg, "epoch", state, epoch, metrics, per_epoch))
        if stop:
            logger.info("stopping criterion met after epoch %d: %s", epoch, state["stop"]["reason"])
    if ran_epochs == 0 and restore_dir is not None:
        # A finished run restarted: report its final checkpoint again so the launcher sees a result.
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = Path(tempfile.mkdtemp(prefix="xlm-ckpt-")) / "final"
            shutil.copytree(restore_dir, checkpoint_dir)
        logger.info("nothing left to train (epoch %d, stopped=%s)", state["epoch"], state["stopped"])
        hooks.emit(metrics, checkpoint_dir)
    return {"state": state, "metrics": metrics}


def progress_event(
    cfg: PipelineConfig,
    kind: str,
    state: dict[str, Any],
    epoch: int,
    metrics: dict[str, float],
    per_epoch: int | None = None,
) -> dict[str, Any]:
    """A small, picklable progress record: `kind` is "update" (a log window) or "epoch" (an evaluation)."""
    return {
        "job": "pretrain",
        "kind": kind,
        "update": state["update"],
        "total_updates": (per_epoch or cfg.train.steps_per_epoch) * cfg.train.max_epochs,
        "epoch": epoch,
        "max_epochs": cfg.train.max_epochs,
        "stopped": bool(state.get("stopped")),
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    }


def _add_to_window(window: dict[str, float], step: StepSpec, result: StepResult) -> None:
    """Add one update to the open logging window's sums (kept in the train state, see `resume.py`)."""
    stem = f"train_{step.metric_stem}"
    for key, value in (
        (f"{stem}_loss/sum", result.loss),
        (f"{stem}_loss/n", 1.0),
        ("tokens", float(result.num_tokens)),
        ("grad_norm/sum", result.grad_norm),
        ("updates", 1.0),
    ):
        window[key] = window.get(key, 0.0) + value


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
    hooks.last_window = metrics
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

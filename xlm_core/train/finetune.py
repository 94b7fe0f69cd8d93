"""XNLI fine-tuning: restore, train an epoch, evaluate 15 languages, select, checkpoint — launcher-free.

As XLM's `glue-xnli.py` (docs/original-xlm.md, "XNLI fine-tuning"): English MultiNLI pairs are encoded as
`</s> premise </s> hypothesis </s>` (continuous positions, the English language id on both
sides), the first hidden state goes through dropout and a Linear(D, 3) (classes contradiction,
neutral, entailment), cross-entropy, Adam with separate learning rates for the selected encoder
part and the classifier. After every epoch each XNLI language is scored with its own language id.
Fixes over the original (same section, last paragraph): the epoch with the best average valid accuracy is selected and
checkpointed, workers run data parallel, and shuffling and dropout are seeded per epoch, so a
resumed run repeats an uninterrupted one.

`xnli.batch_size` and `xnli.epoch_size` are global, as on XLM's single GPU: each of the W workers
takes batch_size / W pairs of every update (an error at launch if W does not divide it), DDP averages
their gradients, so the learning rates mean what they mean for one GPU; an epoch is
ceil(epoch_size / batch_size) updates (XLM stops once it has seen epoch_size sentences).
`xnli.mode` picks the training and evaluated sets (`xlm_core.data.nli_stages.train_sets/eval_sets`):
translate-train trains one model on the translated sets of every `xnli.train_langs` language, each
pair with its own language id; translate-test scores English translations with the English id.

Shape legend: B batch · T time · C classes.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from xlm_core.checkpoint import CONFIG_FILE, load_checkpoint, read_progress, save_checkpoint
from xlm_core.config import PipelineConfig, XNLIConfig, to_dict
from xlm_core.data.nli_stages import eval_sets, text_lang, train_sets
from xlm_core.evaluation.xnli import (
    NLI_LABELS,
    SELECTION_METRIC,
    accuracy_metrics,
    card_results_markdown,
    correct_and_total,
    metric_name,
)
from xlm_core.export.cached import export_stage
from xlm_core.export.classifier import classifier_from_checkpoint, export_classifier_checkpoint
from xlm_core.export.importer import load_pretrained
from xlm_core.model import XLMArchitecture, XLMForSequenceClassification
from xlm_core.stage_cache import run_stage
from xlm_core.train.distributed import all_reduce_sums, rank_and_world
from xlm_core.train.loop import TrainHooks
from xlm_core.train.nli_data import (
    NLISet,
    TrainPairs,
    finetune_world,
    load_nli_set,
    model_vocabulary,
    pair_batch,
    per_worker_batch,
    train_indices,
)
from xlm_core.train.optim import fused_available

__all__ = [
    "SELECTION_METRIC",
    "NLISet",
    "export_finetuned",
    "finetune",
    "finetune_config",
    "finetune_parameters",
    "load_nli_set",
    "model_vocabulary",
    "pair_batch",
    "predict",
]

logger = logging.getLogger(__name__)

# Modules beyond the export package whose code shapes the classifier export (its card, its results table).
_EXPORT_CODE = ("xlm_core.export.classifier", "xlm_core.evaluation.xnli", "xlm_core.train.finetune")


def _layer_bound(text: str, n_layers: int) -> int:
    value = -int(text[1:]) if text.startswith("_") else int(text)
    return n_layers + 1 + value if value < 0 else value


def finetune_parameters(model: XLMForSequenceClassification, spec: str) -> list[torch.nn.Parameter]:
    """Encoder parameters selected by XLM's `i:j` (`_` = minus, negatives count from n_layers + 1):
    i == 0 adds the embeddings and their LayerNorm; layers `max(i-1, 0) .. j-1` follow."""
    n_layers = model.arch.n_layers
    try:
        first, last = (_layer_bound(part, n_layers) for part in spec.split(":"))
    except ValueError as e:
        raise ValueError(f"xnli.finetune_layers: {spec!r} must look like `0:_1` or `2:4`") from e
    if not 0 <= first <= last <= n_layers:
        raise ValueError(f"xnli.finetune_layers: {spec!r} selects no valid range for {n_layers} layers")
    encoder = model.transformer
    modules: list[torch.nn.Module] = []
    if first == 0:
        modules += [encoder.embeddings, encoder.position_embeddings, encoder.layer_norm_emb]
        if model.arch.has_lang_embeddings:
            modules.append(encoder.lang_embeddings)
    for layer in range(max(first - 1, 0), last):
        modules += [
            encoder.attentions[layer],
            encoder.layer_norm1[layer],
            encoder.ffns[layer],
            encoder.layer_norm2[layer],
        ]
    # Sinusoidal position tables stay frozen, as in pretraining.
    return [p for module in modules for p in module.parameters() if p.requires_grad]


def _build(cfg: PipelineConfig, model_path: str, seed: int) -> tuple[XLMForSequenceClassification, XLMArchitecture]:
    pretrained, arch, _ = load_pretrained(model_path)
    torch.manual_seed(seed)  # the classifier's initial weights, identical on every rank
    model = XLMForSequenceClassification(arch, num_labels=len(NLI_LABELS), summary_first_dropout=cfg.xnli.dropout)
    model.transformer.load_state_dict(pretrained.transformer.state_dict())
    return model, arch


@torch.no_grad()
def predict(model: torch.nn.Module, data: NLISet, *, lang_id: int | None, max_len: int, batch_size: int) -> np.ndarray:
    """Class ids for every pair of `data`, in order (evaluation mode, no truncation below `max_len`)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        indices = np.arange(start, min(start + batch_size, len(data)))
        tokens_BT, lengths_B, langs_BT, _ = pair_batch(data, indices, lang_id=lang_id, max_len=max_len)
        out.append(model(tokens_BT, lengths_B=lengths_B, langs_BT=langs_BT).argmax(-1).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module,
    sets: dict[tuple[str, str], tuple[NLISet, int | None]],
    *,
    max_len: int,
    batch_size: int,
    rank: int,
    world: int,
    device: torch.device,
) -> dict[str, float]:
    """XNLI accuracies of `sets`: `{("valid" | "test", lang): (pairs, language id to score them with)}`."""
    model.eval()
    sums: dict[str, float] = {}
    for (split, lang), (data, lang_id) in sets.items():
        correct = total = 0.0
        for number, start in enumerate(range(0, len(data), batch_size)):
            if number % world != rank:  # each rank scores every world-th batch; sums are added up
                continue
            indices = np.arange(start, min(start + batch_size, len(data)))
            tokens_BT, lengths_B, langs_BT, labels_B = pair_batch(data, indices, lang_id=lang_id, max_len=max_len)
            logits_BC = model(
                tokens_BT.to(device),
                lengths_B=lengths_B.to(device),
                langs_BT=None if langs_BT is None else langs_BT.to(device),
            )
            c, t = correct_and_total(logits_BC.cpu(), labels_B)
            correct, total = correct + c, total + t
        sums[f"{split}_{lang}/correct"], sums[f"{split}_{lang}/total"] = correct, total
    model.train()
    return accuracy_metrics(all_reduce_sums(sums), sorted({lang for _, lang in sets}))


def finetune(
    cfg: PipelineConfig, hooks: TrainHooks | None = None, *, model_path: str, data_dir: str, langs: list[str]
) -> dict[str, Any]:
    """Fine-tune `model_path` on `data_dir`'s training sets of `xnli.mode`, evaluating `langs` after every epoch."""
    hooks = hooks or TrainHooks()
    hooks.phase = f"loading {model_path} and the XNLI data in {data_dir}"
    xnli = cfg.xnli
    rank, world = rank_and_world()
    device = hooks.device
    torch.set_num_threads(cfg.scaling.torch_threads)
    seed = cfg.experiment.seed if xnli.seed is None else xnli.seed
    model, arch = _build(cfg, model_path, seed)
    if xnli.max_len > arch.max_position_embeddings:
        raise ValueError(
            f"xnli.max_len ({xnli.max_len}) > max_position_embeddings ({arch.max_position_embeddings}) of "
            f"{model_path}: training rows would index past its position table; set xnli.max_len <= "
            f"{arch.max_position_embeddings}"
        )
    _, _, meta = load_pretrained(model_path)
    lang2id = dict(meta["lang2id"] or {})
    per_worker = per_worker_batch(xnli.batch_size, world)
    encoder_params = finetune_parameters(model, xnli.finetune_layers)
    chosen = {id(p) for p in encoder_params}
    for p in model.transformer.parameters():
        p.requires_grad_(id(p) in chosen)
    model.to(device)
    classifier_params = list(model.sequence_summary.parameters())
    optimizer = torch.optim.Adam(
        [
            {"params": encoder_params, "lr": xnli.lr_encoder},
            {"params": classifier_params, "lr": xnli.lr_classifier},
        ],
        fused=fused_available(encoder_params + classifier_params) or None,
    )
    train_pairs, evaluated = _load_sets(cfg, data_dir, langs, lang2id if arch.has_lang_embeddings else None)
    state: dict[str, Any] = {"epoch": 0, "update": 0, "best": {}, "best_epoch": None, "last_metrics": {}}
    if hooks.restore_dir is not None:
        saved, _ = load_checkpoint(hooks.restore_dir)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["train_state"]
        logger.info("resumed XNLI fine-tuning from %s at epoch %d", hooks.restore_dir, state["epoch"])
    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    epoch_size = len(train_pairs) if xnli.epoch_size == -1 else xnli.epoch_size
    steps = math.ceil(epoch_size / xnli.batch_size)  # the global batch: XLM's `ns >= epoch_size` stop
    metrics: dict[str, float] = dict(state["last_metrics"])
    ran_epochs = 0
    while state["epoch"] < xnli.max_epochs:
        epoch, start = state["epoch"], time.monotonic()
        torch.manual_seed(seed * 1_000_003 + epoch * 1009 + rank)  # dropout draws repeat on resume
        ddp_model.train()
        window = {"loss": 0.0, "correct": 0.0, "pairs": 0.0}
        for step in range(steps):
            hooks.phase = f"XNLI training update {state['update'] + 1} (epoch {epoch})"
            indices = train_indices(
                len(train_pairs), epoch=epoch, step=step, steps=steps, batch=xnli.batch_size, rank=rank,
                per_worker=per_worker, seed=seed,
            )  # fmt: skip
            tokens_BT, lengths_B, langs_BT, labels_B = train_pairs.batch(indices, max_len=xnli.max_len)
            logits_BC = ddp_model(
                tokens_BT.to(device),
                lengths_B=lengths_B.to(device),
                langs_BT=None if langs_BT is None else langs_BT.to(device),
            )
            loss = F.cross_entropy(logits_BC, labels_B.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if xnli.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), xnli.clip_grad_norm)
            optimizer.step()
            state["update"] += 1
            c, t = correct_and_total(logits_BC.detach().cpu(), labels_B)
            window = {
                "loss": window["loss"] + float(loss.detach()) * t,
                "correct": window["correct"] + c,
                "pairs": window["pairs"] + t,
            }
            if state["update"] % xnli.log_every == 0 or step == steps - 1:
                total = all_reduce_sums(window)
                train = {
                    "train_loss": total["loss"] / total["pairs"],
                    "train_acc": 100 * total["correct"] / total["pairs"],
                }
                hooks.metric_logger.log_metrics(train, step=state["update"])
                hooks.progress(_progress(xnli, "update", state, epoch, steps, train))
                window = {"loss": 0.0, "correct": 0.0, "pairs": 0.0}
        hooks.phase = f"XNLI evaluation after epoch {epoch}"
        metrics = _evaluate(
            model, evaluated, max_len=arch.max_position_embeddings, batch_size=xnli.eval_batch_size,
            rank=rank, world=world, device=device,
        )  # fmt: skip
        improved = state["best_epoch"] is None or metrics[SELECTION_METRIC] > state["best"][SELECTION_METRIC]
        if improved:
            state["best"], state["best_epoch"] = dict(metrics), epoch
        metrics |= {"epoch": float(epoch), f"best_{SELECTION_METRIC}": state["best"][SELECTION_METRIC]}
        state["epoch"], state["last_metrics"] = epoch + 1, dict(metrics)
        state["train_seconds"] = state.get("train_seconds", 0.0) + time.monotonic() - start
        ran_epochs += 1
        if rank == 0:
            logger.info(
                "XNLI epoch %d: valid avg %.2f, test avg %.2f",
                epoch,
                metrics[SELECTION_METRIC],
                metrics.get(metric_name("test", "avg"), float("nan")),
            )
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = _save(model, optimizer, state, arch, meta, cfg, Path(data_dir), f"epoch-{epoch:05d}")
        hooks.emit(metrics | {f"improved_{SELECTION_METRIC}": float(improved)}, checkpoint_dir)
        if rank == 0:
            hooks.metric_logger.log_metrics(metrics, step=epoch)
        hooks.progress(_progress(xnli, "epoch", state, epoch, steps, metrics))
    if ran_epochs == 0 and hooks.restore_dir is not None:
        # A finished run restarted: report its final checkpoint again so the launcher sees a result.
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = Path(tempfile.mkdtemp(prefix="xlm-ckpt-")) / "final"
            shutil.copytree(hooks.restore_dir, checkpoint_dir)
        hooks.emit(metrics, checkpoint_dir)
    return {"state": state, "metrics": metrics}


def _load_sets(
    cfg: PipelineConfig, data_dir: str, langs: list[str], lang2id: dict[str, int] | None
) -> tuple[TrainPairs, dict[tuple[str, str], tuple[NLISet, int | None]]]:
    """The training stream and the evaluated sets of `xnli.mode`, each with the language id it is read
    with (None for a model without language embeddings)."""
    x = cfg.xnli

    def lang_id(lang: str) -> int | None:
        return None if lang2id is None else lang2id[lang]

    train = [
        (load_nli_set(data_dir, s, lang, limit=x.max_train_pairs), lang_id(lang)) for s, lang in train_sets(cfg, langs)
    ]
    evaluated = {
        key: (load_nli_set(data_dir, split, key[1], limit=x.max_eval_pairs), lang_id(text_lang(split, key[1])))
        for key, split in eval_sets(cfg, langs).items()
    }
    return TrainPairs(train), evaluated


def finetune_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config the fine-tuning is launched with: `scaling.num_workers` set to its own worker count
    (`xnli.num_workers`). Raises ValueError, before any worker starts, when that count does not divide
    the global `xnli.batch_size`."""
    world = finetune_world(cfg)
    per_worker_batch(cfg.xnli.batch_size, world)
    if world == cfg.scaling.num_workers:
        return cfg
    launched = cfg.model_copy(deep=True)
    launched.scaling.num_workers = world
    return launched


def _progress(
    xnli: XNLIConfig, kind: str, state: dict[str, Any], epoch: int, steps: int, metrics: dict[str, float]
) -> dict[str, Any]:
    """The fine-tuning counterpart of `loop.progress_event`."""
    return {
        "job": "xnli",
        "kind": kind,
        "update": state["update"],
        "total_updates": steps * xnli.max_epochs,
        "epoch": epoch,
        "max_epochs": xnli.max_epochs,
        "stopped": False,
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    }


def _save(
    model: XLMForSequenceClassification,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    arch: XLMArchitecture,
    meta: dict[str, Any],
    cfg: PipelineConfig,
    data_dir: Path,
    name: str,
) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="xlm-ckpt-")) / name
    saved = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "train_state": state,
        "arch": asdict(arch),
        "num_labels": model.num_labels,
        "summary_first_dropout": model.summary_first_dropout,
        "lang2id": dict(meta["lang2id"] or {}),
        "do_lowercase_and_remove_accent": meta["do_lowercase_and_remove_accent"],
    }
    vocab_root = data_dir.parent
    return save_checkpoint(directory, saved, to_dict(cfg), extra_files=[vocab_root / "dict.txt", vocab_root / "codes"])


def export_finetuned(checkpoint_dir: str | Path, out_dir: str | Path, *, root: Path | None = None) -> dict[str, Any]:
    """Export the selected fine-tuning checkpoint as a transformers `XLMForSequenceClassification`
    whose model card carries the XNLI table; returns the export path and the selected epoch's metrics.

    With `root` (the work directory) the export is a cached stage: an unchanged checkpoint reuses it.
    """
    # The selected epoch is in progress.json; older checkpoints need the whole state loaded.
    state = read_progress(Path(checkpoint_dir)) or classifier_from_checkpoint(checkpoint_dir)[2]
    best, epoch = state["best"], state["best_epoch"]

    mode = _checkpoint_mode(Path(checkpoint_dir))

    def write() -> str:
        markdown = card_results_markdown(best, epoch=epoch, mode=mode)
        return str(export_classifier_checkpoint(checkpoint_dir, out_dir, results_markdown=markdown))

    stage = export_stage(checkpoint_dir, out_dir, root=root, code=_EXPORT_CODE) if root is not None else None
    path = write() if stage is None else run_stage(stage, write)
    return {"export_dir": path, "epoch": epoch, "metrics": best}


def _checkpoint_mode(checkpoint_dir: Path) -> str:
    """`xnli.mode` of the run that wrote a fine-tuning checkpoint (zero-shot for older checkpoints)."""
    config = json.loads((checkpoint_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    return (config.get("xnli") or {}).get("mode", "zero-shot")

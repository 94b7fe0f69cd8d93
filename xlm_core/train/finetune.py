"""XNLI fine-tuning: restore, train an epoch, evaluate 15 languages, select, checkpoint — launcher-free.

As XLM's `glue-xnli.py` (docs: xlm-original.md §12): English MultiNLI pairs are encoded as
`</s> premise </s> hypothesis </s>` (continuous positions, the English language id on both
sides), the first hidden state goes through dropout and a Linear(D, 3) (classes contradiction,
neutral, entailment), cross-entropy, Adam with separate learning rates for the selected encoder
part and the classifier. After every epoch each XNLI language is scored with its own language id.
Fixes over the original (§14.15): the epoch with the best average valid accuracy is selected and
checkpointed, workers run data parallel, and shuffling and dropout are seeded per epoch, so a
resumed run repeats an uninterrupted one.

Shape legend: B batch · T time · C classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from xlm_core.checkpoint import load_checkpoint, read_progress, save_checkpoint
from xlm_core.config import PipelineConfig, to_dict
from xlm_core.data.binarize import BinarizedSet, load_binarized
from xlm_core.data.dictionary import EOS_INDEX, NUM_SPECIALS, PAD_INDEX, Dictionary
from xlm_core.evaluation.xnli import NLI_LABELS, accuracy_metrics, card_results_markdown, correct_and_total
from xlm_core.export.cached import export_stage
from xlm_core.export.classifier import classifier_from_checkpoint, export_classifier_checkpoint
from xlm_core.export.importer import load_pretrained
from xlm_core.model import XLMArchitecture, XLMForSequenceClassification
from xlm_core.stage_cache import run_stage
from xlm_core.train.distributed import all_reduce_sums, rank_and_world
from xlm_core.train.loop import TrainHooks
from xlm_core.train.optim import fused_available

__all__ = [
    "NLISet",
    "export_finetuned",
    "finetune",
    "finetune_parameters",
    "load_nli_set",
    "model_vocabulary",
    "pair_batch",
    "predict",
]

logger = logging.getLogger(__name__)

# Modules beyond the export package whose code shapes the classifier export (its card, its results table).
_EXPORT_CODE = ("xlm_core.export.classifier", "xlm_core.evaluation.xnli", "xlm_core.train.finetune")

SELECTION_METRIC = "valid_avg_acc"


@dataclass
class NLISet:
    premises: BinarizedSet
    hypotheses: BinarizedSet
    labels: np.ndarray  # int64 class ids (NLI_LABELS order)

    def __len__(self) -> int:
        return len(self.labels)


def model_vocabulary(cfg: PipelineConfig, *, model: str | None, checkpoint_dir: str | None) -> dict[str, Any]:
    """The pretrained model's text processing, written where the NLI data stages read it.

    The model is `model` if given, else `xnli.model`, else `checkpoint_dir` (the pipeline's best
    pretraining checkpoint).

    Returns:
        `{"model", "root", "codes", "dictionary", "lowercase": {lang: bool, "*": default}, "lang2id",
        "langs"}`; `langs` are the configured XNLI languages the model can be evaluated on (its own
        languages, or all when it has no language embeddings). `root` is named by a hash of the
        dictionary, codes and lowercasing, so another model's vocabulary never reuses these files.
    """
    model_path = model or cfg.xnli.model or checkpoint_dir
    if not model_path:
        raise ValueError(
            "xnli: no model to fine-tune: set xnli.model (a checkpoint or export directory) or pretrain first"
        )
    model_path = str(Path(model_path).expanduser().resolve())  # Ray workers run in another directory
    _, arch, meta = load_pretrained(model_path)
    if meta["codes_path"] is None:
        raise ValueError(
            f"xnli.model: {model_path} carries no BPE codes (an original .pth); import it first with "
            "`xlm import --codes CODES` and fine-tune the export directory"
        )
    default = meta["do_lowercase_and_remove_accent"]
    lowercase: dict[str, bool] = {"*": True if default is None else bool(default)} | meta["per_lang_lowercase"]
    codes = Path(meta["codes_path"]).read_bytes()
    digest = hashlib.sha256(codes + "\n".join(meta["words"]).encode() + json.dumps(lowercase).encode()).hexdigest()
    root = cfg.workdir / "xnli" / digest[:16]
    root.mkdir(parents=True, exist_ok=True)
    words = meta["words"][NUM_SPECIALS:]
    Dictionary(words, [0] * len(words)).write(root / "dict.txt")
    shutil.copyfile(meta["codes_path"], root / "codes")
    lang2id = dict(meta["lang2id"] or {})
    langs = [lang for lang in cfg.xnli.langs if lang in lang2id or not arch.has_lang_embeddings]
    skipped = sorted(set(cfg.xnli.langs) - set(langs))
    if skipped:
        logger.warning("XNLI languages %s are not languages of %s and are not evaluated", skipped, model_path)
    if "en" not in langs:
        raise ValueError(f"xnli.model: {model_path} has no `en` language id ({lang2id}); XNLI trains on English")
    return {
        "model": str(model_path),
        "root": str(root),
        "codes": str(root / "codes"),
        "dictionary": str(root / "dict.txt"),
        "lowercase": lowercase,
        "lang2id": lang2id,
        "langs": langs,
    }


def load_nli_set(data_dir: str | Path, split: str, lang: str, *, limit: int | None = None) -> NLISet:
    """Binarized premises/hypotheses and labels of one split and language (the first `limit` pairs)."""
    data_dir = Path(data_dir)
    premises = load_binarized(data_dir / f"{split}.s1.{lang}")
    hypotheses = load_binarized(data_dir / f"{split}.s2.{lang}")
    names = (data_dir / f"{split}.label.{lang}").read_text(encoding="utf-8").split()
    labels = np.array([NLI_LABELS.index(name) for name in names], dtype=np.int64)
    if not len(premises) == len(hypotheses) == len(labels):
        raise ValueError(f"{data_dir}: {split}/{lang} has {len(premises)}/{len(hypotheses)}/{len(labels)} pairs")
    if limit is not None and limit < len(labels):
        labels = labels[:limit]
    return NLISet(premises, hypotheses, labels)


def pair_batch(
    data: NLISet, indices: np.ndarray, *, lang_id: int | None, max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """`</s> premise </s> hypothesis </s>` rows truncated to `max_len` (last token `</s>`), right-padded.

    Returns:
        tokens_BT, lengths_B, langs_BT (None without `lang_id`), labels_B.
    """
    rows = []
    for i in indices.tolist():
        row = np.concatenate([[EOS_INDEX], data.premises.sentence(i), [EOS_INDEX], data.hypotheses.sentence(i)])
        row = np.append(row[: max_len - 1], EOS_INDEX)
        rows.append(row)
    lengths_B = torch.tensor([len(row) for row in rows], dtype=torch.long)
    tokens_BT = torch.full((len(rows), int(lengths_B.max())), PAD_INDEX, dtype=torch.long)
    for b, row in enumerate(rows):
        tokens_BT[b, : len(row)] = torch.from_numpy(row.astype(np.int64))
    langs_BT = None if lang_id is None else torch.full_like(tokens_BT, lang_id)
    return tokens_BT, lengths_B, langs_BT, torch.from_numpy(data.labels[indices])


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


def _train_indices(size: int, epoch_size: int, epoch: int, step: int, batch: int, rank: int, world: int, seed: int):
    """This rank's pair ids at `step` of `epoch`: a window of one shuffled pass per `size` pairs, so an
    epoch smaller than the set walks on through it and a resumed epoch draws the same pairs."""
    start = epoch * epoch_size + step * batch * world + rank * batch
    positions = np.arange(start, start + batch)
    passes = positions // size
    out = np.empty(batch, dtype=np.int64)
    for index in np.unique(passes):
        order = np.random.default_rng([seed, int(index)]).permutation(size)
        out[passes == index] = order[positions[passes == index] % size]
    return out


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
    sets: dict[tuple[str, str], NLISet],
    lang_ids: dict[str, int | None],
    *,
    max_len: int,
    batch_size: int,
    rank: int,
    world: int,
    device: torch.device,
) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    for (split, lang), data in sets.items():
        correct = total = 0.0
        for number, start in enumerate(range(0, len(data), batch_size)):
            if number % world != rank:  # each rank scores every world-th batch; sums are added up
                continue
            indices = np.arange(start, min(start + batch_size, len(data)))
            tokens_BT, lengths_B, langs_BT, labels_B = pair_batch(
                data, indices, lang_id=lang_ids[lang], max_len=max_len
            )
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
    """Fine-tune `model_path` on `data_dir`'s English train set, evaluating `langs` after every epoch."""
    hooks = hooks or TrainHooks()
    xnli = cfg.xnli
    rank, world = rank_and_world()
    device = hooks.device
    torch.set_num_threads(cfg.scaling.torch_threads)
    seed = cfg.experiment.seed if xnli.seed is None else xnli.seed
    model, arch = _build(cfg, model_path, seed)
    _, _, meta = load_pretrained(model_path)
    lang2id = dict(meta["lang2id"] or {})
    lang_ids = {lang: lang2id.get(lang) if arch.has_lang_embeddings else None for lang in langs}
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
    train_set = load_nli_set(data_dir, "train", "en", limit=xnli.max_train_pairs)
    eval_sets = {
        (split, lang): load_nli_set(data_dir, split, lang, limit=xnli.max_eval_pairs)
        for split in ("valid", "test")
        for lang in langs
    }
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

    epoch_size = len(train_set) if xnli.epoch_size == -1 else xnli.epoch_size
    steps = math.ceil(epoch_size / (xnli.batch_size * world))
    english = lang2id.get("en") if arch.has_lang_embeddings else None
    metrics: dict[str, float] = dict(state["last_metrics"])
    ran_epochs = 0
    while state["epoch"] < xnli.max_epochs:
        epoch, start = state["epoch"], time.monotonic()
        torch.manual_seed(seed * 1_000_003 + epoch * 1009 + rank)  # dropout draws repeat on resume
        ddp_model.train()
        window = {"loss": 0.0, "correct": 0.0, "pairs": 0.0}
        for step in range(steps):
            indices = _train_indices(len(train_set), epoch_size, epoch, step, xnli.batch_size, rank, world, seed)
            tokens_BT, lengths_B, langs_BT, labels_B = pair_batch(
                train_set, indices, lang_id=english, max_len=xnli.max_len
            )
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
                window = {"loss": 0.0, "correct": 0.0, "pairs": 0.0}
        metrics = _evaluate(
            model, eval_sets, lang_ids, max_len=arch.max_position_embeddings, batch_size=xnli.eval_batch_size,
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
                metrics.get("test_avg_acc", float("nan")),
            )
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = _save(model, optimizer, state, arch, meta, cfg, Path(data_dir), f"epoch-{epoch:05d}")
        hooks.emit(metrics | {f"improved_{SELECTION_METRIC}": float(improved)}, checkpoint_dir)
        if rank == 0:
            hooks.metric_logger.log_metrics(metrics, step=epoch)
    if ran_epochs == 0 and hooks.restore_dir is not None:
        # A finished run restarted: report its final checkpoint again so the launcher sees a result.
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = Path(tempfile.mkdtemp(prefix="xlm-ckpt-")) / "final"
            shutil.copytree(hooks.restore_dir, checkpoint_dir)
        hooks.emit(metrics, checkpoint_dir)
    return {"state": state, "metrics": metrics}


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

    def write() -> str:
        markdown = card_results_markdown(best, epoch=epoch)
        return str(export_classifier_checkpoint(checkpoint_dir, out_dir, results_markdown=markdown))

    stage = export_stage(checkpoint_dir, out_dir, root=root, code=_EXPORT_CODE) if root is not None else None
    path = write() if stage is None else run_stage(stage, write)
    return {"export_dir": path, "epoch": epoch, "metrics": best}

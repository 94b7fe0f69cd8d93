"""The data side of XNLI fine-tuning: the pretrained model's vocabulary, binarized NLI sets, pair
batches, the training stream over one or several languages, and the global batch split over workers.

Shape legend: B batch · T time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlm_core.config import PipelineConfig
from xlm_core.data.binarize import BinarizedSet, load_binarized
from xlm_core.data.dictionary import EOS_INDEX, NUM_SPECIALS, PAD_INDEX, Dictionary
from xlm_core.evaluation.xnli import NLI_LABELS
from xlm_core.export.importer import load_pretrained

__all__ = [
    "NLISet",
    "TrainPairs",
    "finetune_world",
    "load_nli_set",
    "model_vocabulary",
    "pair_batch",
    "per_worker_batch",
    "train_indices",
]

logger = logging.getLogger(__name__)


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
        languages, or all when it has no language embeddings or in translate-test, where every set is
        English). `root` is named by a hash of the dictionary, codes and lowercasing, so another
        model's vocabulary never reuses these files.
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
    every = not arch.has_lang_embeddings or cfg.xnli.mode == "translate-test"
    langs = [lang for lang in cfg.xnli.langs if lang in lang2id or every]
    skipped = sorted(set(cfg.xnli.langs) - set(langs))
    if skipped:
        logger.warning("XNLI languages %s are not languages of %s and are not evaluated", skipped, model_path)
    if "en" not in langs or (arch.has_lang_embeddings and "en" not in lang2id):
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


def _pair_row(data: NLISet, i: int, max_len: int) -> np.ndarray:
    """`</s> premise </s> hypothesis </s>` truncated to `max_len`, the last token kept `</s>`."""
    row = np.concatenate([[EOS_INDEX], data.premises.sentence(i), [EOS_INDEX], data.hypotheses.sentence(i)])
    return np.append(row[: max_len - 1], EOS_INDEX)


def _collate(
    rows: list[np.ndarray], lang_ids: list[int | None], labels: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    lengths_B = torch.tensor([len(row) for row in rows], dtype=torch.long)
    tokens_BT = torch.full((len(rows), int(lengths_B.max())), PAD_INDEX, dtype=torch.long)
    langs_BT = None if lang_ids[0] is None else torch.empty_like(tokens_BT)
    for b, row in enumerate(rows):
        tokens_BT[b, : len(row)] = torch.from_numpy(row.astype(np.int64))
        if langs_BT is not None:
            langs_BT[b] = lang_ids[b]
    return tokens_BT, lengths_B, langs_BT, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def pair_batch(
    data: NLISet, indices: np.ndarray, *, lang_id: int | None, max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """`</s> premise </s> hypothesis </s>` rows truncated to `max_len` (last token `</s>`), right-padded.

    Returns:
        tokens_BT, lengths_B, langs_BT (None without `lang_id`), labels_B.
    """
    rows = [_pair_row(data, i, max_len) for i in indices.tolist()]
    return _collate(rows, [lang_id] * len(rows), data.labels[indices])


class TrainPairs:
    """The training sets of one run (English, or the translations into several languages) as one
    stream of pairs, each with its set's language id."""

    def __init__(self, sets: list[tuple[NLISet, int | None]]) -> None:
        if not sets:
            raise ValueError("xnli: no training set")
        self.sets = sets
        self.starts = np.cumsum([0] + [len(data) for data, _ in sets])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def batch(
        self, indices: np.ndarray, *, max_len: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """As `pair_batch`, for indices over the concatenated sets."""
        which = np.searchsorted(self.starts, indices, side="right") - 1
        rows, langs, labels = [], [], []
        for k, index in zip(which.tolist(), indices.tolist(), strict=True):
            data, lang_id = self.sets[k]
            local = index - int(self.starts[k])
            rows.append(_pair_row(data, local, max_len))
            langs.append(lang_id)
            labels.append(int(data.labels[local]))
        return _collate(rows, langs, np.array(labels, dtype=np.int64))


def finetune_world(cfg: PipelineConfig) -> int:
    """Workers of the fine-tuning: `xnli.num_workers`, else `scaling.num_workers`."""
    return cfg.xnli.num_workers or cfg.scaling.num_workers


def per_worker_batch(batch_size: int, world: int) -> int:
    """Each worker's share of the global `xnli.batch_size`: DDP averages the workers' gradients, so
    `world` workers of `batch_size / world` pairs make one update of `batch_size` pairs, and the
    learning rates keep their single-GPU meaning."""
    if batch_size % world:
        raise ValueError(
            f"xnli.batch_size ({batch_size}) is the global batch and must be divisible by the {world} "
            "fine-tuning workers (xnli.num_workers, else scaling.num_workers); set xnli.num_workers to a "
            "divisor of it"
        )
    return batch_size // world


def train_indices(
    size: int, *, epoch: int, step: int, steps: int, batch: int, rank: int, per_worker: int, seed: int
) -> np.ndarray:
    """This rank's pair ids at `step` of `epoch`, from one stream of shuffled passes over the `size` pairs.

    Update u = epoch * steps + step takes stream positions [u * batch, (u + 1) * batch), rank r the
    slice [r * per_worker, (r + 1) * per_worker) of it; a pass is a permutation seeded by (seed, pass),
    so a resumed epoch draws the same pairs and an epoch smaller than the set walks on through it.
    """
    start = (epoch * steps + step) * batch + rank * per_worker
    positions = np.arange(start, start + per_worker)
    passes = positions // size
    out = np.empty(per_worker, dtype=np.int64)
    for index in np.unique(passes):
        order = np.random.default_rng([seed, int(index)]).permutation(size)
        out[passes == index] = order[positions[passes == index] % size]
    return out

"""Cross-lingual alignment probes on a parallel valid/test set: sentence retrieval and TLM context gain.

Both run on pairs chosen by `select_pairs`: both sides non-empty and at most `max_len` tokens
(default `max_position_embeddings - 2`, so `</s> w1 .. wn </s>` fits the position table), then a
seeded sample of at most `max_pairs` of them, kept in file order. The same pairs are chosen at every
evaluation.

Retrieval (the XTREME Tatoeba/BUCC protocol): every sentence is encoded alone as `</s> w1 .. wn </s>`
with its own language id; its embedding is the mean over its real positions (both `</s>` included,
padding excluded) of the hidden states after `layer` layers (default `default_layer`: n_layers // 2,
at least 1). Each sentence of one side queries all sentences of the other by cosine similarity; P@1
is the percentage whose best candidate is the gold translation, or a sentence with exactly the same
tokens as it (a repeated sentence cannot be told apart from its copy). Computed in both directions.

TLM context gain, direction a->b: masked-word accuracy on side b with side a visible minus the same
without it, in percentage points. Masks: each word position of the side-b sentence is a target with
probability `word_pred`, else one uniformly drawn position (never a `</s>`), from a generator
seeded by (seed, pair index, side), so both conditions and every evaluation use the same targets;
targets become `<mask>` (no 80/10/10), side a is left intact. The two conditions:
    - with context: the TLM input, `</s> A </s></s> B </s>` in the pair's order (lang1 first, as
      the training step and `concat_pair` build it), positions restarting at side 2, language ids
      per side;
    - alone: the side-b sentence as its own sequence `</s> B </s>` (positions 0.., its language id),
      i.e. the other side is not present at all.
Only the attention to side a differs, so a model that cannot attend across the two sentences has a
gain of exactly zero. Causal (CLM) models get retrieval only.

Metric names (split `valid`, pair `en-fr`): `valid_en_fr_retrieval_p1` (mean of the directions),
`valid_en_fr_retrieval_p1_en_fr` (en queries, fr candidates), `..._fr_en`; `valid_en_fr_tlm_context_gain`
(mean), `valid_en_fr_tlm_context_gain_en_fr` (en context, fr targets), `..._fr_en`; the accuracies
behind each gain `valid_en_fr_tlm_acc_context_en_fr` / `valid_en_fr_tlm_acc_alone_en_fr`; and
`valid_en_fr_probe_pairs` (pairs used). All are percentages except the pair count.

Shape legend: B batch · T time · D emb_dim · V vocabulary · N sentences (or predicted positions).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xlm_core.data.binarize import BinarizedSet, binarized_paths, load_binarized
from xlm_core.data.dictionary import EOS_INDEX, MASK_INDEX, PAD_INDEX
from xlm_core.objectives.tlm import concat_pair
from xlm_core.paths import WorkLayout

__all__ = [
    "alignment_metrics",
    "content_keys",
    "default_layer",
    "pad_sentences",
    "probe_parallel_sets",
    "retrieval_p1",
    "select_pairs",
    "sentence_embeddings",
    "target_positions",
    "tlm_context_counts",
]

logger = logging.getLogger(__name__)


def default_layer(n_layers: int) -> int:
    """The probed layer when none is given: the middle one (n_layers // 2), at least the first."""
    return max(1, n_layers // 2) if n_layers else 0


def select_pairs(len1_N: np.ndarray, len2_N: np.ndarray, *, max_pairs: int, max_len: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of at most `max_pairs` pairs whose sides both have 1..`max_len` tokens."""
    if max_pairs < 1 or max_len < 1:
        raise ValueError(f"select_pairs: max_pairs ({max_pairs}) and max_len ({max_len}) must be >= 1")
    len1_N, len2_N = np.asarray(len1_N), np.asarray(len2_N)
    if len1_N.shape != len2_N.shape:
        raise ValueError(f"select_pairs: the sides have {len(len1_N)} and {len(len2_N)} sentences; align them")
    usable = np.flatnonzero((len1_N > 0) & (len2_N > 0) & (len1_N <= max_len) & (len2_N <= max_len))
    if len(usable) > max_pairs:
        usable = np.sort(np.random.default_rng(seed).choice(usable, size=max_pairs, replace=False))
    return usable


def pad_sentences(sentences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `</s> w1 .. wn </s> <pad>..` (int64) and their lengths n + 2."""
    lengths_B = torch.tensor([len(s) + 2 for s in sentences], dtype=torch.long)
    tokens_BT = torch.full((len(sentences), max([2, *lengths_B.tolist()])), PAD_INDEX)
    tokens_BT[:, 0] = EOS_INDEX
    for row, sentence in enumerate(sentences):
        tokens_BT[row, 1 : len(sentence) + 1] = torch.as_tensor(np.asarray(sentence, dtype=np.int64))
        tokens_BT[row, len(sentence) + 1] = EOS_INDEX
    return tokens_BT, lengths_B


def content_keys(sentences: Sequence[np.ndarray]) -> torch.Tensor:
    """One id per distinct token sequence (N,): equal ids mean identical sentences."""
    seen: dict[bytes, int] = {}
    return torch.tensor(
        [seen.setdefault(np.asarray(s, dtype=np.int64).tobytes(), len(seen)) for s in sentences], dtype=torch.long
    )


def _length_batches(sizes: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar size (less padding); every index exactly once."""
    order = np.argsort(np.asarray(sizes), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _lengths(sentences: Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(sentences, _Sentences):
        return np.asarray(sentences.bset.lengths)
    return np.array([len(s) for s in sentences], dtype=np.int64)


def _encoder(model: torch.nn.Module) -> torch.nn.Module:
    encoder = getattr(model, "transformer", None)
    if encoder is None:
        raise ValueError(
            f"alignment probe: {type(model).__name__} has no `.transformer` encoder; pass the unwrapped "
            "XLMWithLMHeadModel (not its DDP or compiled wrapper)"
        )
    return encoder


@torch.no_grad()
def sentence_embeddings(
    model: torch.nn.Module,
    sentences: Sequence[np.ndarray],
    *,
    lang_id: int | None,
    layer: int,
    causal: bool = False,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Mean-pooled layer-`layer` states of each sentence encoded alone (N, D), fp32 on the CPU.

    `lang_id` is passed as `langs` on every position (None: no language ids). The model's mode is
    left to the caller (use eval mode).
    """
    encoder = _encoder(model)
    embeddings_ND = torch.zeros(len(sentences), encoder.arch.emb_dim)
    for index_B in _length_batches([len(s) for s in sentences], batch_size):
        tokens_BT, lengths_B = pad_sentences([sentences[i] for i in index_B])
        langs_BT = None if lang_id is None else torch.full_like(tokens_BT, lang_id).to(device)
        hidden_BTD = encoder(
            tokens_BT.to(device),
            lengths_B=lengths_B.to(device),
            langs_BT=langs_BT,
            causal=causal,
            return_layer=layer,
        ).float()
        real_BT1 = (torch.arange(tokens_BT.shape[1])[None] < lengths_B[:, None]).unsqueeze(-1).to(hidden_BTD)
        mean_BD = (hidden_BTD * real_BT1).sum(dim=1) / lengths_B[:, None].to(hidden_BTD)
        embeddings_ND[torch.as_tensor(index_B)] = mean_BD.cpu()
    return embeddings_ND


def retrieval_p1(queries_ND: torch.Tensor, candidates_ND: torch.Tensor, candidate_keys_N: torch.Tensor) -> float:
    """P@1 (%) of query i retrieving candidate i (or one with its `candidate_keys_N`) by cosine similarity."""
    if queries_ND.shape != candidates_ND.shape or len(candidate_keys_N) != len(queries_ND):
        raise ValueError(
            f"retrieval_p1: queries {tuple(queries_ND.shape)}, candidates {tuple(candidates_ND.shape)} and "
            f"{len(candidate_keys_N)} keys must describe the same N pairs"
        )
    if len(queries_ND) == 0:
        return 0.0
    similarity_NN = F.normalize(queries_ND.float(), dim=1) @ F.normalize(candidates_ND.float(), dim=1).T
    best_N = similarity_NN.argmax(dim=1)
    return 100.0 * float((candidate_keys_N[best_N] == candidate_keys_N).float().mean())


def target_positions(length: int, *, word_pred: float, seed: int, pair_index: int, side: int) -> np.ndarray:
    """Masked positions (1..length, in `</s> w1 .. wn </s>` coordinates) of one sentence, seeded."""
    rng = np.random.default_rng([seed, pair_index, side])
    picked = np.flatnonzero(rng.random(length) < word_pred) + 1
    return picked if len(picked) else np.array([1 + int(rng.integers(length))])


@torch.no_grad()
def tlm_context_counts(
    model: torch.nn.Module,
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    *,
    target_side: int,
    lang_ids: tuple[int, int] | None,
    pair_indices: Sequence[int],
    word_pred: float = 0.15,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[int, int, int]:
    """(correct with the other side visible, correct alone, targets) for masked words on `target_side`.

    `first`/`second` are the pair's sides in TLM order; `lang_ids` their language ids (None: none
    passed); `pair_indices` the pairs' indices in their set (they seed the masks). See the module
    docstring for both conditions.
    """
    if target_side not in (1, 2):
        raise ValueError(f"tlm_context_counts: target_side must be 1 or 2, got {target_side}")
    if not len(first) == len(second) == len(pair_indices):
        raise ValueError("tlm_context_counts: first, second and pair_indices must have the same length")
    targets = second if target_side == 2 else first
    correct_context = correct_alone = num_targets = 0
    for index_B in _length_batches([len(a) + len(b) for a, b in zip(first, second, strict=True)], batch_size):
        x1_BT, len1_B = pad_sentences([first[i] for i in index_B])
        x2_BT, len2_B = pad_sentences([second[i] for i in index_B])
        side_BT, side_len_B = (x2_BT, len2_B) if target_side == 2 else (x1_BT, len1_B)
        pred_side_BT = torch.zeros_like(side_BT, dtype=torch.bool)
        for row, i in enumerate(index_B):
            where = target_positions(
                len(targets[i]), word_pred=word_pred, seed=seed, pair_index=int(pair_indices[i]), side=target_side
            )
            pred_side_BT[row, torch.as_tensor(where)] = True
        targets_N = side_BT[pred_side_BT]
        masked_BT = side_BT.masked_fill(pred_side_BT, MASK_INDEX)
        side_lang = None if lang_ids is None else lang_ids[target_side - 1]

        langs_alone_BT = None if side_lang is None else torch.full_like(masked_BT, side_lang).to(device)
        logits_alone_NV = model(
            masked_BT.to(device),
            pred_mask_BT=pred_side_BT.to(device),
            lengths_B=side_len_B.to(device),
            langs_BT=langs_alone_BT,
        )

        a_BT, b_BT = (x1_BT, masked_BT) if target_side == 2 else (masked_BT, x2_BT)
        tokens_BT, lengths_B, positions_BT, langs_BT = concat_pair(
            a_BT,
            len1_B,
            lang_ids[0] if lang_ids else 0,
            b_BT,
            len2_B,
            lang_ids[1] if lang_ids else 0,
            pad_index=PAD_INDEX,
            reset_positions=True,
        )
        # Side-local position t of a row sits at t (side 1) or len1 + t (side 2) of the pair row.
        offset_B1 = len1_B[:, None] if target_side == 2 else torch.zeros_like(len1_B[:, None])
        local_BT = torch.arange(tokens_BT.shape[1])[None] - offset_B1
        inside_BT = (local_BT >= 0) & (local_BT < side_BT.shape[1])
        pred_pair_BT = pred_side_BT.gather(1, local_BT.clamp(0, side_BT.shape[1] - 1)) & inside_BT
        logits_context_NV = model(
            tokens_BT.to(device),
            pred_mask_BT=pred_pair_BT.to(device),
            lengths_B=lengths_B.to(device),
            positions_BT=positions_BT.to(device),
            langs_BT=None if lang_ids is None else langs_BT.to(device),
        )

        targets_N = targets_N.to(device)
        correct_alone += int((logits_alone_NV.argmax(dim=-1) == targets_N).sum())
        correct_context += int((logits_context_NV.argmax(dim=-1) == targets_N).sum())
        num_targets += int(targets_N.numel())
    return correct_context, correct_alone, num_targets


def alignment_metrics(
    model: torch.nn.Module,
    sentences1: Sequence[np.ndarray],
    sentences2: Sequence[np.ndarray],
    *,
    split: str,
    lang1: str,
    lang2: str,
    lang2id: Mapping[str, int],
    causal: bool = False,
    max_pairs: int = 1000,
    max_len: int | None = None,
    layer: int | None = None,
    word_pred: float = 0.15,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Retrieval P@1 and (for non-causal models) TLM context gain on line-aligned `sentences1`/`sentences2`.

    `sentences1` is in `lang1`, `sentences2` in `lang2` (each an id array without `</s>`); `lang1`
    is first in the TLM input. See the module docstring for the definitions and the metric names.
    """
    if len(sentences1) != len(sentences2):
        raise ValueError(
            f"alignment probe {split} {lang1}-{lang2}: {len(sentences1)} and {len(sentences2)} sentences; "
            "the two sides must be line-aligned (re-run split/binarize)"
        )
    missing = [lang for lang in (lang1, lang2) if lang not in lang2id]
    if missing:
        raise ValueError(f"alignment probe: languages {missing} are not in the model's lang2id {dict(lang2id)}")
    encoder = _encoder(model)
    n_layers = encoder.arch.n_layers
    layer = default_layer(n_layers) if layer is None else layer
    if not 0 <= layer <= n_layers:
        raise ValueError(f"alignment probe: layer {layer} outside 0..n_layers={n_layers}; pass a layer in range")
    max_len = encoder.arch.max_position_embeddings - 2 if max_len is None else max_len
    chosen = select_pairs(
        _lengths(sentences1),
        _lengths(sentences2),
        max_pairs=max_pairs,
        max_len=max_len,
        seed=seed,
    )
    prefix = f"{split}_{lang1}_{lang2}"
    metrics: dict[str, float] = {f"{prefix}_probe_pairs": float(len(chosen))}
    if len(chosen) == 0:
        logger.warning("alignment probe %s: no usable pair (empty or longer than %d tokens)", prefix, max_len)
        return metrics
    side1 = [np.asarray(sentences1[i], dtype=np.int64) for i in chosen]
    side2 = [np.asarray(sentences2[i], dtype=np.int64) for i in chosen]
    use_langs = len(lang2id) > 1  # as the training inputs: language ids only for multilingual models
    ids = (lang2id[lang1], lang2id[lang2]) if use_langs else None
    options = {"batch_size": batch_size, "device": device}
    was_training = model.training
    model.eval()
    try:
        emb1_ND, emb2_ND = (
            sentence_embeddings(
                model, side, lang_id=None if ids is None else lang_id, layer=layer, causal=causal, **options
            )
            for side, lang_id in ((side1, lang2id[lang1]), (side2, lang2id[lang2]))
        )
        forward = retrieval_p1(emb1_ND, emb2_ND, content_keys(side2))
        backward = retrieval_p1(emb2_ND, emb1_ND, content_keys(side1))
        metrics[f"{prefix}_retrieval_p1_{lang1}_{lang2}"] = forward
        metrics[f"{prefix}_retrieval_p1_{lang2}_{lang1}"] = backward
        metrics[f"{prefix}_retrieval_p1"] = (forward + backward) / 2
        if not causal:
            gains = []
            for target_side, (context, target) in ((2, (lang1, lang2)), (1, (lang2, lang1))):
                with_context, alone, n = tlm_context_counts(
                    model,
                    side1,
                    side2,
                    target_side=target_side,
                    lang_ids=ids,
                    pair_indices=chosen.tolist(),
                    word_pred=word_pred,
                    seed=seed,
                    **options,
                )
                acc_context, acc_alone = 100.0 * with_context / n, 100.0 * alone / n
                metrics[f"{prefix}_tlm_acc_context_{context}_{target}"] = acc_context
                metrics[f"{prefix}_tlm_acc_alone_{context}_{target}"] = acc_alone
                metrics[f"{prefix}_tlm_context_gain_{context}_{target}"] = acc_context - acc_alone
                gains.append(acc_context - acc_alone)
            metrics[f"{prefix}_tlm_context_gain"] = float(np.mean(gains))
    finally:
        model.train(was_training)
    return metrics


class _Sentences(Sequence[np.ndarray]):
    """A binarized set's sentences, read on access (only the probed pairs are ever read)."""

    def __init__(self, bset: BinarizedSet) -> None:
        self.bset = bset

    def __len__(self) -> int:
        return len(self.bset)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return np.asarray(self.bset.sentence(index), dtype=np.int64)


def probe_parallel_sets(
    model: torch.nn.Module,
    workdir: str | Path,
    pairs: Sequence[str],
    lang2id: Mapping[str, int],
    *,
    splits: Sequence[str] = ("valid", "test"),
    **options: object,
) -> dict[str, float]:
    """`alignment_metrics` on every binarized `<split>.<pair>.<lang>` set that exists under `workdir`.

    `pairs` are `l1-l2` (`config.data.pairs`, or the TLM steps' names): l1 comes first in the TLM input
    and in the metric names; the sets are read from the on-disk pair name (sorted). A split or pair
    without binarized sets is skipped (logged at debug level). `options` are those of `alignment_metrics`.
    """
    layout = WorkLayout(Path(workdir))
    metrics: dict[str, float] = {}
    for pair in pairs:
        lang1, _, lang2 = pair.partition("-")
        on_disk = "-".join(sorted([lang1, lang2]))
        for split in splits:
            prefixes = [layout.binarized(split, lang, on_disk) for lang in (lang1, lang2)]
            if not all(binarized_paths(p)["stats"].is_file() for p in prefixes):
                logger.debug("alignment probe: no binarized %s %s set under %s", split, pair, workdir)
                continue
            set1, set2 = (load_binarized(p) for p in prefixes)
            metrics |= alignment_metrics(
                model,
                _Sentences(set1),
                _Sentences(set2),
                split=split,
                lang1=lang1,
                lang2=lang2,
                lang2id=lang2id,
                **options,  # type: ignore[arg-type]
            )
    return metrics

"""Unigram perplexity baselines, scored on exactly the positions the model's perplexity scores.

The model's `{split}_{stem}_ppl` (`perplexity.lm_sums`) predicts, for MLM/TLM, the positions that the
evaluation masking picks (`prepare_inputs(..., evaluation=True, eval_seed=batch index)`: 15% of the
inner positions of each row, `</s>` separators included), and for CLM every next token. The
baseline here walks the same evaluation batches (the same `max_batches`), builds the same inputs
and scores the same targets with a unigram model instead:

    p(w | lang) = (count_lang(w) + k) / (N_lang + k V)

where `count_lang` are the token counts of the *training* binarized set(s) of the target's language
(`train.<lang>` for a monolingual step, `train.<pair>.<lang>` per side of a pair step, each
sentence's `</s>` counted once as the training stream has it), N_lang their total, V the whole
vocabulary (the model's softmax is over it too) and k the add-k constant (1: Laplace), so an unseen
word has a finite cost. A target's language is its side's: pair rows `</s> A </s></s> B </s>`
score side A's positions with lang1's unigram and side B's with lang2's.

Metric names: `{split}_{stem}_unigram_ppl` beside the model's `{split}_{stem}_ppl`, e.g.
`valid_en_mlm_unigram_ppl`, `valid_en_fr_mlm_unigram_ppl` (TLM), `valid_en_clm_unigram_ppl`, and
the averages over monolingual steps `valid_mlm_unigram_ppl`, as `perplexity.finalize` averages.

Shape legend: B batch · T time · V vocabulary · N scored targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from xlm_core.data.binarize import BinarizedSet, load_binarized
from xlm_core.objectives.inputs import StepSpec, prepare_inputs
from xlm_core.paths import WorkLayout

__all__ = [
    "token_counts",
    "unigram_baselines",
    "unigram_finalize",
    "unigram_log_probs",
    "unigram_sums",
]

_CHUNK_TOKENS = 1 << 24  # bincount converts to int64: bounded memory on a large memory-mapped corpus


def token_counts(bset: BinarizedSet, vocab_size: int) -> np.ndarray:
    """Occurrences of every id in a binarized set's token array (V,) int64, `</s>` after each sentence included."""
    counts_V = np.zeros(vocab_size, dtype=np.int64)
    tokens = bset.tokens
    for start in range(0, int(tokens.shape[0]), _CHUNK_TOKENS):
        chunk_counts = np.bincount(np.asarray(tokens[start : start + _CHUNK_TOKENS]), minlength=vocab_size)
        if len(chunk_counts) > vocab_size:
            raise ValueError(
                f"token_counts: {bset.prefix} holds id {len(chunk_counts) - 1}, outside vocab_size={vocab_size}; "
                "binarize with this run's dictionary"
            )
        counts_V += chunk_counts
    return counts_V


def unigram_log_probs(counts_V: np.ndarray | torch.Tensor, *, add_k: float = 1.0) -> torch.Tensor:
    """log p(w) = log((count(w) + k) / (N + k V)) (V,) float64."""
    if not add_k > 0:
        raise ValueError(f"unigram_log_probs: add_k must be > 0 so unseen words stay finite, got {add_k}")
    counts_V = torch.as_tensor(np.asarray(counts_V), dtype=torch.float64)
    if bool((counts_V < 0).any()):
        raise ValueError("unigram_log_probs: counts must be >= 0")
    return torch.log(counts_V + add_k) - math.log(float(counts_V.sum()) + add_k * len(counts_V))


def _target_sides(step: StepSpec, batch: object, pred_mask_BT: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """For a pair step, True where a target lies on side A (N,); None for a monolingual step."""
    if step.lang2 is None:
        return None
    (_, len1_B), _ = batch  # type: ignore[misc]
    target_BT = pred_mask_BT
    if causal:  # position t predicts token t + 1
        target_BT = torch.zeros_like(pred_mask_BT)
        target_BT[:, 1:] = pred_mask_BT[:, :-1]
    side_a_BT = torch.arange(pred_mask_BT.shape[1])[None] < len1_B[:, None]
    return side_a_BT[target_BT]


def unigram_sums(
    step: StepSpec,
    batches: Iterable[object],
    *,
    split: str,
    lang2id: dict[str, int],
    vocab_size: int,
    word_pred: float,
    log_probs: Mapping[str, torch.Tensor],
    max_batches: int | None = None,
) -> dict[str, float]:
    """Unigram NLL and target counts over the evaluation targets of `batches` (as `lm_sums`, unsharded).

    `log_probs` maps each language of `step` to its `unigram_log_probs`.
    """
    missing = [lang for lang in (step.lang1, step.lang2) if lang is not None and lang not in log_probs]
    if missing:
        raise ValueError(f"unigram_sums {step.name}: no unigram for {missing}; pass train counts for every side")
    nll_sum, num_targets = 0.0, 0
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        inputs = prepare_inputs(
            step,
            batch,
            lang2id=lang2id,
            vocab_size=vocab_size,
            word_pred=word_pred,
            keep_rand=(1.0, 0.0, 0.0),
            generator=None,
            evaluation=True,
            eval_seed=index,
        )
        targets_N = inputs.targets_N.cpu()
        logp_N = log_probs[step.lang1][targets_N]
        side_a_N = _target_sides(step, batch, inputs.pred_mask_BT.cpu(), inputs.causal)
        if side_a_N is not None:
            logp_N = torch.where(side_a_N, logp_N, log_probs[step.lang2][targets_N])  # type: ignore[index]
        nll_sum -= float(logp_N.sum())
        num_targets += int(targets_N.numel())
    key = f"{split}_{step.metric_stem}_unigram"
    return {f"{key}/nll": nll_sum, f"{key}/n": float(num_targets)}


def unigram_finalize(sums: Mapping[str, float], steps: Iterable[StepSpec]) -> dict[str, float]:
    """Sums -> `{split}_{stem}_unigram_ppl` (1e9 without targets, as `finalize`) plus monolingual averages."""
    metrics: dict[str, float] = {}
    for key in sorted({k.rsplit("/", 1)[0] for k in sums}):
        n = sums[f"{key}/n"]
        metrics[f"{key}_ppl"] = math.exp(sums[f"{key}/nll"] / n) if n else 1e9
    steps = list(steps)
    for split in sorted({k.split("_", 1)[0] for k in sums}):
        for objective in ("mlm", "clm"):
            values = [
                metrics[name]
                for s in steps
                if s.objective == objective and s.lang2 is None
                if (name := f"{split}_{s.metric_stem}_unigram_ppl") in metrics
            ]
            if values:
                metrics[f"{split}_{objective}_unigram_ppl"] = float(np.mean(values))
    return metrics


def unigram_baselines(
    workdir: str | Path,
    eval_sets: Mapping[str, Mapping[StepSpec, object]],
    *,
    lang2id: dict[str, int],
    vocab_size: int,
    batch_size: int,
    word_pred: float,
    max_batches: int | None = None,
    add_k: float = 1.0,
) -> dict[str, float]:
    """Unigram perplexities of every evaluation set, with unigrams from the train sets under `workdir`.

    `eval_sets` is `{split: {step: dataset}}` as the training loop builds it (each dataset has
    `eval_batches(batch_size)`); `batch_size`/`max_batches` must be the model evaluation's
    (`objectives.batch_size`, `train.eval_max_batches`) so the same batches are scored.
    """
    layout = WorkLayout(Path(workdir))
    tables: dict[tuple[str, str | None], torch.Tensor] = {}

    def table(lang: str, pair: str | None) -> torch.Tensor:
        if (lang, pair) not in tables:
            counts_V = token_counts(load_binarized(layout.binarized("train", lang, pair)), vocab_size)
            tables[lang, pair] = unigram_log_probs(counts_V, add_k=add_k)
        return tables[lang, pair]

    sums: dict[str, float] = {}
    steps: list[StepSpec] = []
    for split, by_step in eval_sets.items():
        for step, dataset in by_step.items():
            steps.append(step)
            pair = None if step.lang2 is None else "-".join(sorted([step.lang1, step.lang2]))
            log_probs = {lang: table(lang, pair) for lang in (step.lang1, step.lang2) if lang is not None}
            sums |= unigram_sums(
                step,
                dataset.eval_batches(batch_size),  # type: ignore[attr-defined]
                split=split,
                lang2id=lang2id,
                vocab_size=vocab_size,
                word_pred=word_pred,
                log_probs=log_probs,
                max_batches=max_batches,
            )
    return unigram_finalize(sums, steps)

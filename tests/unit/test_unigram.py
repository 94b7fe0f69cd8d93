"""Unigram perplexity baselines (xlm_core.evaluation.unigram) against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_core.data.binarize import binarize, load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset, batch_sentences
from xlm_core.data.dictionary import Dictionary
from xlm_core.evaluation.perplexity import lm_sums
from xlm_core.evaluation.unigram import (
    token_counts,
    unigram_baselines,
    unigram_finalize,
    unigram_log_probs,
    unigram_sums,
)
from xlm_core.model import XLMWithLMHeadModel
from xlm_core.objectives.inputs import StepSpec

DICO = Dictionary(["a", "b", "c"], [3, 2, 1])  # ids 14, 15, 16; V = 17
V = len(DICO)
LANG2ID = {"en": 0, "fr": 1}


def write_set(workdir: Path, name: str, lines: list[str]) -> None:
    (workdir / "bin").mkdir(parents=True, exist_ok=True)
    text = workdir / f"{name}.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    binarize(text, DICO, workdir / "bin" / name)


def test_counts_and_add_k(tmp_path: Path) -> None:
    write_set(tmp_path, "train.en", ["a a b", "a c"])  # 14 14 15 </s> 14 16 </s>
    counts_V = token_counts(load_binarized(tmp_path / "bin" / "train.en"), V)
    assert counts_V[[1, 14, 15, 16]].tolist() == [2, 3, 1, 1] and counts_V.sum() == 7
    log_probs_V = unigram_log_probs(counts_V, add_k=1.0)
    assert math.exp(float(log_probs_V[14])) == pytest.approx(4 / 24)
    assert math.exp(float(log_probs_V[2])) == pytest.approx(1 / 24)  # never seen: finite
    assert float(log_probs_V.exp().sum()) == pytest.approx(1.0)
    assert math.exp(float(unigram_log_probs(counts_V, add_k=0.5)[14])) == pytest.approx(3.5 / 15.5)
    with pytest.raises(ValueError, match="add_k"):
        unigram_log_probs(counts_V, add_k=0.0)
    with pytest.raises(ValueError, match="vocab_size"):
        token_counts(load_binarized(tmp_path / "bin" / "train.en"), 15)


def test_clm_stream_by_hand(tmp_path: Path) -> None:
    write_set(tmp_path, "train.en", ["a a b", "a c"])
    write_set(tmp_path, "valid.en", ["a b"])  # stream </s> a b </s>: CLM targets a, b, </s>
    valid = StreamDataset(load_binarized(tmp_path / "bin" / "valid.en"), batch_size=1, bptt=4)
    log_probs = {"en": unigram_log_probs(token_counts(load_binarized(tmp_path / "bin" / "train.en"), V))}
    step = StepSpec("clm", "en")
    sums = unigram_sums(
        step, valid.eval_batches(8), split="valid", lang2id=LANG2ID, vocab_size=V, word_pred=0.15, log_probs=log_probs
    )
    assert sums["valid_en_clm_unigram/n"] == 3
    metrics = unigram_finalize(sums, [step])
    # p = (count + 1) / (7 + 17): a 4/24, b 2/24, </s> 3/24
    assert metrics["valid_en_clm_unigram_ppl"] == pytest.approx(24 / (4 * 2 * 3) ** (1 / 3))
    assert metrics["valid_clm_unigram_ppl"] == metrics["valid_en_clm_unigram_ppl"]


def test_pair_sides_use_their_own_unigram(tmp_path: Path) -> None:
    write_set(tmp_path, "train.en-fr.en", ["a a"])  # 14 14 </s>: N 3
    write_set(tmp_path, "train.en-fr.fr", ["c c c"])  # 16 16 16 </s>: N 4
    log_probs = {
        lang: unigram_log_probs(token_counts(load_binarized(tmp_path / "bin" / f"train.en-fr.{lang}"), V))
        for lang in ("en", "fr")
    }
    # `</s> a </s></s> c </s>`: CLM targets a </s> (side en), </s> c </s> (side fr)
    batch = (batch_sentences([np.array([14])]), batch_sentences([np.array([16])]))
    sums = unigram_sums(
        StepSpec("clm", "en", "fr"), [batch], split="test", lang2id=LANG2ID, vocab_size=V, word_pred=0.15,
        log_probs=log_probs,
    )  # fmt: skip
    en = {14: 3 / 20, 1: 2 / 20}
    fr = {1: 2 / 21, 16: 4 / 21}
    expected_nll = -sum(math.log(p) for p in (en[14], en[1], fr[1], fr[16], fr[1]))
    assert sums["test_en-fr_clm_unigram/n"] == 5
    assert sums["test_en-fr_clm_unigram/nll"] == pytest.approx(expected_nll)
    with pytest.raises(ValueError, match="fr"):
        unigram_sums(
            StepSpec("mlm", "en", "fr"), [batch], split="test", lang2id=LANG2ID, vocab_size=V, word_pred=0.15,
            log_probs={"en": log_probs["en"]},
        )  # fmt: skip


def test_scores_the_same_targets_as_the_model(tmp_path: Path) -> None:
    """MLM/TLM: the baseline's predicted tokens are exactly the model's (same batches, same masks)."""
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(["a", "b", "c"], size=int(rng.integers(1, 9)))) for _ in range(60)]
    for name in ("train.en", "valid.en", "train.en-fr.en", "train.en-fr.fr", "valid.en-fr.en", "valid.en-fr.fr"):
        write_set(tmp_path, name, lines)
    layout_bin = tmp_path / "bin"
    mono, pair = StepSpec("mlm", "en"), StepSpec("mlm", "en", "fr")
    eval_sets = {
        "valid": {
            mono: StreamDataset(load_binarized(layout_bin / "valid.en"), batch_size=4, bptt=16),
            pair: ParallelDataset(
                load_binarized(layout_bin / "valid.en-fr.en"), load_binarized(layout_bin / "valid.en-fr.fr"), max_len=50
            ),
        }
    }
    options = dict(lang2id=LANG2ID, vocab_size=V, batch_size=4, word_pred=0.15, max_batches=3)
    metrics = unigram_baselines(tmp_path, eval_sets, **options)
    assert set(metrics) == {"valid_en_mlm_unigram_ppl", "valid_en_fr_mlm_unigram_ppl", "valid_mlm_unigram_ppl"}
    torch.manual_seed(0)
    model = XLMWithLMHeadModel(tiny_arch(V))
    for step, dataset in eval_sets["valid"].items():
        model_sums = lm_sums(
            model, step, dataset.eval_batches(4), split="valid", lang2id=LANG2ID, vocab_size=V, word_pred=0.15,
            max_batches=3,
        )  # fmt: skip
        log_probs = {"en": unigram_log_probs(token_counts(load_binarized(layout_bin / "train.en"), V))}
        log_probs["fr"] = log_probs["en"]
        base_sums = unigram_sums(
            step, dataset.eval_batches(4), split="valid", lang2id=LANG2ID, vocab_size=V, word_pred=0.15,
            log_probs=log_probs, max_batches=3,
        )  # fmt: skip
        stem = f"valid_{step.metric_stem}"
        assert base_sums[f"{stem}_unigram/n"] == model_sums[f"{stem}/n"] > 0

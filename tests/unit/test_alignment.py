"""The cross-lingual alignment probe: retrieval P@1 and TLM context gain (xlm_core.evaluation.alignment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.support.tiny import tiny_arch
from xlm_core.evaluation.alignment import (
    alignment_metrics,
    probe_parallel_sets,
    select_pairs,
    sentence_embeddings,
    target_positions,
)
from xlm_core.model import XLMWithLMHeadModel
from xlm_core.objectives import concat_pair, lm_loss

LANG2ID = {"en": 0, "fr": 1}
WORDS = 10  # side 1 uses ids 14..23, side 2 their images 24..33 (a fixed token mapping)
VOCAB = 14 + 2 * WORDS


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are fastest on one thread (and two spin badly on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_sentences(n: int, seed: int, low: int = 14, high: int = VOCAB) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(low, high, size=int(rng.integers(2, 9))) for _ in range(n)]


def tiny_model(seed: int = 0, **overrides: object) -> XLMWithLMHeadModel:
    torch.manual_seed(seed)
    return XLMWithLMHeadModel(tiny_arch(VOCAB, **overrides)).eval()


def test_return_layer_is_the_truncated_model() -> None:
    model = tiny_model(n_layers=3)
    tokens_BT = torch.tensor([[1, 20, 21, 22, 1, 2], [1, 25, 1, 2, 2, 2]])
    langs_BT = torch.ones_like(tokens_BT)
    full_BTD = model.transformer(tokens_BT, langs_BT=langs_BT)
    assert torch.equal(model.transformer(tokens_BT, langs_BT=langs_BT, return_layer=3), full_BTD)
    # After 1 layer = the output of a 1-layer model holding the same first-layer weights.
    short = XLMWithLMHeadModel(tiny_arch(VOCAB, n_layers=1)).eval()
    short.load_state_dict({k: v for k, v in model.state_dict().items() if ".1." not in k and ".2." not in k})
    expected_BTD = short.transformer(tokens_BT, langs_BT=langs_BT)
    assert torch.allclose(model.transformer(tokens_BT, langs_BT=langs_BT, return_layer=1), expected_BTD, atol=1e-6)
    with pytest.raises(ValueError, match="return_layer"):
        model.transformer(tokens_BT, return_layer=4)


def test_select_pairs_is_seeded_and_filters() -> None:
    len1 = np.array([0, 3, 5, 200, 4, 4, 4, 4])
    len2 = np.array([3, 3, 0, 3, 4, 4, 4, 4])
    assert select_pairs(len1, len2, max_pairs=10, max_len=100).tolist() == [1, 4, 5, 6, 7]
    some = select_pairs(len1, len2, max_pairs=3, max_len=100, seed=1)
    assert len(some) == 3 and some.tolist() == sorted(some.tolist())
    assert select_pairs(len1, len2, max_pairs=3, max_len=100, seed=1).tolist() == some.tolist()


def test_retrieval_equals_a_direct_computation() -> None:
    model = tiny_model()
    side1, side2 = random_sentences(40, seed=1), random_sentences(40, seed=2)
    layer = 1
    metrics = alignment_metrics(
        model, side1, side2, split="valid", lang1="en", lang2="fr", lang2id=LANG2ID, layer=layer
    )

    def reference_embedding(sentence: np.ndarray, lang_id: int) -> torch.Tensor:
        tokens_1T = torch.tensor([[1, *sentence.tolist(), 1]])  # alone: no padding at all
        hidden_1TD = model.transformer(tokens_1T, langs_BT=torch.full_like(tokens_1T, lang_id), return_layer=layer)
        return hidden_1TD[0].mean(dim=0)

    with torch.no_grad():
        e1_ND = torch.stack([reference_embedding(s, 0) for s in side1])
        e2_ND = torch.stack([reference_embedding(s, 1) for s in side2])
    assert torch.allclose(sentence_embeddings(model, side1, lang_id=0, layer=layer, batch_size=7), e1_ND, atol=1e-5)
    cosine_NN = (e1_ND / e1_ND.norm(dim=1, keepdim=True)) @ (e2_ND / e2_ND.norm(dim=1, keepdim=True)).T
    expected_forward = 100.0 * (cosine_NN.argmax(dim=1) == torch.arange(40)).float().mean().item()
    expected_backward = 100.0 * (cosine_NN.argmax(dim=0) == torch.arange(40)).float().mean().item()
    assert metrics["valid_en_fr_retrieval_p1_en_fr"] == pytest.approx(expected_forward)
    assert metrics["valid_en_fr_retrieval_p1_fr_en"] == pytest.approx(expected_backward)
    assert metrics["valid_en_fr_retrieval_p1"] == pytest.approx((expected_forward + expected_backward) / 2)
    assert metrics["valid_en_fr_probe_pairs"] == 40


def test_identical_sentences_retrieve_each_other() -> None:
    model = tiny_model(use_lang_emb=False)  # both sides then encode identically
    sentences = random_sentences(30, seed=3)
    sentences[5] = sentences[4].copy()  # a repeated sentence counts as found either way
    metrics = alignment_metrics(model, sentences, sentences, split="test", lang1="en", lang2="fr", lang2id=LANG2ID)
    assert metrics["test_en_fr_retrieval_p1_en_fr"] == metrics["test_en_fr_retrieval_p1_fr_en"] == 100.0


class SidesApart(nn.Module):
    """A model that cannot see across the two sentences of a pair: each side runs as its own sequence."""

    def __init__(self, inner: XLMWithLMHeadModel) -> None:
        super().__init__()
        self.inner, self.transformer = inner, inner.transformer

    def forward(self, input_ids_BT, *, pred_mask_BT, lengths_B, positions_BT=None, langs_BT=None, **kwargs):
        if positions_BT is None:
            return self.inner(input_ids_BT, pred_mask_BT=pred_mask_BT, lengths_B=lengths_B, langs_BT=langs_BT)
        logits = []
        for row in range(len(input_ids_BT)):
            length = int(lengths_B[row])
            start2 = int((positions_BT[row, 1:length] == 0).nonzero()[0]) + 1  # positions restart at side 2
            for lo, hi in ((0, start2), (start2, length)):
                select_1T = pred_mask_BT[row : row + 1, lo:hi]
                if select_1T.any():
                    langs = None if langs_BT is None else langs_BT[row : row + 1, lo:hi]
                    logits.append(
                        self.inner(input_ids_BT[row : row + 1, lo:hi], pred_mask_BT=select_1T, langs_BT=langs)
                    )
        return torch.cat(logits)


def test_no_gain_without_attention_across_sentences() -> None:
    side1 = random_sentences(30, seed=4, high=14 + WORDS)
    side2 = [s + WORDS for s in side1]
    model = SidesApart(tiny_model())
    metrics = alignment_metrics(model, side1, side2, split="valid", lang1="en", lang2="fr", lang2id=LANG2ID)
    assert metrics["valid_en_fr_tlm_context_gain_en_fr"] == 0.0
    assert metrics["valid_en_fr_tlm_context_gain_fr_en"] == 0.0
    assert metrics["valid_en_fr_tlm_context_gain"] == 0.0
    assert metrics["valid_en_fr_tlm_acc_alone_en_fr"] == metrics["valid_en_fr_tlm_acc_context_en_fr"]


def test_gain_after_training_on_a_copy_task() -> None:
    """Side 2 is side 1 through a token mapping: its masked words are predictable only from side 1."""
    model = tiny_model(emb_dim=32, n_layers=2, dropout=0.0, attention_dropout=0.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        side1 = [rng.integers(14, 14 + WORDS, size=int(rng.integers(3, 8))) for _ in range(32)]
        x1_BT, len1_B = _pad(side1)
        x2_BT, len2_B = _pad([s + WORDS for s in side1])
        tokens_BT, lengths_B, positions_BT, langs_BT = concat_pair(x1_BT, len1_B, 0, x2_BT, len2_B, 1)
        t_BT = torch.arange(tokens_BT.shape[1])[None]
        words_BT = (tokens_BT >= 14) & (t_BT < lengths_B[:, None])
        pred_BT = words_BT & (torch.rand(tokens_BT.shape, generator=generator) < 0.3)
        out = lm_loss(
            model, tokens_BT.masked_fill(pred_BT, 5), pred_BT, tokens_BT[pred_BT],
            lengths_B=lengths_B, positions_BT=positions_BT, langs_BT=langs_BT,
        )  # fmt: skip
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    held_out = random_sentences(100, seed=99, high=14 + WORDS)
    metrics = alignment_metrics(
        model, held_out, [s + WORDS for s in held_out], split="valid", lang1="en", lang2="fr", lang2id=LANG2ID
    )
    for direction in ("en_fr", "fr_en"):
        # Alone, a side-2 word is one of 10 equally likely ones (~10%); with side 1 visible, a lookup.
        assert metrics[f"valid_en_fr_tlm_context_gain_{direction}"] > 50.0, metrics
        assert metrics[f"valid_en_fr_tlm_acc_alone_{direction}"] < 30.0, metrics


def _pad(sentences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths_B = torch.tensor([len(s) + 2 for s in sentences])
    tokens_BT = torch.full((len(sentences), int(lengths_B.max())), 2)
    for row, s in enumerate(sentences):
        tokens_BT[row, : len(s) + 2] = torch.tensor([1, *s.tolist(), 1])
    return tokens_BT, lengths_B


def test_target_positions_are_seeded_inner_words() -> None:
    first = target_positions(20, word_pred=0.15, seed=0, pair_index=7, side=2)
    assert first.tolist() == target_positions(20, word_pred=0.15, seed=0, pair_index=7, side=2).tolist()
    assert len(first) >= 1 and first.min() >= 1 and first.max() <= 20
    assert len(target_positions(1, word_pred=0.0, seed=0, pair_index=0, side=1)) == 1


def test_probe_reads_binarized_sets(tmp_path) -> None:
    from xlm_core.data.binarize import binarize
    from xlm_core.data.dictionary import Dictionary

    words = [f"w{i}" for i in range(VOCAB - 14)]
    dico = Dictionary(words, [100 - i for i in range(len(words))])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rng = np.random.default_rng(5)
    lines = [" ".join(rng.choice(words[:WORDS], size=4)) for _ in range(12)]
    for lang, text in (("en", lines), ("fr", [" ".join(f"w{int(w[1:]) + WORDS}" for w in s.split()) for s in lines])):
        (tmp_path / lang).write_text("\n".join(text) + "\n", encoding="utf-8")
        binarize(tmp_path / lang, dico, bin_dir / f"valid.en-fr.{lang}")
    metrics = probe_parallel_sets(tiny_model(), tmp_path, ["en-fr"], LANG2ID, max_pairs=10)
    assert metrics["valid_en_fr_probe_pairs"] == 10 and "valid_en_fr_tlm_context_gain" in metrics
    assert not any(key.startswith("test_") for key in metrics)  # no test set written: skipped
    reverse = probe_parallel_sets(tiny_model(), tmp_path, ["fr-en"], LANG2ID, max_pairs=10)  # a `fr-en` TLM step
    assert reverse["valid_fr_en_retrieval_p1_fr_en"] == metrics["valid_en_fr_retrieval_p1_fr_en"]
    causal = probe_parallel_sets(tiny_model(), tmp_path, ["en-fr"], LANG2ID, causal=True)
    assert "valid_en_fr_retrieval_p1" in causal and "valid_en_fr_tlm_context_gain" not in causal


def test_probe_input_errors() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="line-aligned"):
        alignment_metrics(model, random_sentences(3, 0), random_sentences(4, 0), split="valid", lang1="en",
                          lang2="fr", lang2id=LANG2ID)  # fmt: skip
    with pytest.raises(ValueError, match="lang2id"):
        alignment_metrics(model, [], [], split="valid", lang1="en", lang2="de", lang2id=LANG2ID)
    with pytest.raises(ValueError, match="layer"):
        alignment_metrics(model, [], [], split="valid", lang1="en", lang2="fr", lang2id=LANG2ID, layer=5)
    with pytest.raises(ValueError, match="unwrapped"):
        alignment_metrics(nn.Linear(2, 2), [], [], split="valid", lang1="en", lang2="fr", lang2id=LANG2ID)

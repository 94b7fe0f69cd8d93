"""Objectives: MLM masking rates and invariants, evaluation masking, CLM targets, pair layout, loss."""

from __future__ import annotations

import math

import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_core.model import XLMWithLMHeadModel
from xlm_core.objectives import (
    ObjectiveOutput,
    clm_targets,
    concat_pair,
    eval_mask,
    lm_loss,
    mask_scores_from_counts,
    mask_tokens,
)

PAD, EOS, MASK, V = 2, 1, 5, 1000


def padded_batch(lengths: list[int], *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths_B = torch.tensor(lengths)
    tokens_BT = torch.randint(14, V, (len(lengths), max(lengths)), generator=generator)
    tokens_BT[torch.arange(max(lengths))[None] >= lengths_B[:, None]] = PAD
    tokens_BT[:, 0] = EOS
    tokens_BT[torch.arange(len(lengths)), lengths_B - 1] = EOS
    return tokens_BT, lengths_B


def test_mask_rate_and_80_10_10() -> None:
    tokens_BT, lengths_B = padded_batch([256] * 48 + [100] * 16)
    inputs_BT, pred_mask_BT, targets_N = mask_tokens(
        tokens_BT, generator=torch.Generator().manual_seed(0), vocab_size=V, lengths_B=lengths_B
    )
    eligible = int((tokens_BT != PAD).sum()) - tokens_BT.shape[0]
    assert abs(pred_mask_BT.sum().item() / eligible - 0.15) < 0.01
    assert not pred_mask_BT[tokens_BT == PAD].any()
    assert not pred_mask_BT[:, 0].any()
    assert torch.equal(targets_N, tokens_BT[pred_mask_BT])
    assert torch.equal(inputs_BT[~pred_mask_BT], tokens_BT[~pred_mask_BT])
    corrupted_N = inputs_BT[pred_mask_BT]
    n = targets_N.numel()
    masked = (corrupted_N == MASK).float().mean().item()
    kept = (corrupted_N == targets_N).float().mean().item()  # includes random draws of the same id (~0.01%)
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.015
    assert abs(1 - masked - kept - 0.1) < 0.015
    assert n > 2000


def test_mask_tokens_is_seeded() -> None:
    tokens_BT, _ = padded_batch([30, 20, 10])
    a = mask_tokens(tokens_BT, generator=torch.Generator().manual_seed(7), vocab_size=V)
    b = mask_tokens(tokens_BT, generator=torch.Generator().manual_seed(7), vocab_size=V)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_mask_tokens_always_predicts_something() -> None:
    tokens_BT, _ = padded_batch([4, 3])
    for seed in range(20):
        _, pred_mask_BT, targets_N = mask_tokens(
            tokens_BT, generator=torch.Generator().manual_seed(seed), vocab_size=V, word_pred=1e-6
        )
        assert targets_N.numel() == 1 and not pred_mask_BT[tokens_BT == PAD].any()


def test_sample_alpha_smoothing() -> None:
    counts = [0] * 14 + [10_000] * 10 + [1] * (V - 24)
    scores_V = mask_scores_from_counts(counts, 0.5)
    assert scores_V[:14].abs().max() == 0 and scores_V[PAD] == 0
    assert torch.isclose(scores_V[20], torch.tensor(0.01)) and scores_V[30] == 1.0
    tokens_BT, lengths_B = padded_batch([64] * 16 + [20] * 16)
    tokens_BT[:, 5] = 8  # a special inside the text: score 0, never drawn
    tokens_BT[:, 6:10] = 15  # frequent word: rarely drawn
    _, pred_mask_BT, targets_N = mask_tokens(
        tokens_BT,
        generator=torch.Generator().manual_seed(0),
        vocab_size=V,
        mask_scores_V=scores_V,
        lengths_B=lengths_B,
    )
    # As the original: ceil(word_pred x B x T) draws over the whole batch (padding included in the count).
    assert targets_N.numel() == math.ceil(0.15 * tokens_BT.numel())
    assert not (targets_N < 14).any()  # specials (incl. </s> and pad) never drawn
    assert (targets_N == 15).float().mean() < 0.01


def _inclusion_probabilities(weights: torch.Tensor, n: int) -> torch.Tensor:
    """P(position i among n draws without replacement, probability ~ weight): for successive sampling
    (torch.multinomial, the original's np.random.choice) 1 - exp(-w_i t), with t such that the
    probabilities add up to n (exact as the batch grows)."""
    w = weights.double()
    lo, hi = 0.0, 1.0
    while (1 - torch.exp(-w * hi)).sum() < n:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 - torch.exp(-w * mid)).sum() < n else (lo, mid)
    return 1 - torch.exp(-w * (lo + hi) / 2)


def test_sample_alpha_masks_rare_words_as_the_scores_predict() -> None:
    """Three word classes of counts 10000, 100 and 1 (scores 0.01, 0.1, 1 at alpha 0.5): each class is
    masked at the rate the scores predict, so rare words far more often than with uniform masking."""
    counts = [0] * 14 + [10_000] * 100 + [100] * 100 + [1] * 100
    scores_V = mask_scores_from_counts(counts, 0.5)
    generator = torch.Generator().manual_seed(3)
    tokens_BT = torch.randint(14, 314, (64, 256), generator=generator)
    tokens_BT[:, 0] = EOS  # position 0 (never a target) holds a score-0 token, as in sentence batches
    _, pred_mask_BT, targets_N = mask_tokens(
        tokens_BT, generator=torch.Generator().manual_seed(0), vocab_size=314, mask_scores_V=scores_V
    )
    assert targets_N.numel() == math.ceil(0.15 * tokens_BT.numel())
    predicted_BT = _inclusion_probabilities(scores_V[tokens_BT].flatten(), targets_N.numel()).view_as(tokens_BT)
    chi2 = 0.0
    rates = []
    for lo in (14, 114, 214):
        in_class = (tokens_BT >= lo) & (tokens_BT < lo + 100)
        observed = int(pred_mask_BT[in_class].sum())
        expected = float(predicted_BT[in_class].sum())
        chi2 += (observed - expected) ** 2 / expected
        assert abs(observed - expected) < 4 * math.sqrt(expected), (lo, observed, expected)  # 4 sigma
        rates.append(observed / int(in_class.sum()))
    assert chi2 < 13.8  # 2 degrees of freedom, p = 0.001 (draws without replacement vary less than that)
    frequent, middle, rare = rates
    assert frequent < 0.02 < middle < 0.15 < rare  # uniform masking would give each 0.15


def test_target_count_rounded_to_a_multiple_of_8() -> None:
    """The original's fp16 rule: n1 targets become max(n1 % 8, 8 * (n1 // 8)), dropping the first ones."""
    tokens_BT, lengths_B = padded_batch([37, 30, 12, 5])
    for seed in range(10):
        plain = mask_tokens(tokens_BT, generator=torch.Generator().manual_seed(seed), vocab_size=V, word_pred=0.4)[1]
        rounded = mask_tokens(
            tokens_BT, generator=torch.Generator().manual_seed(seed), vocab_size=V, word_pred=0.4, round_to_8=True
        )[1]
        n1 = int(plain.sum())
        assert int(rounded.sum()) == max(n1 % 8, 8 * (n1 // 8))
        dropped = plain.flatten().nonzero().squeeze(1)[: n1 - int(rounded.sum())]
        kept = plain.flatten().clone()
        kept[dropped] = False
        assert torch.equal(rounded.flatten(), kept)
    small_BT = tokens_BT[:2, :4]  # 6 eligible positions: fewer than 8 targets are kept as they are
    plain = mask_tokens(small_BT, generator=torch.Generator().manual_seed(1), vocab_size=V, word_pred=0.5)[1]
    few = mask_tokens(
        small_BT, generator=torch.Generator().manual_seed(1), vocab_size=V, word_pred=0.5, round_to_8=True
    )
    assert 0 < int(few[1].sum()) < 8 and torch.equal(few[1], plain)


def test_eval_mask_deterministic_and_layout() -> None:
    tokens_BT, lengths_B = padded_batch([40, 12, 5, 3, 2])
    first = eval_mask(tokens_BT, lengths_B, word_pred=0.15, mask_index=MASK, seed=0)
    second = eval_mask(tokens_BT, lengths_B, word_pred=0.15, mask_index=MASK, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    inputs_BT, pred_mask_BT, targets_N = first
    t_BT = torch.arange(tokens_BT.shape[1])[None]
    assert not pred_mask_BT[:, 0].any()
    assert not (pred_mask_BT & (t_BT >= lengths_B[:, None] - 1)).any()
    assert pred_mask_BT[:4].any(dim=1).all()  # every row with a candidate has a target
    assert not pred_mask_BT[4].any()  # "</s> </s>": no candidate
    assert (inputs_BT[pred_mask_BT] == MASK).all() and torch.equal(targets_N, tokens_BT[pred_mask_BT])
    other = eval_mask(tokens_BT, lengths_B, word_pred=0.15, mask_index=MASK, seed=1)[1]
    assert not torch.equal(other, pred_mask_BT)


def test_clm_targets() -> None:
    tokens_BT, lengths_B = padded_batch([6, 4])
    pred_mask_BT, targets_N = clm_targets(tokens_BT, lengths_B)
    assert pred_mask_BT.tolist() == [[True] * 5 + [False], [True] * 3 + [False] * 3]
    assert targets_N.tolist() == tokens_BT[0, 1:6].tolist() + tokens_BT[1, 1:4].tolist()
    stream_BT = torch.arange(20).view(2, 10) + 14
    mask_BT, y_N = clm_targets(stream_BT, torch.full((2,), 10))
    assert mask_BT.sum() == 18 and torch.equal(y_N, stream_BT[:, 1:].flatten())


def test_concat_pair_reset_positions() -> None:
    x1, len1 = padded_batch([4, 3], seed=1)
    x2, len2 = padded_batch([3, 5], seed=2)
    tokens_BT, lengths_B, positions_BT, langs_BT = concat_pair(x1, len1, 0, x2, len2, 1)
    assert lengths_B.tolist() == [7, 8] and tokens_BT.shape == (2, 8)
    assert tokens_BT[0].tolist() == x1[0, :4].tolist() + x2[0, :3].tolist() + [PAD]
    assert tokens_BT[1].tolist() == x1[1, :3].tolist() + x2[1, :5].tolist()
    assert ((tokens_BT == EOS).sum(dim=1) == 4).all()  # </s> A </s></s> B </s>
    assert positions_BT[0, :7].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert positions_BT[1].tolist() == [0, 1, 2, 0, 1, 2, 3, 4]
    assert langs_BT[0, :7].tolist() == [0] * 4 + [1] * 3 and langs_BT[1].tolist() == [0] * 3 + [1] * 5


def test_concat_pair_keeps_padding_inside_the_position_table() -> None:
    # Each side fits 16 positions (at most 14 tokens between its two </s>), but the batch is 34 long: a
    # short row's padding must not count on past the table (it did, and crashed evaluation).
    x1, len1 = padded_batch([16, 3], seed=1)
    x2, len2 = padded_batch([16, 3], seed=2)
    tokens_BT, lengths_B, positions_BT, langs_BT = concat_pair(x1, len1, 0, x2, len2, 1)
    assert tokens_BT.shape == (2, 32) and int(positions_BT.max()) == 15
    assert positions_BT[1, :6].tolist() == [0, 1, 2, 0, 1, 2] and (positions_BT[1, 6:] == 0).all()
    model = XLMWithLMHeadModel(tiny_arch(int(tokens_BT.max()) + 1, max_position_embeddings=16)).eval()
    with torch.no_grad():
        model(tokens_BT, lengths_B=lengths_B, positions_BT=positions_BT, langs_BT=langs_BT)


def test_concat_pair_xnli_layout() -> None:
    x1, len1 = padded_batch([4, 3], seed=1)
    x2, len2 = padded_batch([3, 5], seed=2)
    tokens_BT, lengths_B, positions_BT, langs_BT = concat_pair(x1, len1, 4, x2, len2, 4, reset_positions=False)
    assert lengths_B.tolist() == [6, 7]
    assert tokens_BT[0, :6].tolist() == x1[0, :3].tolist() + x2[0, :3].tolist()
    assert ((tokens_BT == EOS).sum(dim=1) == 3).all()  # </s> A </s> B </s>
    assert positions_BT[1].tolist() == list(range(7))
    assert (langs_BT == 4).all()


@pytest.mark.parametrize("causal", [False, True])
def test_lm_loss(causal: bool) -> None:
    arch = tiny_arch(V, emb_dim=16, n_layers=1, n_heads=2, dropout=0.0, attention_dropout=0.0, n_langs=1)
    torch.manual_seed(0)
    model = XLMWithLMHeadModel(arch)
    tokens_BT, lengths_B = padded_batch([9, 6])
    if causal:
        pred_mask_BT, targets_N = clm_targets(tokens_BT, lengths_B)
        inputs_BT = tokens_BT
    else:
        inputs_BT, pred_mask_BT, targets_N = mask_tokens(tokens_BT, generator=torch.Generator(), vocab_size=V)
    out = lm_loss(model, inputs_BT, pred_mask_BT, targets_N, lengths_B=lengths_B, causal=causal)
    assert isinstance(out, ObjectiveOutput) and out.num_pred == targets_N.numel()
    logits_BTV = model(inputs_BT, lengths_B=lengths_B, causal=causal)
    expected = torch.nn.functional.cross_entropy(logits_BTV[pred_mask_BT], targets_N)
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert out.num_correct == (logits_BTV[pred_mask_BT].argmax(-1) == targets_N).sum()
    out.loss.backward()
    assert model.transformer.embeddings.weight.grad is not None
    empty = lm_loss(model, inputs_BT, torch.zeros_like(pred_mask_BT), targets_N[:0], lengths_B=lengths_B)
    assert empty.num_pred == 0 and empty.loss.item() == 0.0

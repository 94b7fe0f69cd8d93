"""Masked language modelling (MLM, and TLM on pair batches): BERT-style masking as in the original XLM.

Shape legend: B batch · T time · V vocabulary · N predicted positions (row-major order).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

__all__ = ["eval_mask", "mask_scores_from_counts", "mask_tokens"]

logger = logging.getLogger(__name__)


def mask_scores_from_counts(
    counts: Sequence[int] | torch.Tensor, sample_alpha: float, *, pad_index: int = 2
) -> torch.Tensor:
    """Target-sampling scores (V,) for `sample_alpha` smoothing: max(count, 1)^-alpha.

    Ids with count 0 (the specials, which the dictionary never counts) and `pad_index` get score 0,
    so they are never drawn (the original's `mask_scores` in `Trainer.__init__`).
    """
    counts_V = torch.as_tensor(counts, dtype=torch.float64)
    scores_V = counts_V.clamp(min=1.0).pow(-sample_alpha)
    scores_V[counts_V == 0] = 0.0
    scores_V[pad_index] = 0.0
    return scores_V.float()


def _eligible(tokens_BT: torch.Tensor, pad_index: int, lengths_B: torch.Tensor | None) -> torch.Tensor:
    eligible_BT = tokens_BT != pad_index
    # As the original (`pred_mask[0] = 0`): the first position of a row is never a target.
    eligible_BT[:, 0] = False
    if lengths_B is not None:
        eligible_BT &= torch.arange(tokens_BT.shape[1], device=tokens_BT.device)[None] < lengths_B[:, None]
    return eligible_BT


def mask_tokens(
    tokens_BT: torch.Tensor,
    *,
    generator: torch.Generator,
    vocab_size: int,
    word_pred: float = 0.15,
    keep_rand: tuple[float, float, float] = (0.8, 0.1, 0.1),
    pad_index: int = 2,
    mask_index: int = 5,
    lengths_B: torch.Tensor | None = None,
    mask_scores_V: torch.Tensor | None = None,
    round_to_8: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose MLM targets and corrupt them (original trainer `mask_out`, batch-major).

    Without `mask_scores_V` (`sample_alpha` 0) every position is a target with probability
    `word_pred`. With it, as the original: n = ceil(word_pred * B * T) positions of the whole batch
    are drawn without replacement with probability proportional to the score of their token
    (`mask_scores_from_counts`: count^-alpha, 0 for pad and the specials), at most as many as have
    a positive score. Then, in both cases, padding, anything at or beyond `lengths_B` and position 0
    of each row (the original's `pred_mask[0] = 0`) are dropped. If nothing is left, one random
    eligible position is a target (the original would compute a loss over no targets: NaN).
    `round_to_8` (the original under --fp16): the first targets in row-major order are dropped so
    that their number n1 becomes max(n1 % 8, 8 * (n1 // 8)), a multiple of 8 once n1 >= 8.
    Each target becomes `<mask>` / stays / becomes a random id from the whole vocabulary with
    probabilities `keep_rand` (the original draws specials too).

    `generator` must live on `tokens_BT.device`; all randomness comes from it.

    Returns:
        inputs_BT (corrupted copy), pred_mask_BT (bool), targets_N (the original ids).
    """
    device = tokens_BT.device
    eligible_BT = _eligible(tokens_BT, pad_index, lengths_B)
    if mask_scores_V is None:
        draw_BT = torch.rand(tokens_BT.shape, generator=generator, device=device)
        pred_mask_BT = (draw_BT < word_pred) & eligible_BT  # the original's `rand <= word_pred` (same law)
    else:
        weights_M = mask_scores_V.to(device=device, dtype=torch.float32)[tokens_BT].flatten()
        # The original counts every position of the batch (padding and position 0 included) ...
        num_targets = min(math.ceil(word_pred * tokens_BT.numel()), int((weights_M > 0).sum()))
        pred_mask_BT = torch.zeros_like(eligible_BT)
        if num_targets > 0:
            picked_N = torch.multinomial(weights_M, num_targets, replacement=False, generator=generator)
            pred_mask_BT.view(-1)[picked_N] = True
        # ... and then drops the draws that fall on padding or position 0.
        pred_mask_BT &= eligible_BT
    if not bool(pred_mask_BT.any()) and bool(eligible_BT.any()):
        # Always predict something: one uniformly random eligible position.
        flat_M = eligible_BT.flatten().float()
        pick = torch.multinomial(flat_M, 1, generator=generator)
        pred_mask_BT = pred_mask_BT.clone()
        pred_mask_BT.view(-1)[pick] = True
    if round_to_8:
        pred_mask_BT = _round_to_8(pred_mask_BT)

    targets_N = tokens_BT[pred_mask_BT]
    probs_3 = torch.tensor(keep_rand, dtype=torch.float32, device=device)
    choice_N = torch.multinomial(probs_3, targets_N.numel(), replacement=True, generator=generator)
    random_N = torch.randint(vocab_size, targets_N.shape, generator=generator, device=device)
    corrupted_N = torch.where(choice_N == 0, torch.full_like(targets_N, mask_index), targets_N)
    corrupted_N = torch.where(choice_N == 2, random_N.to(targets_N.dtype), corrupted_N)
    inputs_BT = tokens_BT.clone()
    inputs_BT[pred_mask_BT] = corrupted_N
    return inputs_BT, pred_mask_BT, targets_N


def _round_to_8(pred_mask_BT: torch.Tensor) -> torch.Tensor:
    """Unset the first n1 - n2 targets (row-major), n2 = max(n1 % 8, 8 * (n1 // 8)) (original `mask_out`)."""
    n1 = int(pred_mask_BT.sum())
    n2 = max(n1 % 8, 8 * (n1 // 8))
    if n2 == n1:
        return pred_mask_BT
    flat_M = pred_mask_BT.flatten().clone()
    flat_M[flat_M.nonzero().squeeze(1)[: n1 - n2]] = False
    return flat_M.view_as(pred_mask_BT)


def eval_mask(
    tokens_BT: torch.Tensor,
    lengths_B: torch.Tensor,
    *,
    word_pred: float,
    mask_index: int,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic MLM evaluation masking (original evaluator `mask_out`).

    Targets: positions 1 <= t < length-1 drawn with probability `word_pred` from a generator seeded
    with `seed`; a row without a target gets one uniformly random position in [1, length-1) (rows
    shorter than 3 have no candidate and stay without). Every target becomes `<mask>` (no 80/10/10).

    Returns:
        inputs_BT, pred_mask_BT (bool), targets_N.
    """
    generator = torch.Generator().manual_seed(seed)
    batch, time = tokens_BT.shape
    lengths_cpu_B = lengths_B.detach().cpu().long()
    t_BT = torch.arange(time)[None]
    candidate_BT = (t_BT >= 1) & (t_BT < lengths_cpu_B[:, None] - 1)
    pred_mask_BT = (torch.rand(batch, time, generator=generator) <= word_pred) & candidate_BT
    empty_B = ~pred_mask_BT.any(dim=1) & candidate_BT.any(dim=1)
    if bool(empty_B.any()):
        # One position per empty row, uniform over its candidates.
        pick_B = torch.multinomial(candidate_BT[empty_B].float(), 1, generator=generator).squeeze(1)
        pred_mask_BT[empty_B.nonzero().squeeze(1), pick_B] = True
    pred_mask_BT = pred_mask_BT.to(tokens_BT.device)
    targets_N = tokens_BT[pred_mask_BT]
    inputs_BT = tokens_BT.masked_fill(pred_mask_BT, mask_index)
    return inputs_BT, pred_mask_BT, targets_N

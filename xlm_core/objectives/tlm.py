"""Pair batches for TLM (and CLM on pairs, XNLI): concatenate two sentence batches row by row.

Shape legend: B batch · T time (T1, T2 of the halves).
"""

from __future__ import annotations

import torch

__all__ = ["concat_pair"]


def concat_pair(
    x1_BT: torch.Tensor,
    len1_B: torch.Tensor,
    lang1: int,
    x2_BT: torch.Tensor,
    len2_B: torch.Tensor,
    lang2: int,
    *,
    pad_index: int = 2,
    reset_positions: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate row i of two right-padded sentence batches (original `concat_batches`).

    Each input row is `</s> w1 … wn </s> <pad>…`.
    `reset_positions=True` (TLM, CLM on pairs): `</s> A </s></s> B </s>`, lengths len1 + len2, and
    B's positions restart at 0. `reset_positions=False` (XNLI layout): `</s> A </s> B </s>` (B's
    leading `</s>` replaces A's final one), lengths len1 + len2 - 1, continuous positions.
    Language ids are `lang1` on A and `lang2` from B's first token on (padding included); padding has
    position 0, so a batch mixing short and long pairs never indexes past the position table.

    Returns:
        tokens_BT, lengths_B, positions_BT, langs_BT (all int64).
    """
    start2_B = len1_B if reset_positions else len1_B - 1
    lengths_B = start2_B + len2_B
    time = int(lengths_B.max())
    device = x1_BT.device
    t_BT = torch.arange(time, device=device)[None].expand(len(lengths_B), time)
    in_a_BT = t_BT < start2_B[:, None]
    in_b_BT = ~in_a_BT & (t_BT < lengths_B[:, None])

    idx1_BT = t_BT.clamp(max=x1_BT.shape[1] - 1)
    idx2_BT = (t_BT - start2_B[:, None]).clamp(min=0, max=x2_BT.shape[1] - 1)
    tokens_BT = torch.full_like(t_BT, pad_index, dtype=torch.long)
    tokens_BT = torch.where(in_a_BT, x1_BT.long().gather(1, idx1_BT), tokens_BT)
    tokens_BT = torch.where(in_b_BT, x2_BT.long().gather(1, idx2_BT), tokens_BT)

    positions_BT = t_BT.clone()
    if reset_positions:
        positions_BT = torch.where(in_a_BT, t_BT, t_BT - len1_B[:, None])
    # Padding gets position 0. (The original keeps counting there, t - len1, which exceeds the position
    # table once a short row shares a batch with a long pair; padding is masked, so nothing else changes.)
    positions_BT = positions_BT.masked_fill(t_BT >= lengths_B[:, None], 0)
    langs_BT = torch.where(in_a_BT, lang1, lang2).long()
    return tokens_BT, lengths_B.long(), positions_BT, langs_BT

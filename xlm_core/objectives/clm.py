"""Causal language modelling targets: every position predicts the next token.

Shape legend: B batch · T time · N predicted positions.
"""

from __future__ import annotations

import torch

__all__ = ["clm_targets"]


def clm_targets(tokens_BT: torch.Tensor, lengths_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction mask and targets for CLM (original `clm_step`, batch-major).

    Position t < length-1 of each row predicts `tokens[t + 1]`; run the model with `causal=True`.
    Stream batches (no padding) pass `lengths_B = full(B, T)`.

    Returns:
        pred_mask_BT (bool), targets_N (row-major order, matching `hidden_BTD[pred_mask_BT]`).
    """
    time = tokens_BT.shape[1]
    pred_mask_BT = torch.arange(time, device=tokens_BT.device)[None] < (lengths_B[:, None] - 1)
    targets_N = tokens_BT[:, 1:][pred_mask_BT[:, :-1]]
    return pred_mask_BT, targets_N

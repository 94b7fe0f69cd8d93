"""The shared language-model loss: cross-entropy over the predicted positions only.

Shape legend: B batch · T time · V vocabulary · N predicted positions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xlm_core.model import XLMWithLMHeadModel

__all__ = ["ObjectiveOutput", "lm_loss"]

logger = logging.getLogger(__name__)


@dataclass
class ObjectiveOutput:
    """Result of one objective on one batch.

    `loss` is the mean cross-entropy over the predicted positions (0 with a graph when there are
    none); `loss * num_pred` is the summed loss used for perplexities. `num_pred` is a Python int
    (known once the targets are selected); `num_correct` is a 0-dim int64 tensor, left on the device
    so that logging needs no extra host sync.
    """

    loss: torch.Tensor
    num_pred: int
    num_correct: torch.Tensor


def lm_loss(
    model: XLMWithLMHeadModel,
    inputs_BT: torch.Tensor,
    pred_mask_BT: torch.Tensor,
    targets_N: torch.Tensor,
    *,
    lengths_B: torch.Tensor | None = None,
    positions_BT: torch.Tensor | None = None,
    langs_BT: torch.Tensor | None = None,
    causal: bool = False,
) -> ObjectiveOutput:
    """Cross-entropy of `model` at the `pred_mask_BT` positions against `targets_N` (row-major order).

    For CLM, `pred_mask_BT`/`targets_N` come from `clm_targets` (position t predicts token t+1);
    for MLM/TLM from `mask_tokens` or `eval_mask`.
    """
    logits_NV = model(
        inputs_BT,
        pred_mask_BT=pred_mask_BT,
        lengths_B=lengths_B,
        positions_BT=positions_BT,
        langs_BT=langs_BT,
        causal=causal,
    )
    num_pred = int(targets_N.numel())
    if num_pred == 0:
        zero = logits_NV.sum() * 0.0
        return ObjectiveOutput(
            loss=zero, num_pred=0, num_correct=torch.zeros((), dtype=torch.long, device=logits_NV.device)
        )
    # Loss in fp32 even under autocast: log-softmax over a large V loses precision in bf16/fp16.
    loss = F.cross_entropy(logits_NV.float(), targets_N, reduction="mean")
    num_correct = (logits_NV.detach().argmax(dim=-1) == targets_N).sum()
    return ObjectiveOutput(loss=loss, num_pred=num_pred, num_correct=num_correct)

"""Task heads on top of the XLM encoder, named as transformers' XLM task classes.

Shape legend: B batch · T time · D emb_dim · C classes (num_labels).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from xlm_core.model.xlm import XLMArchitecture, XLMModel

__all__ = ["SequenceSummary", "XLMForSequenceClassification"]

logger = logging.getLogger(__name__)


class SequenceSummary(nn.Module):
    """First hidden state -> dropout -> Linear(D, C): transformers' `XLMSequenceSummary` with
    summary_type="first", summary_use_proj, summary_proj_to_labels and no activation.
    """

    def __init__(self, emb_dim: int, num_labels: int, first_dropout: float) -> None:
        super().__init__()
        self.summary = nn.Linear(emb_dim, num_labels)
        # Compat: ≙ XNLI's `nn.Dropout(params.dropout)` before the Linear (`summary_first_dropout`).
        self.first_dropout = nn.Dropout(first_dropout)

    def forward(self, first_BD: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) from the first position's hidden state (B, D)."""
        return self.summary(self.first_dropout(first_BD))


class XLMForSequenceClassification(nn.Module):
    """Sentence(-pair) classifier, e.g. XNLI; classifies the first hidden state."""

    def __init__(
        self, arch: XLMArchitecture, *, num_labels: int = 3, summary_first_dropout: float | None = None
    ) -> None:
        super().__init__()
        self.arch = arch
        self.num_labels = num_labels
        self.summary_first_dropout = arch.dropout if summary_first_dropout is None else summary_first_dropout
        self.transformer = XLMModel(arch)
        self.sequence_summary = SequenceSummary(arch.emb_dim, num_labels, self.summary_first_dropout)

    def forward(self, input_ids_BT: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """Logits (B, num_labels); keyword arguments are those of `XLMModel.forward`."""
        # Only the first position is classified, so the last layer computes nothing else after attention.
        first_BT = torch.zeros_like(input_ids_BT, dtype=torch.bool)
        first_BT[:, 0] = True
        return self.sequence_summary(self.transformer(input_ids_BT, select_BT=first_BT, **kwargs))

"""The XLM model: encoder, LM head and task heads with transformers-compatible names."""

from xlm_core.model.heads import SequenceSummary, XLMForSequenceClassification
from xlm_core.model.xlm import (
    XLMArchitecture,
    XLMModel,
    XLMWithLMHeadModel,
    count_parameters,
    sinusoidal_table,
)

__all__ = [
    "SequenceSummary",
    "XLMArchitecture",
    "XLMForSequenceClassification",
    "XLMModel",
    "XLMWithLMHeadModel",
    "count_parameters",
    "sinusoidal_table",
]

"""Export to Hugging Face transformers XLM directories (and load them back)."""

from xlm_core.export.card import render_model_card
from xlm_core.export.hf import (
    SPECIAL_WORDS,
    XNLI_LABELS,
    export_classifier,
    export_lm,
    hf_config,
    load_lm,
    verify_export,
    vocab_from_words,
)

__all__ = [
    "SPECIAL_WORDS",
    "XNLI_LABELS",
    "export_classifier",
    "export_lm",
    "hf_config",
    "load_lm",
    "render_model_card",
    "verify_export",
    "vocab_from_words",
]

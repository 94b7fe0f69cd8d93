"""Export to Hugging Face transformers XLM directories (and load them back); import pretrained models."""

from xlm_core.export.card import render_model_card
from xlm_core.export.hf import (
    SPECIAL_WORDS,
    XNLI_LABELS,
    export_classifier,
    export_lm,
    hf_config,
    hf_meta,
    load_lm,
    model_from_hf_state,
    verify_export,
    vocab_from_words,
    words_from_vocab,
)
from xlm_core.export.importer import import_model, load_pretrained

__all__ = [
    "SPECIAL_WORDS",
    "XNLI_LABELS",
    "export_classifier",
    "export_lm",
    "hf_config",
    "hf_meta",
    "import_model",
    "load_lm",
    "load_pretrained",
    "model_from_hf_state",
    "render_model_card",
    "verify_export",
    "vocab_from_words",
    "words_from_vocab",
]

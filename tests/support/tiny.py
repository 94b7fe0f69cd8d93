"""Tiny XLM architectures for fast tests (the shape of transformers' own XLMModelTester)."""

from __future__ import annotations

from xlm_core.model import XLMArchitecture

__all__ = ["tiny_arch"]


def tiny_arch(vocab_size: int, **overrides: object) -> XLMArchitecture:
    """32-dim, 2 layers, 4 heads, GELU, dropout 0.1, two languages with language embeddings."""
    fields: dict[str, object] = dict(
        vocab_size=vocab_size,
        emb_dim=32,
        n_layers=2,
        n_heads=4,
        dropout=0.1,
        attention_dropout=0.1,
        gelu_activation=True,
        sinusoidal_embeddings=False,
        n_langs=2,
        use_lang_emb=True,
    )
    fields.update(overrides)
    return XLMArchitecture(**fields)  # type: ignore[arg-type]

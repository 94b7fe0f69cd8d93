"""Evaluation as pure functions: perplexity and accuracy under the original XLM metric names."""

from xlm_core.evaluation.perplexity import finalize, lm_sums

__all__ = ["finalize", "lm_sums"]

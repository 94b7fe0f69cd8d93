"""Training objectives as small pure functions: CLM, MLM and TLM targets plus the shared LM loss."""

from xlm_core.objectives.clm import clm_targets
from xlm_core.objectives.loss import ObjectiveOutput, lm_loss
from xlm_core.objectives.mlm import eval_mask, mask_scores_from_counts, mask_tokens
from xlm_core.objectives.tlm import concat_pair

__all__ = [
    "ObjectiveOutput",
    "clm_targets",
    "concat_pair",
    "eval_mask",
    "lm_loss",
    "mask_scores_from_counts",
    "mask_tokens",
]

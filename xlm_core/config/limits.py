"""Cross-section length checks: every sequence the config allows must fit the model's position table.

Called by the root model's validator (`PipelineConfig`), so a config that would index past
`model.max_position_embeddings` fails at load, before any data is prepared.
"""

from __future__ import annotations

from xlm_core.config.sections import ModelConfig, ObjectivesConfig, XNLIConfig

__all__ = ["pair_max_len", "position_limit_problems"]


def pair_max_len(model: ModelConfig, objectives: ObjectivesConfig, split: str) -> int:
    """Longest side a pair of `split` may have: `objectives.max_len` for train; for valid/test
    `objectives.eval_max_len`, by default whatever the position table holds (P - 2)."""
    if split == "train":
        return objectives.max_len
    return objectives.eval_max_len or model.max_position_embeddings - 2


def position_limit_problems(model: ModelConfig, objectives: ObjectivesConfig, xnli: XNLIConfig) -> list[str]:
    """Lengths that would index past the position table (`model.max_position_embeddings` = P).

    - A stream chunk (CLM/MLM on a language) is `objectives.bptt` tokens with positions 0..bptt-1
      (the stream's leading `</s>` is inside the chunk, not added): bptt <= P.
    - A pair (TLM, CLM on a pair) is `</s> A </s></s> B </s>` with B's positions restarting at 0, so
      each side uses positions 0..n+1 and the bound is per side: objectives.max_len + 2 <= P.
    - XNLI rows `</s> premise </s> hypothesis </s>` are cut to xnli.max_len tokens (when enabled,
      with this model section's model): xnli.max_len <= P.
    """
    limit = model.max_position_embeddings
    steps = [*objectives.clm_steps, *objectives.mlm_steps]
    problems = []
    if any("-" not in step for step in steps) and objectives.bptt > limit:
        problems.append(
            f"objectives.bptt ({objectives.bptt}) > model.max_position_embeddings ({limit}): a stream chunk of "
            f"bptt tokens uses positions 0..bptt-1; set objectives.bptt <= {limit} or raise "
            "model.max_position_embeddings"
        )
    if any("-" in step for step in steps) and objectives.max_len + 2 > limit:
        problems.append(
            f"objectives.max_len ({objectives.max_len}) + 2 > model.max_position_embeddings ({limit}): each side "
            f"of a pair is `</s> w1 .. wn </s>` with positions restarting at 0; set objectives.max_len <= "
            f"{limit - 2} or raise model.max_position_embeddings"
        )
    if any("-" in step for step in steps) and (objectives.eval_max_len or 0) + 2 > limit:
        problems.append(
            f"objectives.eval_max_len ({objectives.eval_max_len}) + 2 > model.max_position_embeddings ({limit}): "
            f"set objectives.eval_max_len <= {limit - 2}, or leave it unset to use the position table's bound"
        )
    if xnli.enabled and xnli.model is None and xnli.max_len > limit:
        problems.append(
            f"xnli.max_len ({xnli.max_len}) > model.max_position_embeddings ({limit}): an XNLI row "
            f"`</s> premise </s> hypothesis </s>` of xnli.max_len tokens uses positions 0..max_len-1; set "
            f"xnli.max_len <= {limit} or raise model.max_position_embeddings"
        )
    return problems

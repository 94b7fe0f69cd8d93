"""Turn a dataset batch into the inputs of one objective step (CLM, MLM or TLM).

A step is named as in the original: `en` (monolingual) or `en-fr` (a pair, TLM for MLM steps).
Training masks with 80/10/10 and a per-rank generator; evaluation uses the original's fixed
`<mask>`-only masking so perplexities are comparable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlm_core.objectives.clm import clm_targets
from xlm_core.objectives.mlm import eval_mask, mask_tokens
from xlm_core.objectives.tlm import concat_pair

__all__ = ["LMInputs", "StepSpec", "parse_steps", "prepare_inputs"]

PAD_INDEX = 2
MASK_INDEX = 5


@dataclass(frozen=True)
class StepSpec:
    objective: str  # "clm" | "mlm"
    lang1: str
    lang2: str | None = None

    @property
    def name(self) -> str:
        """Step label as in the original metric names: `en` / `en-fr`."""
        return self.lang1 if self.lang2 is None else f"{self.lang1}-{self.lang2}"

    @property
    def metric_stem(self) -> str:
        """`en_mlm`, `en_fr_mlm` (TLM uses an underscore), `en-fr_clm` (as the original names them)."""
        if self.lang2 is None:
            return f"{self.lang1}_{self.objective}"
        sep = "_" if self.objective == "mlm" else "-"
        return f"{self.lang1}{sep}{self.lang2}_{self.objective}"


def parse_steps(clm_steps: list[str], mlm_steps: list[str]) -> list[StepSpec]:
    steps = []
    for objective, names in (("clm", clm_steps), ("mlm", mlm_steps)):
        for name in names:
            l1, _, l2 = name.partition("-")
            steps.append(StepSpec(objective, l1, l2 or None))
    return steps


@dataclass
class LMInputs:
    tokens_BT: torch.Tensor
    lengths_B: torch.Tensor
    positions_BT: torch.Tensor | None
    langs_BT: torch.Tensor | None
    pred_mask_BT: torch.Tensor
    targets_N: torch.Tensor
    causal: bool

    @property
    def num_tokens(self) -> int:
        return int(self.lengths_B.sum())


def _join(step: StepSpec, batch: object, lang2id: dict[str, int], use_langs: bool):
    """(tokens, lengths, positions, langs) for a stream batch or a sentence-pair batch."""
    if step.lang2 is None:
        tokens_BT = batch  # type: ignore[assignment]
        batch_size, length = tokens_BT.shape
        lengths_B = torch.full((batch_size,), length, dtype=torch.long)
        langs_BT = torch.full_like(tokens_BT, lang2id[step.lang1]) if use_langs else None
        return tokens_BT, lengths_B, None, langs_BT
    (x1_BT, len1_B), (x2_BT, len2_B) = batch  # type: ignore[misc]
    tokens_BT, lengths_B, positions_BT, langs_BT = concat_pair(
        x1_BT,
        len1_B,
        lang2id[step.lang1],
        x2_BT,
        len2_B,
        lang2id[step.lang2],
        pad_index=PAD_INDEX,
        reset_positions=True,
    )
    return tokens_BT, lengths_B, positions_BT, (langs_BT if use_langs else None)


def prepare_inputs(
    step: StepSpec,
    batch: object,
    *,
    lang2id: dict[str, int],
    vocab_size: int,
    word_pred: float,
    keep_rand: tuple[float, float, float],
    generator: torch.Generator | None,
    mask_scores_V: torch.Tensor | None = None,
    round_to_8: bool = False,
    evaluation: bool = False,
    eval_seed: int = 0,
) -> LMInputs:
    """Inputs for one step; `evaluation=True` uses the original's deterministic masking.

    `mask_scores_V` (the `sample_alpha` scores) and `round_to_8` shape the training targets only
    (see `mask_tokens`).

    `eval_seed` (the batch's index in its set) makes the masks fixed across evaluations but
    different between batches of one evaluation, as the original's single seeded generator does.
    """
    use_langs = len(lang2id) > 1
    tokens_BT, lengths_B, positions_BT, langs_BT = _join(step, batch, lang2id, use_langs)
    if step.objective == "clm":
        pred_mask_BT, targets_N = clm_targets(tokens_BT, lengths_B)
        return LMInputs(tokens_BT, lengths_B, positions_BT, langs_BT, pred_mask_BT, targets_N, causal=True)
    if evaluation:
        inputs_BT, pred_mask_BT, targets_N = eval_mask(
            tokens_BT, lengths_B, word_pred=word_pred, mask_index=MASK_INDEX, seed=eval_seed
        )
    else:
        inputs_BT, pred_mask_BT, targets_N = mask_tokens(
            tokens_BT,
            generator=generator,
            vocab_size=vocab_size,
            word_pred=word_pred,
            keep_rand=keep_rand,
            pad_index=PAD_INDEX,
            mask_index=MASK_INDEX,
            lengths_B=lengths_B,
            mask_scores_V=mask_scores_V,
            round_to_8=round_to_8,
        )
    return LMInputs(inputs_BT, lengths_B, positions_BT, langs_BT, pred_mask_BT, targets_N, causal=False)

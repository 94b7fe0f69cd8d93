"""Perplexity and accuracy of an LM on held-out sets, under the original XLM metric names.

`lm_sums` returns additive sums (so ranks can each score a shard and add them up);
`finalize` turns the reduced sums into `{set}_{lang}_{mlm|clm}_{ppl|acc}` plus the averages
over monolingual steps (`valid_mlm_ppl`, ...), as XLM's evaluator does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from xlm_core.objectives import lm_loss
from xlm_core.objectives.inputs import StepSpec, prepare_inputs

__all__ = ["finalize", "lm_sums"]


@torch.no_grad()
def lm_sums(
    model: torch.nn.Module,
    step: StepSpec,
    batches: Iterable[object],
    *,
    split: str,
    lang2id: dict[str, int],
    vocab_size: int,
    word_pred: float,
    rank: int = 0,
    world_size: int = 1,
    max_batches: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Sums of NLL, predicted tokens and correct predictions over this rank's share of `batches`."""
    was_training = model.training
    model.eval()
    loss_sum = num_pred = num_correct = 0.0
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        if index % world_size != rank:
            continue
        inputs = prepare_inputs(
            step,
            batch,
            lang2id=lang2id,
            vocab_size=vocab_size,
            word_pred=word_pred,
            keep_rand=(1.0, 0.0, 0.0),
            generator=None,
            evaluation=True,
            eval_seed=index,
        )
        out = lm_loss(
            model,
            inputs.tokens_BT.to(device),
            inputs.pred_mask_BT.to(device),
            inputs.targets_N.to(device),
            lengths_B=inputs.lengths_B.to(device),
            positions_BT=None if inputs.positions_BT is None else inputs.positions_BT.to(device),
            langs_BT=None if inputs.langs_BT is None else inputs.langs_BT.to(device),
            causal=inputs.causal,
        )
        loss_sum += float(out.loss) * out.num_pred
        num_pred += out.num_pred
        num_correct += int(out.num_correct)
    model.train(was_training)
    key = f"{split}_{step.metric_stem}"
    return {f"{key}/nll": loss_sum, f"{key}/n": num_pred, f"{key}/correct": num_correct}


def finalize(sums: dict[str, float], steps: list[StepSpec]) -> dict[str, float]:
    """Reduced sums -> perplexities and accuracies (0 predictions -> ppl 1e9, acc 0, as XLM)."""
    metrics: dict[str, float] = {}
    for key in sorted({k.rsplit("/", 1)[0] for k in sums}):
        n = sums[f"{key}/n"]
        metrics[f"{key}_ppl"] = math.exp(sums[f"{key}/nll"] / n) if n else 1e9
        metrics[f"{key}_acc"] = 100.0 * sums[f"{key}/correct"] / n if n else 0.0
    # Averages over monolingual steps only (TLM/pair steps excluded, as in XLM).
    splits = sorted({k.split("_", 1)[0] for k in sums})
    for split in splits:
        for objective in ("mlm", "clm"):
            stems = [s.metric_stem for s in steps if s.objective == objective and s.lang2 is None]
            for stat in ("ppl", "acc"):
                values = [metrics[f"{split}_{stem}_{stat}"] for stem in stems if f"{split}_{stem}_{stat}" in metrics]
                if values:
                    metrics[f"{split}_{objective}_{stat}"] = float(np.mean(values))
    return metrics

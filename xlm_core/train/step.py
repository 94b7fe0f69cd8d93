"""One optimizer update: forward, backward (with accumulation), clipping, optimizer step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from xlm_core.config import PipelineConfig
from xlm_core.objectives import lm_loss
from xlm_core.objectives.inputs import StepSpec, prepare_inputs

__all__ = ["StepResult", "train_step"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StepResult:
    loss: float
    num_tokens: int
    grad_norm: float


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device, non_blocking=True)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    step: StepSpec,
    batches: Iterator[Any],
    *,
    cfg: PipelineConfig,
    lang2id: dict[str, int],
    vocab_size: int,
    generator: torch.Generator,
    device: torch.device,
    precision: str | None = None,
    mask_scores_V: torch.Tensor | None = None,
    round_targets_to_8: bool = False,
) -> StepResult:
    """One update; `precision` is the autocast precision to run (default: `train.precision`, which the
    loop replaces by fp32 where the CPU would emulate it: `xlm_core.train.precision`).

    `mask_scores_V` (`objectives.sample_alpha` > 0: count^-alpha per id) makes the MLM/TLM targets a
    frequency-weighted draw, and `round_targets_to_8` keeps their number a multiple of 8, as the
    original's `mask_out` (see `xlm_core.objectives.mlm.mask_tokens`).
    """
    micro = cfg.optim.accumulate_gradients
    precision = precision or cfg.train.precision
    autocast = (
        torch.autocast(device.type, dtype=_DTYPES[precision]) if precision in _DTYPES else contextlib.nullcontext()
    )
    loss_total, tokens = 0.0, 0
    for index in range(micro):
        inputs = prepare_inputs(
            step,
            next(batches),
            lang2id=lang2id,
            vocab_size=vocab_size,
            word_pred=cfg.objectives.word_pred,
            keep_rand=cfg.objectives.word_mask_keep_rand,
            generator=generator,
            mask_scores_V=mask_scores_V,
            round_to_8=round_targets_to_8,
        )
        # gradients are all-reduced only on the last micro-batch of an update
        sync = index == micro - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync(), autocast:
            out = lm_loss(
                model,
                inputs.tokens_BT.to(device),
                inputs.pred_mask_BT.to(device),
                inputs.targets_N.to(device),
                lengths_B=inputs.lengths_B.to(device),
                positions_BT=_to(inputs.positions_BT, device),
                langs_BT=_to(inputs.langs_BT, device),
                causal=inputs.causal,
            )
            scaler.scale(out.loss / micro).backward()
        loss_total += float(out.loss.detach())
        tokens += inputs.num_tokens
    scaler.unscale_(optimizer)
    if cfg.optim.clip_grad_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return StepResult(loss=loss_total / micro, num_tokens=tokens, grad_norm=float(grad_norm))

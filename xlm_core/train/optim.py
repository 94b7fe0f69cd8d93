"""Optimizer and learning-rate schedules (the original's `adam` and `adam_inverse_sqrt`)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from xlm_core.config import OptimConfig

__all__ = ["build_optimizer", "inverse_sqrt_factor"]


def inverse_sqrt_factor(step: int, *, lr: float, warmup_updates: int, warmup_init_lr: float) -> float:
    """Multiplier of `lr` at update `step` for XLM's AdamInverseSqrtWithWarmup.

    Linear warmup from `warmup_init_lr` to `lr` over `warmup_updates`, then `lr * sqrt(warmup / step)`.
    """
    if warmup_updates > 0 and step < warmup_updates:
        return (warmup_init_lr + step * (lr - warmup_init_lr) / warmup_updates) / lr
    return (max(warmup_updates, 1) / max(step, 1)) ** 0.5


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimConfig) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW (decoupled decay, as XLM's Adam) plus the configured schedule."""
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    if cfg.name == "adam_inverse_sqrt":

        def factor(step: int) -> float:
            return inverse_sqrt_factor(
                step, lr=cfg.lr, warmup_updates=cfg.warmup_updates, warmup_init_lr=cfg.warmup_init_lr
            )
    else:

        def factor(step: int) -> float:
            return 1.0

    return optimizer, LambdaLR(optimizer, factor)

"""Optimizer and learning-rate schedules: the original's `adam`, `adam_inverse_sqrt` and `adam_cosine`."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from xlm_core.config import OptimConfig

__all__ = ["build_optimizer", "cosine_factor", "fused_available", "inverse_sqrt_factor", "lr_factor"]


def _warmup(step: int, cfg: OptimConfig) -> float | None:
    """Linear warmup from `warmup_init_lr` to `lr` (as a multiplier of `lr`), or None after it."""
    if cfg.warmup_updates > 0 and step < cfg.warmup_updates:
        return (cfg.warmup_init_lr + step * (cfg.lr - cfg.warmup_init_lr) / cfg.warmup_updates) / cfg.lr
    return None


def inverse_sqrt_factor(step: int, cfg: OptimConfig) -> float:
    """XLM's AdamInverseSqrtWithWarmup: warmup, then `lr * sqrt(warmup / step)`."""
    warm = _warmup(step, cfg)
    if warm is not None:
        return warm
    return (max(cfg.warmup_updates, 1) / max(step, 1)) ** 0.5


def cosine_factor(step: int, cfg: OptimConfig) -> float:
    """XLM's AdamCosineWithWarmup: warmup, then cosine cycles between `min_lr` and a shrinking peak."""
    warm = _warmup(step, cfg)
    if warm is not None:
        return warm
    t = step - cfg.warmup_updates
    period, cycle = float(cfg.cosine_period), 0
    while t >= period:  # cycles grow by period_mult; at most a few dozen iterations in practice
        t -= period
        period *= cfg.cosine_period_mult
        cycle += 1
    shrink = cfg.cosine_lr_shrink**cycle
    low, high = cfg.cosine_min_lr * shrink, cfg.lr * shrink
    return (low + 0.5 * (high - low) * (1 + math.cos(math.pi * t / period))) / cfg.lr


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Multiplier of `cfg.lr` at update `step` for the configured schedule."""
    if cfg.name == "adam_inverse_sqrt":
        return inverse_sqrt_factor(step, cfg)
    if cfg.name == "adam_cosine":
        return cosine_factor(step, cfg)
    return 1.0


def fused_available(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused Adam(W) kernel takes these parameters: floating point, all on CPU or all on CUDA.

    The fused kernel updates every parameter in one pass instead of about ten element-wise passes
    (measured on 2 CPU cores, 35M parameters: 136 ms -> 34 ms per step); its updates equal the
    for-each implementation's up to rounding.
    """
    devices = {p.device.type for p in params}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimConfig) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW (decoupled weight decay, as XLM's Adam) plus the configured schedule; fused where available."""
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=fused_available(params) or None,
    )
    return optimizer, LambdaLR(optimizer, lambda step: lr_factor(step, cfg))

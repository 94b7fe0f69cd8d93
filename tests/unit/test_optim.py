"""Learning-rate schedules: the values of XLM's warmup/inverse-sqrt and warmup/cosine schedules."""

from __future__ import annotations

import math

import pytest
import torch

from xlm_core.config import OptimConfig
from xlm_core.train.optim import build_optimizer, lr_factor


def test_inverse_sqrt_matches_the_original_formula():
    cfg = OptimConfig(name="adam_inverse_sqrt", lr=1e-4, warmup_updates=4000, warmup_init_lr=1e-7)
    lr = [cfg.lr * lr_factor(n, cfg) for n in (0, 2000, 4000, 16000)]
    assert lr[0] == pytest.approx(1e-7)
    assert lr[1] == pytest.approx(1e-7 + 2000 * (1e-4 - 1e-7) / 4000)
    decay = 1e-4 * 4000**0.5
    assert lr[2] == pytest.approx(decay * 4000**-0.5)
    assert lr[3] == pytest.approx(decay * 16000**-0.5)


def test_cosine_cycles_shrink():
    cfg = OptimConfig(
        name="adam_cosine", lr=1e-3, warmup_updates=10, cosine_period=100, cosine_lr_shrink=0.5, cosine_min_lr=0.0
    )
    assert cfg.lr * lr_factor(10, cfg) == pytest.approx(1e-3)
    assert cfg.lr * lr_factor(60, cfg) == pytest.approx(0.5e-3)
    assert cfg.lr * lr_factor(110, cfg) == pytest.approx(0.5e-3)  # second cycle peaks at lr * shrink
    assert cfg.lr * lr_factor(160, cfg) == pytest.approx(0.25e-3 * (1 + math.cos(math.pi * 0.5)))


def test_scheduler_drives_the_optimizer():
    cfg = OptimConfig(name="adam_inverse_sqrt", lr=1e-3, warmup_updates=4, warmup_init_lr=0.0)
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer, scheduler = build_optimizer([param], cfg)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3 * (4 / 5) ** 0.5])
